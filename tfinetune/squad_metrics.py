"""`SquadMetrics`: exact match and F1 of extractive answers, as the official SQuAD scripts score
them (v1.1, and v2.0 with unanswerable questions).

Answers are normalised the official way before comparing: lower-cased, punctuation
(`string.punctuation`) removed, the articles a/an/the removed, whitespace collapsed. A question
scores the best exact match and the best token F1 over its gold answers. Gold answers that
normalise to nothing are dropped; a question left without gold answers is unanswerable (SQuAD
v2): the prediction scores 1 only when it is empty too (F1 likewise), and an empty prediction
scores 0 against a real answer.

Scores are percentages (0-100), as the official scripts print them.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import string
from collections.abc import Sequence
from typing import Any

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(character for character in text if character not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """The normalised answer's whitespace tokens."""
    return normalize_answer(text).split() if text else []


def exact_match(gold: str, prediction: str) -> int:
    """1 when both answers normalise to the same string, else 0."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str) -> float:
    """Token-overlap F1 of the normalised answers (1/0 when either is empty: equal or not)."""
    gold_tokens = answer_tokens(gold)
    predicted_tokens = answer_tokens(prediction)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


@dataclasses.dataclass(frozen=True)
class SquadMetrics:
    """Exact match and F1 over a set of questions (percentages, 0-100).

    Attributes:
        exact_match: Mean best exact match.
        f1: Mean best token F1.
        total: Questions scored.
        has_answer_exact_match, has_answer_f1, has_answer_total: The same over the questions
            with an answer (None when there are none).
        no_answer_exact_match, no_answer_f1, no_answer_total: The same over the unanswerable
            questions (None when there are none).
    """

    exact_match: float
    f1: float
    total: int
    has_answer_exact_match: float | None = None
    has_answer_f1: float | None = None
    has_answer_total: int = 0
    no_answer_exact_match: float | None = None
    no_answer_f1: float | None = None
    no_answer_total: int = 0

    @classmethod
    def compute(cls, gold_answers: Sequence[Sequence[str]],
                predictions: Sequence[str]) -> SquadMetrics:
        """Scores `predictions[i]` against the answers `gold_answers[i]` (an empty list, or
        only answers that normalise to nothing, for an unanswerable question).

        Raises:
            ValueError: the two sequences differ in length.
        """
        if len(gold_answers) != len(predictions):
            raise ValueError(
                f"One prediction per question expected. Received: {len(predictions)} "
                f"predictions for {len(gold_answers)} questions")
        exact, f1, answerable = [], [], []
        for golds, prediction in zip(gold_answers, predictions):
            golds = [gold for gold in golds if normalize_answer(gold)] or [""]
            exact.append(max(exact_match(gold, prediction) for gold in golds))
            f1.append(max(token_f1(gold, prediction) for gold in golds))
            answerable.append(golds != [""])

        def mean(values: list[float]) -> float | None:
            return 100.0 * sum(values) / len(values) if values else None

        has = [i for i, flag in enumerate(answerable) if flag]
        no = [i for i, flag in enumerate(answerable) if not flag]
        return cls(
            exact_match=mean(exact) or 0.0, f1=mean(f1) or 0.0, total=len(predictions),
            has_answer_exact_match=mean([exact[i] for i in has]),
            has_answer_f1=mean([f1[i] for i in has]), has_answer_total=len(has),
            no_answer_exact_match=mean([exact[i] for i in no]),
            no_answer_f1=mean([f1[i] for i in no]), no_answer_total=len(no))

    def as_dict(self) -> dict[str, Any]:
        """`exact_match`, `f1`, `total`, and the has-answer / no-answer breakdown when the set
        has unanswerable questions (as SQuAD v2's script reports it)."""
        values: dict[str, Any] = {"exact_match": self.exact_match, "f1": self.f1,
                                  "total": self.total}
        if self.no_answer_total:
            values.update(
                has_answer_exact_match=self.has_answer_exact_match,
                has_answer_f1=self.has_answer_f1, has_answer_total=self.has_answer_total,
                no_answer_exact_match=self.no_answer_exact_match,
                no_answer_f1=self.no_answer_f1, no_answer_total=self.no_answer_total)
        return values
