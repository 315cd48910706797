"""`QuestionAnsweringWindows`: the windows a client sends to a portable question-answering export
(`tfinetune export --portable` of a `--task question-answering` run), and what it needs to read
the answers back."""

from __future__ import annotations

import dataclasses

import numpy as np

#: The token id inputs of the portable signature, in order.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclasses.dataclass(frozen=True)
class QuestionAnsweringWindows:
    """Token id windows of (question, context) pairs, padded on the right to one length.

    Each window is `<special> question <special> part of the context <special>` (the
    tokenizer's own pair template, e.g. `[CLS] q [SEP] c [SEP]`); a context longer than one
    window is split into windows sharing `doc_stride` tokens, as the Hugging Face tokenizer
    does with `truncation="only_second", stride=doc_stride, return_overflowing_tokens=True`.

    Attributes:
        input_ids, attention_mask, token_type_ids: int32 [windows, length].
        example: int64 [windows]: the pair (index in the request) of each window.
        offset_start, offset_end: int64 [windows, length]: character offsets into the pair's
            context of each context token (`end` exclusive), -1 for the other tokens (question,
            special and padding tokens).
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    example: np.ndarray
    offset_start: np.ndarray
    offset_end: np.ndarray

    def __len__(self) -> int:
        return int(self.example.shape[0])

    @property
    def in_context(self) -> np.ndarray:
        """bool [windows, length]: whether each token is a context token."""
        return self.offset_start >= 0

    def inputs(self) -> dict[str, np.ndarray]:
        """The model inputs by name (`input_ids`, `attention_mask`, `token_type_ids`)."""
        return {name: getattr(self, name) for name in TOKEN_INPUTS}
