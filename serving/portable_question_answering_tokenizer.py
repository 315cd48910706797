"""`QuestionAnsweringTokenizer`: cuts (question, context) pairs into the token id windows of a
portable question-answering export, on the client (`tokenizers` and NumPy only)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from serving.portable_question_answering_windows import QuestionAnsweringWindows

#: The `export_config.json` fields the windows need.
CONFIG_FIELDS = ("max_length", "doc_stride")
# Texts whose pair encoding shows the tokenizer's pair template (each gives >= 1 token).
_PROBE = ("a", "b")


class QuestionAnsweringTokenizer:
    """Builds the windows the export's model was trained and exported with.

    Each pair becomes `prefix question middle context-part suffix`, where prefix, middle and
    suffix are the special tokens of the tokenizer's pair template (BERT: `[CLS]`, `[SEP]`,
    `[SEP]`; RoBERTa: `<s>`, `</s></s>`, `</s>`) and the token type ids are the template's. A
    context too long for one window of `max_length` tokens is split into windows of
    `max_length - specials - question tokens` context tokens, each starting `doc_stride` tokens
    before the previous one ends (the Hugging Face tokenizer's `truncation="only_second"` with
    `stride=doc_stride` and overflowing tokens, which training used). A question longer than
    `max_length - doc_stride - specials - 1` tokens is cut to that, as the text export does (the
    Hugging Face tokenizer refuses it), so every window has new context tokens.

    Args:
        tokenizer: A `tokenizers.Tokenizer` (its truncation and padding are turned off here).
        max_length: Tokens per window, special tokens included.
        doc_stride: Context tokens shared by consecutive windows.
        pad_token_id: The id windows are padded with.
        pad_to_max_length: Pad every window to `max_length` (one request shape for batching
            servers) instead of the request's longest window.
        source: Where the tokenizer comes from (for messages).

    Raises:
        ValueError: `doc_stride` leaves no room for context tokens, or the tokenizer has no
            pair template with the two texts in order.
    """

    def __init__(self, tokenizer: Any, *, max_length: int, doc_stride: int, pad_token_id: int,
                 pad_to_max_length: bool = False, source: str = "") -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.max_length = int(max_length)
        self.doc_stride = int(doc_stride)
        self.pad_token_id = int(pad_token_id)
        self.pad_to_max_length = bool(pad_to_max_length)
        self.source = source
        self._template = _pair_template(tokenizer, source)
        self.special_tokens = sum(len(ids) for ids, _ in self._template["specials"])
        self.max_question_tokens = self.max_length - self.doc_stride - self.special_tokens - 1
        if not 0 < self.doc_stride or self.max_question_tokens < 0:
            raise ValueError(
                f"doc_stride must leave room for new context tokens in a window of max_length "
                f"{self.max_length} ({self.special_tokens} special tokens). Expected 0 < "
                f"doc_stride < {self.max_length - self.special_tokens}. Received: "
                f"doc_stride={self.doc_stride} ({source})")

    @classmethod
    def from_config(cls, tokenizer: Any, config: Mapping[str, Any], *, pad_token_id: int,
                    pad_to_max_length: bool = False,
                    source: str = "") -> "QuestionAnsweringTokenizer":
        """From an export's `export_config.json` fields (`max_length`, `doc_stride`).

        Raises:
            ValueError: A field is missing or not a positive integer (the message names it).
        """
        values = {}
        for name in CONFIG_FIELDS:
            value = config.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Invalid {name} in the export_config.json of {source or 'the tokenizer'}. "
                    f"Expected a positive integer (a question-answering export's). Received: "
                    f"{name}={value!r}")
            values[name] = value
        return cls(tokenizer, pad_token_id=pad_token_id, pad_to_max_length=pad_to_max_length,
                   source=source, **values)

    def windows(self, questions: Sequence[str],
                contexts: Sequence[str]) -> QuestionAnsweringWindows:
        """The windows of every pair, in pair order (a pair's windows in context order).

        Raises:
            ValueError: `contexts` does not have one entry per question.
        """
        if len(contexts) != len(questions):
            raise ValueError(f"Give one context per question. Expected {len(questions)} "
                             f"contexts. Received: {len(contexts)}")
        (prefix, prefix_types), (middle, middle_types), (suffix, suffix_types) = (
            self._template["specials"])
        question_type, context_type = self._template["types"]
        encoded_questions = self._tokenizer.encode_batch(list(questions),
                                                         add_special_tokens=False)
        encoded_contexts = self._tokenizer.encode_batch(list(contexts), add_special_tokens=False)
        rows, examples = [], []
        for example, (question, context) in enumerate(zip(encoded_questions, encoded_contexts)):
            question_ids = question.ids[:self.max_question_tokens]
            room = self.max_length - self.special_tokens - len(question_ids)
            step = room - self.doc_stride
            lead = [*prefix, *question_ids, *middle]
            lead_types = [*prefix_types, *[question_type] * len(question_ids), *middle_types]
            context_ids, offsets = context.ids, context.offsets
            first = 0
            while True:
                last = min(first + room, len(context_ids))
                part = context_ids[first:last]
                rows.append((
                    [*lead, *part, *suffix],
                    [*lead_types, *[context_type] * len(part), *suffix_types],
                    len(lead), offsets[first:last]))
                examples.append(example)
                if last == len(context_ids):
                    break
                first += step
        return self._pad(rows, examples)

    def _pad(self, rows: list, examples: list[int]) -> QuestionAnsweringWindows:
        longest = max((len(ids) for ids, _, _, _ in rows), default=0)
        length = self.max_length if self.pad_to_max_length else longest
        count = len(rows)
        input_ids = np.full((count, length), self.pad_token_id, dtype=np.int32)
        attention_mask = np.zeros((count, length), dtype=np.int32)
        token_type_ids = np.zeros((count, length), dtype=np.int32)
        offset_start = np.full((count, length), -1, dtype=np.int64)
        offset_end = np.full((count, length), -1, dtype=np.int64)
        for row, (ids, types, lead, offsets) in enumerate(rows):
            input_ids[row, :len(ids)] = ids
            attention_mask[row, :len(ids)] = 1
            token_type_ids[row, :len(ids)] = types
            if offsets:
                spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
                offset_start[row, lead:lead + len(spans)] = spans[:, 0]
                offset_end[row, lead:lead + len(spans)] = spans[:, 1]
        return QuestionAnsweringWindows(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            example=np.asarray(examples, dtype=np.int64), offset_start=offset_start,
            offset_end=offset_end)


def _pair_template(tokenizer: Any, source: str) -> dict[str, Any]:
    """The special tokens (ids, type ids) before, between and after the two texts of a pair,
    and the type ids of the texts' tokens, read from the pair encoding of a probe."""
    first, second = (tokenizer.encode(text, add_special_tokens=False) for text in _PROBE)
    pair = tokenizer.encode(*_PROBE, add_special_tokens=True)
    sequence_ids = list(pair.sequence_ids)
    positions = {index: [i for i, s in enumerate(sequence_ids) if s == index] for index in (0, 1)}
    if (not positions[0] or not positions[1]
            or positions[0] != list(range(positions[0][0], positions[0][-1] + 1))
            or positions[1] != list(range(positions[1][0], positions[1][-1] + 1))
            or positions[0][-1] > positions[1][0]
            or len(positions[0]) != len(first.ids) or len(positions[1]) != len(second.ids)):
        raise ValueError(
            f"The tokenizer of {source or 'the export'} has no pair template this client can "
            f"build windows with. Expected special tokens around [question, context] in that "
            f"order. Received: sequence ids {sequence_ids} for the pair {_PROBE}")
    ids, types = list(pair.ids), list(pair.type_ids)
    cuts = ((0, positions[0][0]), (positions[0][-1] + 1, positions[1][0]),
            (positions[1][-1] + 1, len(ids)))
    return {"specials": [(ids[a:b], types[a:b]) for a, b in cuts],
            "types": (types[positions[0][0]], types[positions[1][0]])}
