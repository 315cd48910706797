"""`SentencePieceTokenizer`: a T5-style SentencePiece tokenizer made of TensorFlow ops
(`tensorflow_text.SentencepieceTokenizer` over the run's `spiece.model`).

Encoding (as `T5Tokenizer`/`T5TokenizerFast`): the SentencePiece ids of the text, cut to
`max_length - 1` tokens, then eos. Decoding (as `batch_decode(..., skip_special_tokens=True)`):
special ids (pad, eos, unk, `<extra_id_*>`) are dropped, then the two Hugging Face tokenizers
differ and each is reproduced: the fast one joins the pieces, turns "▁" into spaces and drops
one leading space (its `Metaspace` decoder); the slow one lets SentencePiece detokenize and
strips surrounding whitespace.

Only tokenizers whose ids are exactly the SentencePiece model's ids (T5, mT5, ByT5-free
SentencePiece vocabularies) can be embedded; Marian (separate source/target models and a
`vocab.json`), BART (byte-level BPE) and others raise `UnsupportedTokenizerError`.

Known difference: Hugging Face matches special tokens typed in the text (the literal "</s>"
becomes eos); here SentencePiece splits it like any text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from export.errors import UnsupportedTokenizerError  # noqa: E402

_SUPPORTED = ("Expected a ByT5 byte tokenizer or a SentencePiece tokenizer whose token ids are "
              "the SentencePiece model's (T5Tokenizer, T5TokenizerFast, mT5) with its "
              "spiece.model in the run directory")

#: Hugging Face's `clean_up_tokenization` replacements, in its order.
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_spaces(texts: tf.Tensor) -> tf.Tensor:
    """Hugging Face's `clean_up_tokenization` (no space before punctuation and contractions)."""
    for old, new in _CLEAN_UP:
        texts = tf.strings.regex_replace(texts, _literal(old), new)
    return texts


def _literal(text: str) -> str:
    return "".join("\\" + char if char in ".?!,'" else char for char in text)


class SentencePieceTokenizer(tf.Module):
    """Tokenizes string tensors into `input_ids` and `attention_mask` (int32, padded to
    `max_length`) and decodes generated ids back into strings.

    Args:
        model_proto: The serialized SentencePiece model (`spiece.model`'s bytes).
        max_length: Tokens per sequence, eos included.
        eos_id: Id appended to every sequence.
        pad_id: Id of padding.
        special_ids: Ids dropped when decoding (besides ids beyond the SentencePiece vocabulary).
        fast: Decode like a fast (`tokenizers`) tokenizer rather than a slow one.
        clean_up_tokenization_spaces: Apply Hugging Face's clean-up when decoding.
    """

    def __init__(self, model_proto: bytes, *, max_length: int, eos_id: int, pad_id: int,
                 special_ids: list[int], fast: bool = True,
                 clean_up_tokenization_spaces: bool = False,
                 name: str = "sentencepiece_tokenizer") -> None:
        super().__init__(name=name)
        self.max_length = int(max_length)
        self.eos_id = int(eos_id)
        self.pad_id = int(pad_id)
        self.fast = bool(fast)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self._sentencepiece = tf_text.SentencepieceTokenizer(model=model_proto,
                                                             out_type=tf.int32)
        self.vocab_size = int(self._sentencepiece.vocab_size())
        self._special_ids = tf.constant(sorted({int(i) for i in special_ids}) or [-1],
                                        dtype=tf.int32)

    @classmethod
    def from_hf_tokenizer(cls, tokenizer: Any, *, max_length: int,
                          run_path: Path | None = None) -> "SentencePieceTokenizer":
        """The in-graph twin of a T5-style SentencePiece tokenizer.

        Raises:
            UnsupportedTokenizerError: no SentencePiece model, or its ids are not the
                tokenizer's.
        """
        import sentencepiece

        candidates = [getattr(tokenizer, "vocab_file", None)]
        if run_path is not None:
            candidates.append(str(Path(run_path) / "spiece.model"))
        model_file = next((Path(name) for name in candidates
                           if name and str(name).endswith(".model") and Path(name).is_file()),
                          None)
        name = type(tokenizer).__name__
        if model_file is None or getattr(tokenizer, "eos_token_id", None) is None:
            raise UnsupportedTokenizerError(
                f"The run's tokenizer cannot be embedded in the graph. {_SUPPORTED}. Received: "
                f"{name} without a SentencePiece .model file")
        proto = model_file.read_bytes()
        processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        size = processor.get_piece_size()
        pieces = [processor.id_to_piece(i) for i in range(size)]
        if tokenizer.convert_ids_to_tokens(list(range(size))) != pieces:
            raise UnsupportedTokenizerError(
                f"The run's tokenizer cannot be embedded in the graph. {_SUPPORTED}. Received: "
                f"{name} whose token ids differ from those of {model_file.name}")
        return cls(proto, max_length=max_length, eos_id=tokenizer.eos_token_id,
                   pad_id=tokenizer.pad_token_id or 0, special_ids=tokenizer.all_special_ids,
                   fast=bool(getattr(tokenizer, "is_fast", False)),
                   clean_up_tokenization_spaces=bool(
                       getattr(tokenizer, "clean_up_tokenization_spaces", False)))

    def tokenize(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(input_ids, attention_mask)`, each `[batch, max_length]` int32."""
        ids = self._sentencepiece.tokenize(texts)[:, :self.max_length - 1]
        eos = tf.fill([tf.shape(texts)[0], 1], self.eos_id)
        ids = tf.concat([ids, tf.RaggedTensor.from_tensor(eos)], axis=1)
        shape = [None, self.max_length]
        return (ids.to_tensor(default_value=self.pad_id, shape=shape),
                tf.ones_like(ids).to_tensor(default_value=0, shape=shape))

    def detokenize(self, ids: tf.Tensor) -> tf.Tensor:
        """Decoded strings `[batch]` of generated ids `[batch, length]`."""
        ids = tf.cast(ids, tf.int32)
        special = tf.reduce_any(ids[:, :, None] == self._special_ids[None, None, :], axis=-1)
        keep = ~special & (ids >= 0) & (ids < self.vocab_size)
        ids = tf.ragged.boolean_mask(ids, keep)
        if self.fast:
            pieces = self._sentencepiece.id_to_string(ids)
            texts = tf.strings.regex_replace(tf.strings.reduce_join(pieces, axis=1), "▁", " ")
            texts = tf.strings.regex_replace(texts, "^ ", "")
        else:
            texts = tf.strings.strip(self._sentencepiece.detokenize(ids))
        if self.clean_up_tokenization_spaces:
            texts = clean_up_spaces(texts)
        return texts
