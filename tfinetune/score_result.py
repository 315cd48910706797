"""`ScoreResult`: what a bulk-scoring run did (counts, speed, metrics)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tfinetune.classification_metrics import ClassificationMetrics
from tfinetune.multi_label_metrics import MultiLabelMetrics
from tfinetune.regression_metrics import RegressionMetrics


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """The outcome of `BatchScorer.score`.

    Attributes:
        output: The file written.
        labels: The model's label names (class-id order); empty for a regression model.
        rows: Rows written (every input row, scored or failed).
        failed: Rows written with an `error`.
        seconds: Wall-clock time of the run.
        problem_type: The model's: `single-label`, `multi-label` or `regression`, or its task
            (`token-classification`, `question-answering`, `seq2seq`).
        label_column: The true-label column, or None when metrics were not asked for.
        metrics: Metrics over the rows with a prediction and a known true label
            (question answering and seq2seq: a `TaskScoreMetrics`):
            `ClassificationMetrics`, `MultiLabelMetrics` or `RegressionMetrics` by problem type;
            None without `label_column` or when no row qualifies.
        excluded_failed: Rows left out of the metrics because they failed.
        excluded_unknown_label: Rows left out because their true label is empty or not one of
            `labels` (multi-label: the cell is missing or names an unknown label; regression:
            the target is missing or not a finite number).
        unknown_label_examples: Up to 5 distinct such true labels, for the report.
        first_error: The first row error message, or None.
        resumed: Rows taken over from an interrupted earlier run (`resume`): counted in
            `rows`, `failed` and the metrics, but not sent again.
    """

    output: Path
    labels: list[str]
    rows: int
    failed: int
    seconds: float
    label_column: str | None = None
    metrics: ClassificationMetrics | MultiLabelMetrics | RegressionMetrics | Any | None = None
    excluded_failed: int = 0
    excluded_unknown_label: int = 0
    unknown_label_examples: list[str] = dataclasses.field(default_factory=list)
    first_error: str | None = None
    problem_type: str = "single-label"
    resumed: int = 0

    @property
    def rows_per_second(self) -> float:
        """Rows sent and written per second in this run (resumed rows not included)."""
        sent = self.rows - self.resumed
        return sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def evaluated(self) -> int:
        """Rows that count in the metrics."""
        return self.metrics.support if self.metrics is not None else 0

    def metrics_dict(self) -> dict[str, Any]:
        """The metrics (if any) with the row counts behind them, JSON-ready."""
        data: dict[str, Any] = {
            "problem_type": self.problem_type,
            "label_column": self.label_column,
            "rows": self.rows,
            "failed": self.failed,
            "resumed": self.resumed,
            "evaluated": self.evaluated,
            "excluded_failed": self.excluded_failed,
            "excluded_unknown_label": self.excluded_unknown_label,
            "unknown_label_examples": list(self.unknown_label_examples),
        }
        if self.metrics is not None:
            data.update(self.metrics.as_dict())
        return data
