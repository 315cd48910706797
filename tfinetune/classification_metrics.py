"""Accuracy, macro precision/recall/F1 and the confusion matrix of a classifier's predictions."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class ClassificationMetrics:
    """Classification metrics over a fixed label set (computed with scikit-learn).

    Precision, recall and F1 are macro averages over *all* labels in `labels` (a label that is
    neither true nor predicted anywhere counts as 0; `zero_division=0`).

    Attributes:
        accuracy: Fraction of examples whose predicted label is the true label.
        precision: Macro-averaged precision.
        recall: Macro-averaged recall.
        f1: Macro-averaged F1.
        confusion_matrix: `confusion_matrix[i][j]` = number of examples with true label
            `labels[i]` predicted as `labels[j]`.
        labels: Label names in class-id order.
        support: Total number of examples.
        per_label: Label name -> {"precision", "recall", "f1", "support"}.
    """

    accuracy: float
    precision: float
    recall: float
    f1: float
    confusion_matrix: list[list[int]]
    labels: list[str]
    support: int
    per_label: dict[str, dict[str, float | int]]

    @classmethod
    def compute(
        cls,
        y_true: Sequence[int],
        y_pred: Sequence[int],
        labels: Sequence[str],
        *,
        sample_weight: Sequence[int] | None = None,
    ) -> "ClassificationMetrics":
        """Computes the metrics of predicted class ids against true class ids.

        Args:
            y_true: True class ids (indexes into `labels`).
            y_pred: Predicted class ids, same length.
            labels: Label names in class-id order.
            sample_weight: Optional non-negative integer count per example (used by
                `from_confusion_matrix`).

        Raises:
            ValueError: Lengths differ, there are no examples, or an id is not a class id.
        """
        from sklearn.metrics import accuracy_score
        from sklearn.metrics import confusion_matrix
        from sklearn.metrics import precision_recall_fscore_support

        labels = [str(label) for label in labels]
        y_true, y_pred = list(y_true), list(y_pred)
        _check(y_true, y_pred, labels, sample_weight)
        ids = list(range(len(labels)))
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=ids, average=None, zero_division=0,
            sample_weight=sample_weight,
        )
        matrix = confusion_matrix(y_true, y_pred, labels=ids, sample_weight=sample_weight)
        per_label = {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(round(float(support[i]))),
            }
            for i, label in enumerate(labels)
        }
        return cls(
            accuracy=float(accuracy_score(y_true, y_pred, sample_weight=sample_weight)),
            precision=float(precision.mean()),
            recall=float(recall.mean()),
            f1=float(f1.mean()),
            confusion_matrix=[[int(round(float(count))) for count in row] for row in matrix],
            labels=labels,
            support=sum(values["support"] for values in per_label.values()),
            per_label=per_label,
        )

    @classmethod
    def from_confusion_matrix(
        cls, matrix: Sequence[Sequence[int]], labels: Sequence[str]
    ) -> "ClassificationMetrics":
        """Computes the metrics from counts (`matrix[true_id][predicted_id]`).

        Lets a caller count predictions in constant memory and compute the metrics at the end.

        Raises:
            ValueError: The matrix is not `len(labels)` x `len(labels)` or has no examples.
        """
        size = len(labels)
        if len(matrix) != size or any(len(row) != size for row in matrix):
            raise ValueError(
                f"Expected a {size}x{size} confusion matrix for labels {list(labels)}. "
                f"Received: {matrix}"
            )
        cells = [(i, j) for i in range(size) for j in range(size)]
        return cls.compute(
            [i for i, _ in cells], [j for _, j in cells], labels,
            sample_weight=[int(matrix[i][j]) for i, j in cells],
        )

    def as_dict(self) -> dict[str, Any]:
        """The metrics as plain JSON-ready Python values."""
        return dataclasses.asdict(self)

    def format_text(self, digits: int = 4) -> str:
        """A readable multi-line report: totals, a per-label table and the confusion matrix."""
        lines = [
            f"Examples:   {self.support}",
            f"Accuracy:   {self.accuracy:.{digits}f}",
            f"Precision:  {self.precision:.{digits}f}  (macro average over labels)",
            f"Recall:     {self.recall:.{digits}f}  (macro average over labels)",
            f"F1:         {self.f1:.{digits}f}  (macro average over labels)",
            "",
        ]
        header = ["Label", "Precision", "Recall", "F1", "Support"]
        body = [
            [label, *(f"{self.per_label[label][key]:.{digits}f}" for key in ("precision", "recall",
                                                                            "f1")),
             str(self.per_label[label]["support"])]
            for label in self.labels
        ]
        lines += _table(header, body, left_columns=1)
        lines += ["", "Confusion matrix (rows: true label, columns: predicted label)"]
        header = ["true \\ predicted", *self.labels]
        body = [[label, *map(str, row)] for label, row in zip(self.labels, self.confusion_matrix)]
        lines += _table(header, body, left_columns=1)
        return "\n".join(lines)


def _check(y_true: list, y_pred: list, labels: list[str], sample_weight) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"Expected as many predictions as true labels. Received {len(y_true)} true labels "
            f"and {len(y_pred)} predictions."
        )
    if sample_weight is not None and len(sample_weight) != len(y_true):
        raise ValueError(
            f"Expected one sample weight per example ({len(y_true)}). "
            f"Received {len(sample_weight)}."
        )
    total = len(y_true) if sample_weight is None else sum(sample_weight)
    if total <= 0:
        raise ValueError("Expected at least one example to compute metrics. Received none.")
    if not labels:
        raise ValueError("Expected at least one label name. Received none.")
    for name, ids in (("true label", y_true), ("predicted label", y_pred)):
        bad = [value for value in ids if not _is_class_id(value, len(labels))]
        if bad:
            raise ValueError(
                f"Expected {name} ids in 0..{len(labels) - 1} (labels {labels}). "
                f"Received: {bad[:5]}"
            )


def _is_class_id(value: Any, count: int) -> bool:
    try:
        return 0 <= operator.index(value) < count
    except TypeError:
        return False


def _table(header: list[str], body: list[list[str]], left_columns: int) -> list[str]:
    """Formats rows as columns aligned to their widest cell (text left, numbers right)."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = []
    for row in [header, *body]:
        cells = [
            cell.ljust(width) if i < left_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
