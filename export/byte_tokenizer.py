"""`ByteTokenizer`: ByT5's byte-level tokenizer made of TensorFlow string ops.

Encoding (as `ByT5Tokenizer`): every UTF-8 byte `b` of the text is token `b + 3` (ids 0, 1, 2
are pad, eos, unk), the sequence is cut to `max_length - 1` tokens and eos (1) is appended.
Decoding (as `batch_decode(..., skip_special_tokens=True)`): ids outside the byte range (pad,
eos, unk, the `<extra_id_*>` tokens) are dropped, the rest become bytes again, and invalid
UTF-8 is dropped like Python's `bytes.decode("utf-8", errors="ignore")`.

Known difference: Hugging Face matches special tokens typed in the text (the literal string
"</s>" becomes eos); here it is five bytes.
"""

from __future__ import annotations

from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402

from export.errors import UnsupportedTokenizerError  # noqa: E402

#: Ids before the first byte: pad, eos, unk.
BYTE_OFFSET = 3
PAD_ID = 0
EOS_ID = 1


class ByteTokenizer(tf.Module):
    """Tokenizes string tensors into ByT5 `input_ids` and `attention_mask` (int32, padded to
    `max_length`) and decodes generated ids back into strings.

    Args:
        max_length: Tokens per sequence, eos included.
        clean_up_tokenization_spaces: Apply Hugging Face's clean-up of spaces before
            punctuation when decoding (the tokenizer's setting).
    """

    def __init__(self, *, max_length: int, clean_up_tokenization_spaces: bool = False,
                 name: str = "byte_tokenizer") -> None:
        super().__init__(name=name)
        self.max_length = int(max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self._byte_strings = tf.constant([bytes([value]) for value in range(256)])

    @classmethod
    def from_hf_tokenizer(cls, tokenizer: Any, *, max_length: int) -> "ByteTokenizer":
        """The in-graph twin of a `ByT5Tokenizer`.

        Raises:
            UnsupportedTokenizerError: `tokenizer` is not a ByT5 byte tokenizer.
        """
        if type(tokenizer).__name__ != "ByT5Tokenizer" or (
                tokenizer.pad_token_id, tokenizer.eos_token_id) != (PAD_ID, EOS_ID):
            raise UnsupportedTokenizerError(
                "Expected a ByT5Tokenizer (pad 0, eos 1, bytes from id 3). Received: "
                f"{type(tokenizer).__name__}")
        return cls(max_length=max_length, clean_up_tokenization_spaces=bool(
            getattr(tokenizer, "clean_up_tokenization_spaces", False)))

    def tokenize(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(input_ids, attention_mask)`, each `[batch, max_length]` int32."""
        pieces = tf.strings.bytes_split(texts)
        values = tf.io.decode_raw(pieces.flat_values, tf.uint8)[:, 0]
        ids = pieces.with_flat_values(tf.cast(values, tf.int32) + BYTE_OFFSET)
        ids = ids[:, :self.max_length - 1]
        eos = tf.fill([tf.shape(texts)[0], 1], EOS_ID)
        ids = tf.concat([ids, tf.RaggedTensor.from_tensor(eos)], axis=1)
        shape = [None, self.max_length]
        input_ids = ids.to_tensor(default_value=PAD_ID, shape=shape)
        mask = tf.ones_like(ids).to_tensor(default_value=0, shape=shape)
        return input_ids, mask

    def detokenize(self, ids: tf.Tensor) -> tf.Tensor:
        """Decoded strings `[batch]` of generated ids `[batch, length]`."""
        ids = tf.cast(ids, tf.int32)
        ragged = tf.ragged.boolean_mask(
            ids, (ids >= BYTE_OFFSET) & (ids < BYTE_OFFSET + 256))
        byte_strings = tf.gather(self._byte_strings, ragged - BYTE_OFFSET)
        texts = tf.strings.reduce_join(byte_strings, axis=1)
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="ignore")
        if self.clean_up_tokenization_spaces:
            from export.sentencepiece_tokenizer import clean_up_spaces

            texts = clean_up_spaces(texts)
        return texts
