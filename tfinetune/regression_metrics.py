"""`RegressionMetrics`: MSE, RMSE, MAE, Pearson and Spearman correlation."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class RegressionMetrics:
    """Metrics of predicted against true values.

    Attributes:
        mse, rmse, mae: Mean squared error, its root, mean absolute error.
        pearson, spearman: Correlations; None when undefined (constant predictions or targets).
        support: Number of examples.
    """

    mse: float
    rmse: float
    mae: float
    pearson: float | None
    spearman: float | None
    support: int

    @classmethod
    def compute(cls, y_true: Sequence[float], y_pred: Sequence[float]) -> "RegressionMetrics":
        from scipy import stats

        truth = np.asarray(y_true, dtype=np.float64).reshape(-1)
        predicted = np.asarray(y_pred, dtype=np.float64).reshape(-1)
        if truth.shape != predicted.shape:
            raise ValueError(f"Expected as many predictions as targets. Received {truth.size} "
                             f"targets and {predicted.size} predictions.")
        if truth.size == 0:
            raise ValueError("Expected at least one example to compute metrics. Received none.")
        errors = predicted - truth
        mse = float(np.mean(errors ** 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: the correlation is undefined
            pearson = float(stats.pearsonr(truth, predicted)[0]) if truth.size > 1 else math.nan
            spearman = float(stats.spearmanr(truth, predicted)[0]) if truth.size > 1 else math.nan
        return cls(mse=mse, rmse=math.sqrt(mse), mae=float(np.mean(np.abs(errors))),
                   pearson=None if math.isnan(pearson) else pearson,
                   spearman=None if math.isnan(spearman) else spearman,
                   support=int(truth.size))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format_text(self, digits: int = 4) -> str:
        def show(value):
            return "undefined" if value is None else f"{value:.{digits}f}"

        return "\n".join([
            f"Examples:  {self.support}",
            f"MSE:       {self.mse:.{digits}f}",
            f"RMSE:      {self.rmse:.{digits}f}",
            f"MAE:       {self.mae:.{digits}f}",
            f"Pearson:   {show(self.pearson)}",
            f"Spearman:  {show(self.spearman)}",
        ])
