"""`EntityMetrics`: entity-level precision, recall and F1 of BIO-tagged sentences (seqeval)."""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class EntityMetrics:
    """Entity-level scores with seqeval's default (conlleval) semantics: an entity counts as
    found only when its type and its exact span match; an `I-X` that does not continue an `X`
    entity starts a new one.

    Attributes:
        precision: Micro-averaged over all entities: correct / predicted (0 when none predicted).
        recall: Correct / true entities (0 when there are none).
        f1: Harmonic mean of precision and recall (0 when both are 0).
        accuracy: Fraction of tokens whose tag is right (`O` included).
        per_type: Entity type → `{"precision", "recall", "f1", "support"}` (support: true
            entities of that type), types sorted; every type of the true or predicted tags.
    """

    precision: float
    recall: float
    f1: float
    accuracy: float
    per_type: dict[str, dict[str, float]]

    @classmethod
    def compute(cls, true_tags: Sequence[Sequence[str]],
                predicted_tags: Sequence[Sequence[str]]) -> "EntityMetrics":
        """Scores `predicted_tags` against `true_tags` (per sentence, one tag per token).

        Raises:
            ValueError: the two do not have the same number of sentences and tokens.
        """
        from seqeval.metrics import accuracy_score
        from seqeval.metrics.sequence_labeling import precision_recall_fscore_support
        from seqeval.metrics.sequence_labeling import get_entities

        true_tags = [list(sentence) for sentence in true_tags]
        predicted_tags = [list(sentence) for sentence in predicted_tags]
        if [len(s) for s in true_tags] != [len(s) for s in predicted_tags]:
            raise ValueError(
                "Predicted and true tags must have the same shape. Expected "
                f"{[len(s) for s in true_tags]} tags per sentence. Received: "
                f"{[len(s) for s in predicted_tags]}")
        if not any(true_tags):
            return cls(0.0, 0.0, 0.0, 0.0, {})
        precision, recall, f1, _ = precision_recall_fscore_support(
            true_tags, predicted_tags, average="micro", zero_division=0)
        types = sorted({kind for tags in (true_tags, predicted_tags)
                        for kind, _, _ in get_entities(tags)})
        per_type = {}
        if types:
            scores = precision_recall_fscore_support(true_tags, predicted_tags, average=None,
                                                     zero_division=0)
            # seqeval reports types in sorted order, the same as `types`.
            for kind, p, r, f, s in zip(types, *scores):
                per_type[kind] = {"precision": float(p), "recall": float(r), "f1": float(f),
                                  "support": int(s)}
        return cls(float(precision), float(recall), float(f1),
                   float(accuracy_score(true_tags, predicted_tags)), per_type)

    def as_dict(self) -> dict[str, Any]:
        """`{"precision", "recall", "f1", "accuracy", "per_type": {...}}` (JSON-able)."""
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "accuracy": self.accuracy,
                "per_type": {kind: dict(scores) for kind, scores in self.per_type.items()}}

    def as_text(self) -> str:
        """A table: one line per entity type, then the micro average and token accuracy."""
        lines = [f"{'type':<12} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
        for kind, scores in self.per_type.items():
            lines.append(f"{kind:<12} {scores['precision']:>9.4f} {scores['recall']:>9.4f} "
                         f"{scores['f1']:>9.4f} {scores['support']:>8d}")
        support = sum(scores["support"] for scores in self.per_type.values())
        lines.append(f"{'micro avg':<12} {self.precision:>9.4f} {self.recall:>9.4f} "
                     f"{self.f1:>9.4f} {support:>8d}")
        lines.append(f"token accuracy {self.accuracy:.4f}")
        return "\n".join(lines)
