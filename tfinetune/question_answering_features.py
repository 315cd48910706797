"""`QuestionAnsweringFeatures`: the tokenized windows of (question, context) pairs, as Hugging
Face's `run_qa` example builds them, with the start/end token of each window's answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfinetune.errors import DataError

#: The model inputs a window has (`token_type_ids` only for tokenizers that return them).
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclasses.dataclass
class QuestionAnsweringFeatures:
    """Windows of `max_length` tokens: `[CLS] question [SEP] context part [SEP]`.

    A context longer than one window is split into overlapping windows (`doc_stride` tokens
    shared by neighbours), so one question can have several windows; `example_ids` maps each
    window back to its question.

    Attributes:
        inputs: Model inputs per window (`input_ids`, `attention_mask`, [`token_type_ids`]),
            unpadded token lists.
        example_ids: The question index of each window.
        offsets: Per window and token, the `(start, end)` character offsets into the context
            of a context token, or None for question and special tokens.
        start_positions, end_positions: Per window, the tokens of the first gold answer, or 0
            (the [CLS] token) when the answer is not inside the window or there is none. None
            when built without answers.
    """

    inputs: dict[str, list[list[int]]]
    example_ids: list[int]
    offsets: list[list[tuple[int, int] | None]]
    start_positions: list[int] | None = None
    end_positions: list[int] | None = None

    def __len__(self) -> int:
        return len(self.example_ids)

    @classmethod
    def build(cls, tokenizer: Any, questions: Sequence[str], contexts: Sequence[str], *,
              max_length: int, doc_stride: int,
              answers: Sequence[tuple[Sequence[str], Sequence[int]]] | None = None,
              locations: Sequence[str] | None = None) -> QuestionAnsweringFeatures:
        """Tokenizes the pairs into windows (fast tokenizer, `truncation="only_second"`).

        Args:
            tokenizer: A Hugging Face fast tokenizer (offsets are needed).
            questions, contexts: One pair per question.
            max_length: Tokens per window, special tokens included.
            doc_stride: Tokens shared by consecutive windows of one context.
            answers: Per question `(texts, character starts)` (only the first answer is
                trained on); None for unlabelled pairs.
            locations: Per question `file:row`, for errors.

        Raises:
            DataError: a question leaves no room for the context in `max_length` tokens.
        """
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(
                "Question answering needs a fast (Rust) tokenizer for character offsets. "
                f"Received: {type(tokenizer).__name__}")
        # The stride must leave room for new context tokens in each window.
        question_lengths = [len(ids) for ids in tokenizer(list(questions),
                                                          add_special_tokens=False)["input_ids"]]
        special = tokenizer.num_special_tokens_to_add(pair=True)
        for index, length in enumerate(question_lengths):
            room = max_length - special - length
            if room <= doc_stride:
                where = f" at {locations[index]}" if locations else ""
                raise DataError(
                    f"The question is too long for max_length {max_length} with doc_stride "
                    f"{doc_stride}. Expected a question of at most "
                    f"{max_length - special - doc_stride - 1} tokens. Received: {length} tokens"
                    f"{where}")
        encoded = tokenizer(list(questions), list(contexts), truncation="only_second",
                            max_length=max_length, stride=doc_stride,
                            return_overflowing_tokens=True, return_offsets_mapping=True,
                            padding=False)
        example_ids = list(encoded["overflow_to_sample_mapping"])
        offsets = []
        for window, offset_row in enumerate(encoded["offset_mapping"]):
            sequence_ids = encoded.sequence_ids(window)
            offsets.append([tuple(offset) if sequence_id == 1 else None
                            for offset, sequence_id in zip(offset_row, sequence_ids)])
        inputs = {name: encoded[name] for name in INPUT_NAMES if name in encoded}
        features = cls(inputs, example_ids, offsets)
        if answers is not None:
            features._label(answers)
        return features

    def _label(self, answers: Sequence[tuple[Sequence[str], Sequence[int]]]) -> None:
        starts, ends = [], []
        for window, example in enumerate(self.example_ids):
            texts, answer_starts = answers[example]
            start_token = end_token = 0
            if texts:
                start_char = answer_starts[0]
                end_char = start_char + len(texts[0])
                positions = [i for i, offset in enumerate(self.offsets[window])
                             if offset is not None]
                first = self.offsets[window][positions[0]] if positions else None
                last = self.offsets[window][positions[-1]] if positions else None
                if first is not None and first[0] <= start_char and last[1] >= end_char:
                    start_token = next(i for i in positions
                                       if self.offsets[window][i][1] > start_char)
                    end_token = next(i for i in reversed(positions)
                                     if self.offsets[window][i][0] < end_char)
            starts.append(start_token)
            ends.append(end_token)
        self.start_positions, self.end_positions = starts, ends

    def dataset(self, *, batch_size: int, pad_token_id: int = 0, shuffle: bool = False,
                seed: int | None = None, labels: bool = True):
        """A `tf.data.Dataset` of `(inputs, {"start_positions", "end_positions"})` batches
        (inputs only without labels, or with `labels=False`), padded to each batch's longest
        window.

        With `shuffle`: epoch after epoch without end, each epoch's order a function of
        `(seed, epoch)` only (`tokenized_dataset.shuffled_batches`), so `fit` can resume."""
        from tfinetune import _environment  # noqa: F401
        import tensorflow as tf

        ragged = {}
        for name, rows in self.inputs.items():
            lengths = np.array([len(row) for row in rows], dtype=np.int64)
            flat = np.array([token for row in rows for token in row], dtype=np.int32)
            ragged[name] = tf.RaggedTensor.from_row_lengths(flat, lengths)
        elements: Any = ragged
        labels = labels and self.start_positions is not None
        if labels:
            elements = (ragged, {
                "start_positions": tf.constant(self.start_positions, tf.int32),
                "end_positions": tf.constant(self.end_positions, tf.int32)})
        if shuffle:
            from tfinetune.tokenized_dataset import shuffled_batches

            dataset = shuffled_batches(elements, len(self), batch_size=batch_size, seed=seed,
                                       repeat=True)
        else:
            dataset = tf.data.Dataset.from_tensor_slices(elements).ragged_batch(batch_size)

        def pad(batch, labels=None):
            dense = {name: batch[name].to_tensor(
                default_value=pad_token_id if name == "input_ids" else 0) for name in batch}
            return dense if labels is None else (dense, labels)

        if not labels:
            return dataset.map(pad).prefetch(tf.data.AUTOTUNE)
        return dataset.map(lambda batch, labels: pad(batch, labels)).prefetch(tf.data.AUTOTUNE)

    def logits(self, model: Any, *, batch_size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """`(start_logits, end_logits)` of `model` per window (unpadded float32 arrays)."""
        starts, ends = [], []
        lengths = [len(row) for row in self.inputs["input_ids"]]
        for features in self.dataset(batch_size=batch_size, labels=False):
            outputs = model(features, training=False)
            starts.extend(outputs.start_logits.numpy().astype(np.float32))
            ends.extend(outputs.end_logits.numpy().astype(np.float32))
        return ([row[:length] for row, length in zip(starts, lengths)],
                [row[:length] for row, length in zip(ends, lengths)])
