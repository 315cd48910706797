"""`AnswerSpanChooser`: the answer of each (question, context) pair from its windows' start and
end logits, on the client, exactly as the text export's graph chooses it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.portable_question_answering_windows import QuestionAnsweringWindows
from serving.prediction import Prediction


class AnswerSpanChooser:
    """The span rule of the question-answering text export (`serving_default` of
    `export.question_answering_serving_module`), in NumPy, for portable exports whose
    signature returns the logits.

    In each window every span of context tokens (start <= end, fewer than `max_answer_length`
    tokens apart) scores start logit + end logit (float32); the window's best span is the
    first best in (start, end) order. A pair's answer is its best window's span (the first
    window on ties); it has no answer when none of its windows has a context token, or, with
    `version_2_with_negative`, when its lowest [CLS] score (start + end logit of token 0 over
    its windows, the first window on ties) is higher than the answer's. `score` is the span's
    probability in its window: softmax of the start logits times softmax of the end logits
    over the window's attended tokens (for no answer: that of [CLS] in the lowest-[CLS]
    window), computed in float64 and rounded to float32, as the graph does.

    Args:
        max_answer_length: Longest answer, in tokens.
        version_2_with_negative: Allow "no answer" (SQuAD v2 runs).
    """

    def __init__(self, max_answer_length: int, *, version_2_with_negative: bool = False) -> None:
        if isinstance(max_answer_length, bool) or int(max_answer_length) < 1:
            raise ValueError(f"max_answer_length must be a positive integer. Received: "
                             f"{max_answer_length!r}")
        self.max_answer_length = int(max_answer_length)
        self.version_2_with_negative = bool(version_2_with_negative)

    def choose(self, windows: QuestionAnsweringWindows, start_logits: np.ndarray,
               end_logits: np.ndarray, contexts: Sequence[str]) -> list[Prediction]:
        """One `Prediction(answer, start, end, score)` per context (character offsets, `end`
        exclusive; no answer is `""` with start = end = 0).

        Args:
            windows: The windows sent (for pairs, offsets and attention masks).
            start_logits, end_logits: float32 [windows, length] as the model returned them.
            contexts: The contexts, by pair index.

        Raises:
            ValueError: The logits do not have one row per window and one column per token,
                or a window belongs to no context.
        """
        start = np.asarray(start_logits, dtype=np.float32)
        end = np.asarray(end_logits, dtype=np.float32)
        shape = windows.input_ids.shape
        for name, values in (("start_logits", start), ("end_logits", end)):
            if values.shape != shape:
                raise ValueError(f"'{name}' has shape {list(values.shape)}. Expected "
                                 f"{list(shape)} (one logit per window token)")
        if len(windows) and (windows.example.min() < 0
                             or windows.example.max() >= len(contexts)):
            raise ValueError(f"The windows belong to pairs {sorted(set(windows.example))}. "
                             f"Expected pairs 0 to {len(contexts) - 1}")
        if not len(contexts):
            return []
        first, last, window_score = self._best_spans(start, end, windows.in_context)
        start_log, end_log = (_log_softmax(values, windows.attention_mask.astype(bool))
                              for values in (start, end))
        rows = np.arange(len(windows))
        span_probability = np.exp(start_log[rows, first] + end_log[rows, last]).astype(
            np.float32)
        null_score = start[:, 0] + end[:, 0]
        null_probability = np.exp(start_log[:, 0] + end_log[:, 0]).astype(np.float32)

        predictions = []
        for example, context in enumerate(contexts):
            own = np.flatnonzero(windows.example == example)
            if not own.size:
                raise ValueError(f"Pair {example} has no window. Expected at least one")
            chosen = own[int(np.argmax(window_score[own]))]
            null_window = own[int(np.argmin(null_score[own]))]
            best = window_score[chosen]
            no_answer = bool(np.isinf(best)) or (
                self.version_2_with_negative and null_score[null_window] > best)
            if no_answer:
                predictions.append(Prediction(answer="", start=0, end=0,
                                              score=float(null_probability[null_window])))
                continue
            begin = max(int(windows.offset_start[chosen, first[chosen]]), 0)
            finish = max(int(windows.offset_end[chosen, last[chosen]]), 0)
            predictions.append(Prediction(answer=context[begin:finish], start=begin, end=finish,
                                          score=float(span_probability[chosen])))
        return predictions

    def _best_spans(self, start: np.ndarray, end: np.ndarray,
                    in_context: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per window: the best span's first and last token and its score (-inf without a
        context token). Spans (i, i + k), k < max_answer_length, in flat order i * K + k: the
        first best is the lowest start, then the lowest end."""
        count, length = start.shape
        span = self.max_answer_length
        scores = np.full((count, length, span), -np.inf, dtype=np.float32)
        for k in range(min(span, length)):
            valid = in_context[:, :length - k] & in_context[:, k:]
            sums = start[:, :length - k] + end[:, k:]
            scores[:, :length - k, k] = np.where(valid, sums, -np.inf)
        flat = scores.reshape(count, length * span)
        best = np.argmax(flat, axis=1) if length else np.zeros(count, dtype=np.int64)
        window_score = (flat[np.arange(count), best] if length
                        else np.full(count, -np.inf, dtype=np.float32))
        first = best // span
        last = np.minimum(first + best % span, max(length - 1, 0))
        return first, last, window_score


def _log_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float64 log-softmax over each row's attended tokens (`tf.reduce_logsumexp`'s steps)."""
    values = np.where(mask, logits.astype(np.float64), -np.inf)
    top = values.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(values - top), axis=1, keepdims=True)) + top
    return logits.astype(np.float64) - total
