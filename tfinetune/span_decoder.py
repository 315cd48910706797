"""`SpanDecoder`: the best answer span of each question from its windows' start/end logits."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Answer:
    """A decoded answer.

    Attributes:
        text: The answer cut from the context ("" for no answer).
        start: Its first character in the context (0 for no answer).
        end: One past its last character (0 for no answer).
        score: The probability of the span in its window (softmax of the start logits times
            softmax of the end logits over the window's tokens); for no answer, that of the
            [CLS] "span".
    """

    text: str
    start: int
    end: int
    score: float


class SpanDecoder:
    """Chooses one span per question over all its windows.

    In each window every pair of context tokens (start <= end, at most `max_answer_length`
    tokens) is a candidate scored by start logit + end logit; the question's answer is the best
    candidate over its windows (the first window on ties). With `version_2_with_negative`, the
    question has no answer when its smallest [CLS] score (start[0] + end[0], over its windows)
    beats that, as in Hugging Face's `run_qa` post-processing (null threshold 0). A question
    whose windows have no context token has no answer.

    Args:
        max_answer_length: Longest answer, in tokens.
        version_2_with_negative: Allow "no answer".
    """

    def __init__(self, max_answer_length: int, *, version_2_with_negative: bool = False) -> None:
        self.max_answer_length = int(max_answer_length)
        self.version_2_with_negative = bool(version_2_with_negative)

    def decode(self, contexts: Sequence[str], example_ids: Sequence[int],
               offsets: Sequence[Sequence[tuple[int, int] | None]],
               start_logits: Sequence[np.ndarray],
               end_logits: Sequence[np.ndarray]) -> list[Answer]:
        """One answer per context.

        Args:
            contexts: The contexts, by question index.
            example_ids: The question index of each window.
            offsets: Per window and token, `(start, end)` character offsets of context tokens,
                None for the other tokens.
            start_logits, end_logits: Per window, one logit per token (unpadded).
        """
        best: dict[int, tuple[float, Answer]] = {}
        null: dict[int, tuple[float, float]] = {}
        for window, example in enumerate(example_ids):
            start = np.asarray(start_logits[window], dtype=np.float32)
            end = np.asarray(end_logits[window], dtype=np.float32)
            window_offsets = offsets[window]
            null_score = float(start[0] + end[0])
            start_log_probs = start - _logsumexp(start)
            end_log_probs = end - _logsumexp(end)
            if example not in null or null_score < null[example][0]:
                null[example] = (null_score,
                                 float(np.exp(start_log_probs[0] + end_log_probs[0])))
            span = self._best_span(start, end, window_offsets)
            if span is None:
                continue
            first, last, score = span
            if example in best and best[example][0] >= score:
                continue
            begin, finish = window_offsets[first][0], window_offsets[last][1]
            best[example] = (score, Answer(
                contexts[example][begin:finish], int(begin), int(finish),
                float(np.exp(start_log_probs[first] + end_log_probs[last]))))
        answers = []
        for example in range(len(contexts)):
            no_answer = Answer("", 0, 0, null.get(example, (0.0, 0.0))[1])
            if example not in best or (self.version_2_with_negative
                                       and null[example][0] > best[example][0]):
                answers.append(no_answer)
            else:
                answers.append(best[example][1])
        return answers

    def _best_span(self, start: np.ndarray, end: np.ndarray,
                   offsets: Sequence[tuple[int, int] | None]) -> tuple[int, int, float] | None:
        """`(start token, end token, score)` of the window's best valid span, or None."""
        is_context = np.array([offset is not None for offset in offsets], dtype=bool)
        if not is_context.any():
            return None
        length = len(offsets)
        positions = np.arange(length)
        gap = positions[None, :] - positions[:, None]  # end - start
        valid = (is_context[:, None] & is_context[None, :] & (gap >= 0)
                 & (gap < self.max_answer_length))
        scores = np.where(valid, start[:length, None] + end[None, :length], -np.inf)
        flat = int(np.argmax(scores))
        first, last = divmod(flat, length)
        return first, last, float(scores[first, last])


def _logsumexp(values: np.ndarray) -> float:
    top = float(np.max(values))
    return top + float(np.log(np.sum(np.exp(values - top))))
