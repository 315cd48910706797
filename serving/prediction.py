"""`Prediction`: one text's result, as returned by `Client.predict`, for all three problem types."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields

SINGLE_LABEL = "single-label"
MULTI_LABEL = "multi-label"
REGRESSION = "regression"
TOKEN_CLASSIFICATION = "token-classification"
QUESTION_ANSWERING = "question-answering"
SEQ2SEQ = "seq2seq"


@dataclass(frozen=True)
class Prediction:
    """The prediction for one input. Which fields are set depends on the model's problem type
    (the client detects it from the outputs the model returns); the others are None.

    - single-label (`probabilities` output): `label`, `label_id`, `probabilities`.
    - multi-label (`scores` + `predicted` outputs): `labels` and `scores`.
    - regression (`value` output): `value`.
    - token classification: `entities`, each `{"type", "start", "end", "text", "score"}`
      (character offsets into the input text, `end` exclusive).
    - question answering: `answer`, `start`, `end` (character offsets into the context,
      `end` exclusive; an empty answer with start = end = 0 means "no answer") and `score`.
    - seq2seq: `generated_text`.

    Attributes:
        label: The predicted label name (single-label).
        label_id: Its class index (single-label).
        probabilities: Label name -> probability, in class order (single-label).
        labels: The predicted label names, in class order, possibly empty (multi-label).
        scores: Label name -> sigmoid score, in class order (multi-label).
        value: The predicted number (regression).
        entities: The entities found (token classification).
        answer: The answer span's text (question answering).
        start: Its first character in the context (question answering).
        end: One past its last character (question answering).
        score: The answer's score (question answering).
        generated_text: The generated text (seq2seq).
    """

    label: str | None = None
    label_id: int | None = None
    probabilities: dict[str, float] | None = None
    labels: list[str] | None = None
    scores: dict[str, float] | None = None
    value: float | None = None
    entities: list[dict] | None = None
    answer: str | None = None
    start: int | None = None
    end: int | None = None
    score: float | None = None
    generated_text: str | None = None

    @property
    def problem_type(self) -> str:
        """`single-label`, `multi-label` or `regression` for text classifiers, else the task
        (`token-classification`, `question-answering`, `seq2seq`), from the fields set."""
        if self.entities is not None:
            return TOKEN_CLASSIFICATION
        if self.answer is not None:
            return QUESTION_ANSWERING
        if self.generated_text is not None:
            return SEQ2SEQ
        if self.value is not None:
            return REGRESSION
        if self.scores is not None:
            return MULTI_LABEL
        return SINGLE_LABEL

    def __repr__(self) -> str:  # only the fields of the problem type, not six with Nones
        shown = ", ".join(f"{field.name}={getattr(self, field.name)!r}" for field in fields(self)
                          if getattr(self, field.name) is not None)
        return f"Prediction({shown})"
