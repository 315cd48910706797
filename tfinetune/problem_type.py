"""`ProblemType`: what differs between single-label, multi-label and regression classifiers."""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Sequence

import numpy as np

PROBLEM_TYPES = ("single-label", "multi-label", "regression")


@dataclasses.dataclass(frozen=True)
class ProblemType:
    """The head's output, loss, metrics and best-epoch criterion of one problem type.

    - `single-label`: one label per text; softmax; cross-entropy; accuracy and macro P/R/F1;
      best epoch by macro F1.
    - `multi-label`: any set of labels per text; sigmoid per label, a label is predicted when
      its score >= `threshold`; binary cross-entropy; exact-match accuracy and micro/macro
      P/R/F1; best epoch by micro F1.
    - `regression`: one number per text; the single logit is the value; mean squared error;
      MSE, RMSE, MAE, Pearson, Spearman; best epoch by Pearson correlation.

    Args:
        name: One of `single-label`, `multi-label`, `regression`.
        threshold: Score from which a label is predicted (multi-label).
    """

    name: str = "single-label"
    threshold: float = 0.5

    def __post_init__(self):
        if self.name not in PROBLEM_TYPES:
            raise ValueError(f"Unknown problem type. Expected one of {list(PROBLEM_TYPES)}. "
                             f"Received: problem_type={self.name!r}")

    @property
    def hf_problem_type(self) -> str:
        """The `problem_type` of a transformers model config."""
        return {"single-label": "single_label_classification",
                "multi-label": "multi_label_classification",
                "regression": "regression"}[self.name]

    @property
    def monitor(self) -> str:
        """The epoch-log key whose highest value picks the kept epoch."""
        return {"single-label": "val_f1", "multi-label": "val_f1_micro",
                "regression": "val_pearson"}[self.name]

    @property
    def compile_metrics(self) -> list[str]:
        return ["accuracy"] if self.name == "single-label" else []

    def num_labels(self, labels: Sequence[str]) -> int:
        return 1 if self.name == "regression" else len(labels)

    def loss(self, targets: Sequence, logits: np.ndarray) -> float:
        """Mean loss of `logits` against targets, as training computes it."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.name == "regression":
            return float(np.mean((logits[:, 0] - np.asarray(targets, dtype=np.float64)) ** 2))
        if self.name == "multi-label":
            truth = np.asarray(targets, dtype=np.float64)
            # Numerically stable binary cross-entropy with logits.
            per_label = (np.maximum(logits, 0) - logits * truth
                         + np.log1p(np.exp(-np.abs(logits))))
            return float(per_label.mean())
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        truth = np.asarray(targets, dtype=np.int64)
        return float(-log_probabilities[np.arange(len(truth)), truth].mean())

    def metrics(self, targets: Sequence, logits: np.ndarray, labels: Sequence[str]) -> Any:
        """ClassificationMetrics, MultiLabelMetrics or RegressionMetrics of the predictions."""
        logits = np.asarray(logits)
        if self.name == "regression":
            from tfinetune.regression_metrics import RegressionMetrics

            return RegressionMetrics.compute(targets, logits[:, 0])
        if self.name == "multi-label":
            from tfinetune.multi_label_metrics import MultiLabelMetrics

            predicted = (1.0 / (1.0 + np.exp(-logits)) >= self.threshold).astype(int)
            return MultiLabelMetrics.compute(targets, predicted, labels)
        from tfinetune.classification_metrics import ClassificationMetrics

        return ClassificationMetrics.compute(list(targets), logits.argmax(axis=-1).tolist(),
                                             list(labels))

    @property
    def epoch_log_keys(self) -> tuple[str, ...]:
        """The metrics (names without `val_`) that go to the epoch logs."""
        return {
            "single-label": ("accuracy", "precision", "recall", "f1"),
            "multi-label": ("subset_accuracy", "precision_micro", "recall_micro", "f1_micro",
                            "precision_macro", "recall_macro", "f1_macro"),
            "regression": ("mse", "rmse", "mae", "pearson", "spearman"),
        }[self.name]

    def epoch_logs(self, metrics: Any) -> dict[str, float]:
        """The `val_*` scalars of `metrics` for the epoch logs (undefined values left out)."""
        values = {f"val_{key}": getattr(metrics, key) for key in self.epoch_log_keys}
        return {key: float(value) for key, value in values.items() if value is not None}

    def training_loss(self):
        """A replacement for the model's `hf_compute_loss`, or None to keep transformers' own
        (cross-entropy for single-label, MSE when the model has one output)."""
        if self.name != "multi-label":
            return None
        import tensorflow as tf

        def binary_cross_entropy(labels, logits):
            labels = tf.cast(labels, logits.dtype)
            return tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=-1)

        return binary_cross_entropy
