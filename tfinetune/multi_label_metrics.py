"""`MultiLabelMetrics`: exact-match accuracy and micro/macro precision, recall and F1."""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Sequence

import numpy as np

from tfinetune.classification_metrics import _table


@dataclasses.dataclass(frozen=True)
class MultiLabelMetrics:
    """Metrics of multi-label predictions (each example has a set of labels, possibly empty).

    Attributes:
        subset_accuracy: Fraction of examples whose predicted label set is exactly the true one.
        precision_micro, recall_micro, f1_micro: Over all (example, label) decisions.
        precision_macro, recall_macro, f1_macro: Unweighted means of the per-label scores.
        labels: Label names in column order.
        support: Number of examples.
        per_label: Label name -> {"precision", "recall", "f1", "support"} (support = examples
            that truly have the label).
    """

    subset_accuracy: float
    precision_micro: float
    recall_micro: float
    f1_micro: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    labels: list[str]
    support: int
    per_label: dict[str, dict[str, float | int]]

    @classmethod
    def compute(cls, y_true: Sequence[Sequence[float]], y_pred: Sequence[Sequence[float]],
                labels: Sequence[str]) -> "MultiLabelMetrics":
        """Computes the metrics from 0/1 indicator rows (`y[i][j]` = example i has label j)."""
        from sklearn.metrics import accuracy_score
        from sklearn.metrics import precision_recall_fscore_support

        truth = np.asarray(y_true, dtype=int)
        predicted = np.asarray(y_pred, dtype=int)
        labels = [str(label) for label in labels]
        if truth.shape != predicted.shape or truth.ndim != 2 or truth.shape[1] != len(labels):
            raise ValueError(
                f"Expected true and predicted indicator matrices of shape [n, {len(labels)}]. "
                f"Received: {truth.shape} and {predicted.shape}")
        if truth.shape[0] == 0:
            raise ValueError("Expected at least one example to compute metrics. Received none.")
        averaged = {
            average: precision_recall_fscore_support(truth, predicted, average=average,
                                                     zero_division=0)[:3]
            for average in ("micro", "macro")
        }
        precision, recall, f1, support = precision_recall_fscore_support(
            truth, predicted, average=None, zero_division=0)
        return cls(
            subset_accuracy=float(accuracy_score(truth, predicted)),
            precision_micro=float(averaged["micro"][0]),
            recall_micro=float(averaged["micro"][1]),
            f1_micro=float(averaged["micro"][2]),
            precision_macro=float(averaged["macro"][0]),
            recall_macro=float(averaged["macro"][1]),
            f1_macro=float(averaged["macro"][2]),
            labels=labels,
            support=int(truth.shape[0]),
            per_label={label: {"precision": float(precision[i]), "recall": float(recall[i]),
                               "f1": float(f1[i]), "support": int(support[i])}
                       for i, label in enumerate(labels)},
        )

    @classmethod
    def from_counts(cls, true_positives: Sequence[int], false_positives: Sequence[int],
                    false_negatives: Sequence[int], exact_matches: int, examples: int,
                    labels: Sequence[str]) -> "MultiLabelMetrics":
        """The same metrics as `compute` (zero division → 0), from per-label counts: what a
        streaming scorer can keep in memory that does not grow with the number of rows.

        Args:
            true_positives, false_positives, false_negatives: Per label, in `labels` order.
            exact_matches: Examples whose predicted label set is exactly the true one.
            examples: Number of examples.
            labels: Label names.
        """
        if examples <= 0:
            raise ValueError("Expected at least one example to compute metrics. Received none.")
        labels = [str(label) for label in labels]
        tp, fp, fn = (np.asarray(v, dtype=np.int64) for v in (true_positives, false_positives,
                                                               false_negatives))

        def scores(tp, fp, fn):
            precision = np.divide(tp, tp + fp, out=np.zeros(np.shape(tp)), where=(tp + fp) > 0)
            recall = np.divide(tp, tp + fn, out=np.zeros(np.shape(tp)), where=(tp + fn) > 0)
            f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(np.shape(tp)),
                           where=(2 * tp + fp + fn) > 0)
            return precision, recall, f1

        precision, recall, f1 = scores(tp, fp, fn)
        micro = scores(np.array([tp.sum()]), np.array([fp.sum()]), np.array([fn.sum()]))
        return cls(
            subset_accuracy=exact_matches / examples,
            precision_micro=float(micro[0][0]),
            recall_micro=float(micro[1][0]),
            f1_micro=float(micro[2][0]),
            precision_macro=float(precision.mean()) if labels else 0.0,
            recall_macro=float(recall.mean()) if labels else 0.0,
            f1_macro=float(f1.mean()) if labels else 0.0,
            labels=labels,
            support=int(examples),
            per_label={label: {"precision": float(precision[i]), "recall": float(recall[i]),
                               "f1": float(f1[i]), "support": int(tp[i] + fn[i])}
                       for i, label in enumerate(labels)},
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format_text(self, digits: int = 4) -> str:
        lines = [
            f"Examples:         {self.support}",
            f"Subset accuracy:  {self.subset_accuracy:.{digits}f}  (exact label set)",
            f"Precision:        {self.precision_micro:.{digits}f} micro  "
            f"{self.precision_macro:.{digits}f} macro",
            f"Recall:           {self.recall_micro:.{digits}f} micro  "
            f"{self.recall_macro:.{digits}f} macro",
            f"F1:               {self.f1_micro:.{digits}f} micro  {self.f1_macro:.{digits}f} macro",
            "",
        ]
        header = ["Label", "Precision", "Recall", "F1", "Support"]
        body = [[label, *(f"{self.per_label[label][key]:.{digits}f}"
                          for key in ("precision", "recall", "f1")),
                 str(self.per_label[label]["support"])] for label in self.labels]
        return "\n".join(lines + _table(header, body, left_columns=1))
