"""`Seq2SeqCodec`: the generated texts of a seq2seq (translation, summarisation) export.

The export's `serving_default` takes `text` (string [-1]) and returns `generated_text` (string
[-1], UTF-8) — tokenisation, generation and detokenisation all happen in the SavedModel — and
`generated_ids` (int32 [-1, max_new_tokens + 1]), which the client does not need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.prediction import Prediction
from serving.task_codec import TaskCodec


class Seq2SeqCodec(TaskCodec):
    """`Prediction(generated_text=...)` per input text."""

    task = "seq2seq"
    outputs = ("generated_text",)
    inputs = ("text",)

    def predictions(self, outputs: Mapping[str, np.ndarray], texts: Sequence[str],
                    text_pairs: Sequence[str] | None) -> list[Prediction]:
        generated = np.asarray(outputs["generated_text"])
        if generated.ndim != 1 or generated.shape[0] != len(texts):
            raise ValueError(f"'generated_text' has shape {list(generated.shape)}; expected "
                             f"[{len(texts)}] (one text per input)")
        return [Prediction(generated_text=_text(value)) for value in generated]


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
