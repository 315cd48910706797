"""`TaskScoreMetrics`: `score --label-column` metrics of question-answering and seq2seq models."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tfinetune.errors import ConfigError

QUESTION_ANSWERING = "question-answering"
SEQ2SEQ = "seq2seq"


@dataclasses.dataclass(frozen=True)
class TaskScoreMetrics:
    """The metrics of a scoring run, in the shape `ScoreResult` reports.

    Attributes:
        task: `question-answering` (exact match and F1, SQuAD normalisation, 0-100) or
            `seq2seq` (BLEU, ROUGE-1/2/L, 0-100).
        values: The metric values by name.
        support: Rows scored against a reference.
    """

    task: str
    values: dict[str, Any]
    support: int

    def as_dict(self) -> dict[str, Any]:
        return {**self.values, "support": self.support}

    def format_text(self, digits: int = 2) -> str:
        lines = [f"Examples:     {self.support}"]
        for name, value in self.values.items():
            shown = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
            lines.append(f"{name + ':':<13} {shown}")
        return "\n".join(lines)


class TaskScoreAccumulator:
    """Collects one row at a time what a task's metrics need.

    Question answering keeps running sums (constant memory): a row's true value is one
    answer text, a JSON list of acceptable answers, or SQuAD's `{"text": [...], ...}` (an
    empty list or "" means unanswerable). Seq2seq keeps the generated and reference texts
    (corpus BLEU needs them all).

    Args:
        task: `question-answering` or `seq2seq`.
    """

    def __init__(self, task: str) -> None:
        if task not in (QUESTION_ANSWERING, SEQ2SEQ):
            raise ConfigError(f"No scoring metrics for task {task!r}.")
        self.task = task
        self.exact = self.f1 = 0.0
        self.count = 0
        self.predictions: list[str] = []
        self.references: list[str] = []

    def add(self, true_value: Any, prediction: Any) -> bool:
        """Counts one row; False when its reference cell is missing or unreadable."""
        if self.task == SEQ2SEQ:
            if not isinstance(true_value, str):
                return False
            self.predictions.append(prediction.generated_text)
            self.references.append(true_value)
            self.count += 1
            return True
        answers = _gold_answers(true_value)
        if answers is None:
            return False
        from tfinetune.squad_metrics import exact_match
        from tfinetune.squad_metrics import normalize_answer
        from tfinetune.squad_metrics import token_f1

        answers = [answer for answer in answers if normalize_answer(answer)] or [""]
        self.exact += max(exact_match(answer, prediction.answer) for answer in answers)
        self.f1 += max(token_f1(answer, prediction.answer) for answer in answers)
        self.count += 1
        return True

    def metrics(self) -> TaskScoreMetrics | None:
        if not self.count:
            return None
        if self.task == SEQ2SEQ:
            from tfinetune.generation_metrics import GenerationMetrics

            values = GenerationMetrics.compute(self.predictions, self.references).as_dict()
            values.pop("count", None)
            return TaskScoreMetrics(self.task, values, self.count)
        return TaskScoreMetrics(self.task, {"exact_match": 100.0 * self.exact / self.count,
                                            "f1": 100.0 * self.f1 / self.count}, self.count)


def _gold_answers(value: Any) -> list[str] | None:
    """Acceptable answers from a cell: a string, a list of strings, SQuAD's answers mapping,
    or those written as JSON text; None when unreadable."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                return _gold_answers(json.loads(text))
            except json.JSONDecodeError:
                pass
        return [value]
    if isinstance(value, dict):
        return _gold_answers(value.get("text"))
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    return None
