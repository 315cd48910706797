"""`QuestionAnsweringCodec`: answer spans from an extractive question-answering export.

The export's `serving_default` takes `question` and `context` (strings) and returns, per pair,
`answer` (the span's text), `start`/`end` (character offsets into the context, `end`
exclusive; the export maps its WordPiece byte offsets back to characters in the graph) and
`score` (the span's probability in its window). An empty answer with start = end = 0 means
"no answer" (SQuAD v2 models, or an empty context).

A `--portable` export returns each window's `start_logits` and `end_logits` instead; its client
codec (`serving.portable_question_answering_codec`, through `ClientTokenizer.from_path`) cuts the
windows and chooses the spans as the default export's graph does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.prediction import Prediction
from serving.task_codec import TaskCodec


class QuestionAnsweringCodec(TaskCodec):
    """`Prediction(answer, start, end, score)` per (question, context) pair."""

    task = "question-answering"
    outputs = ("answer", "start", "end", "score")
    inputs = ("question", "context")

    def predictions(self, outputs: Mapping[str, np.ndarray], texts: Sequence[str],
                    text_pairs: Sequence[str] | None) -> list[Prediction]:
        count = len(texts)
        answers = _column(outputs, "answer", count)
        starts = _column(outputs, "start", count)
        ends = _column(outputs, "end", count)
        scores = _column(outputs, "score", count)
        predictions = []
        for i in range(count):
            answer = answers[i]
            if isinstance(answer, bytes):
                answer = answer.decode("utf-8", errors="replace")
            start, end = int(starts[i]), int(ends[i])
            if text_pairs is not None:
                context = text_pairs[i]
                if not 0 <= start <= end <= len(context):
                    raise ValueError(
                        f"answer offsets start={start}, end={end} are outside the context of "
                        f"pair {i} ({len(context)} characters)")
                if context[start:end] != answer:
                    raise ValueError(
                        f"the answer {answer!r} of pair {i} is not context[{start}:{end}] "
                        f"({context[start:end]!r})")
            predictions.append(Prediction(answer=str(answer), start=start, end=end,
                                          score=float(scores[i])))
        return predictions


def _column(outputs: Mapping[str, np.ndarray], name: str, count: int) -> np.ndarray:
    values = np.asarray(outputs[name]).reshape(-1)
    if values.shape[0] != count:
        raise ValueError(f"'{name}' has {values.shape[0]} rows for {count} questions")
    return values
