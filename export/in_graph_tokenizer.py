"""A BERT WordPiece tokenizer made of TensorFlow ops that reproduces a Hugging Face tokenizer.

It is built on `transformers.TFBertTokenizer` (its WordPiece layer, with the plain
`tensorflow_text.BertTokenizer` backend) and adds what `TFBertTokenizer` does differently from
the Hugging Face tokenizer the model was fine-tuned with:

- Normalisation: `TFBertTokenizer` lower-cases with ICU case folding (NFKC_Casefold: `ß` → `ss`,
  `ﬁ` → `fi`, full-width letters → ASCII) and keeps control characters; Hugging Face's
  `BertNormalizer` removes control characters, strips accents and lower-cases character by
  character. Here the text is normalised the Hugging Face way first and the WordPiece layer runs
  with lower-casing off.
- Pair truncation: `TFBertTokenizer` shrinks the longest segment one token at a time, cutting the
  first segment on ties. Hugging Face's `longest_first` differs, and its Rust (fast) and Python
  (slow) tokenizers differ from each other, whenever both segments are longer than half the
  budget: by one token when the budget is odd, which it is for every even `max_length`. This
  module implements the rule of the tokenizer it was built from.
- Padding of `token_type_ids` uses 0, not the pad token id.

Known differences that remain: Hugging Face matches added/special tokens typed in the text (the
literal string "[MASK]" becomes the [MASK] id; here it is split into "[", "mask", "]"), and
`max_input_chars_per_word` counts characters where TF Text counts bytes (a word longer than
100 bytes but at most 100 characters becomes [UNK] here).

Why not `FastBertTokenizer`: it tokenizes identically on this path, but its ops
(`FastBertNormalize`, `FastWordpieceTokenizeWithOffsets`) are missing from older TF Serving
binaries, while the TF Text ops used here (`RegexSplitWithOffsets`,
`WordpieceTokenizeWithOffsets`, `NormalizeUTF8`) have been in TF Text since its 2.0 releases.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from export._not_tracked import NotTracked  # noqa: E402
from export.errors import UnsupportedTokenizerError  # noqa: E402

logger = logging.getLogger(__name__)

RUST_TRUNCATION = "tokenizers"
PYTHON_TRUNCATION = "transformers"

_SUPPORTED = (
    "Only BERT-style WordPiece tokenizers can be embedded in the graph for now (BertTokenizer, "
    "BertTokenizerFast and their relatives: DistilBERT, MiniLM, ELECTRA, ...)"
)


class InGraphTokenizer(tf.Module):
    """Tokenizes string tensors into `input_ids`, `attention_mask`, `token_type_ids` (int32).

    Pads to the longest sequence of the batch and truncates to `max_length` tokens, like
    `tokenizer(texts, [pairs], padding=True, truncation=True, max_length=max_length)`.

    Args:
        wordpiece: A `transformers.TFBertTokenizer` built with `do_lower_case=False` and
            `use_fast_bert_tokenizer=False` (this module normalises the text itself).
        max_length: Maximum number of tokens per sequence, special tokens included.
        cls_token_id: Id of the token that starts every sequence.
        sep_token_id: Id of the token that ends each segment.
        pad_token_id: Id used to pad `input_ids`.
        lowercase: Lower-case the text.
        strip_accents: Remove combining marks after NFD decomposition.
        clean_text: Remove control characters and map whitespace to spaces.
        pair_truncation: `"tokenizers"` for the Rust (fast) tokenizers' `longest_first` rule,
            `"transformers"` for the Python (slow) tokenizers' rule.
        name: The module name.
    """

    def __init__(
        self,
        wordpiece: Any,
        *,
        max_length: int,
        cls_token_id: int,
        sep_token_id: int,
        pad_token_id: int,
        lowercase: bool,
        strip_accents: bool,
        clean_text: bool = True,
        pair_truncation: str = RUST_TRUNCATION,
        name: str | None = None,
    ):
        super().__init__(name=name or "in_graph_tokenizer")
        if pair_truncation not in (RUST_TRUNCATION, PYTHON_TRUNCATION):
            raise ValueError(
                f"Unknown pair_truncation. Expected {RUST_TRUNCATION!r} or "
                f"{PYTHON_TRUNCATION!r}. Received: pair_truncation={pair_truncation!r}"
            )
        # The Keras layer itself stays untracked (saving it would only log "not built" and
        # serialize Keras metadata); its TF Text tokenizer, which owns the WordPiece lookup table,
        # is tracked so the SavedModel owns that resource (TF Text's "untracked resource" error
        # otherwise).
        self._wordpiece = NotTracked(wordpiece)
        self.wordpiece_tokenizer = wordpiece.tf_tokenizer
        self.max_length = int(max_length)
        self.cls_token_id = int(cls_token_id)
        self.sep_token_id = int(sep_token_id)
        self.pad_token_id = int(pad_token_id)
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self.clean_text = bool(clean_text)
        self.pair_truncation = pair_truncation

    @classmethod
    def from_hf_tokenizer(cls, tokenizer: Any, *, max_length: int) -> InGraphTokenizer:
        """Builds the in-graph equivalent of a Hugging Face WordPiece tokenizer.

        Args:
            tokenizer: A `BertTokenizerFast`-style (Rust WordPiece model with `BertNormalizer`
                and `BertPreTokenizer`) or `BertTokenizer`-style (Python) tokenizer.
            max_length: Maximum number of tokens per sequence, special tokens included.

        Returns:
            The in-graph tokenizer.

        Raises:
            UnsupportedTokenizerError: The tokenizer is not a BERT-style WordPiece tokenizer.
        """
        from transformers import TFBertTokenizer

        options = _wordpiece_options(tokenizer)
        wordpiece = TFBertTokenizer(
            vocab_list=_vocab_list(tokenizer),
            do_lower_case=False,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id,
            padding="longest",
            truncation=True,
            max_length=max_length,
            use_fast_bert_tokenizer=False,
            suffix_indicator=options.pop("suffix_indicator"),
            max_bytes_per_word=options.pop("max_chars_per_word"),
            unknown_token=options.pop("unknown_token"),
        )
        return cls(
            wordpiece,
            max_length=max_length,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **options,
        )

    def __call__(self, text: tf.Tensor, text_pair: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Tokenizes a batch.

        Args:
            text: String tensor of shape [batch].
            text_pair: Optional string tensor of shape [batch], the second segments.

        Returns:
            `input_ids`, `attention_mask`, `token_type_ids`: int32 tensors [batch, longest].
        """
        first = self.wordpieces(text)
        if text_pair is None:
            segments = (first[:, : self.max_length - 2],)
        else:
            segments = self._truncate_pair(first, self.wordpieces(text_pair))
        input_ids, token_type_ids = tf_text.combine_segments(
            segments,
            start_of_sequence_id=self.cls_token_id,
            end_of_segment_id=self.sep_token_id,
        )
        # At least [CLS] [SEP]: an empty batch then still has a sequence axis the model accepts.
        length = tf.maximum(input_ids.bounding_shape(axis=1), 2)
        input_ids, attention_mask = tf_text.pad_model_inputs(
            input_ids, max_seq_length=length, pad_value=self.pad_token_id
        )
        token_type_ids, _ = tf_text.pad_model_inputs(token_type_ids, max_seq_length=length)
        return {
            "input_ids": tf.cast(input_ids, tf.int32),
            "attention_mask": tf.cast(attention_mask, tf.int32),
            "token_type_ids": tf.cast(token_type_ids, tf.int32),
        }

    def normalize(self, text: tf.Tensor) -> tf.Tensor:
        """Applies Hugging Face's `BertNormalizer` steps to a string tensor."""
        if self.clean_text:
            text = tf.strings.regex_replace(text, r"[\t\n\r]", " ")
            text = tf.strings.regex_replace(text, r"[\p{C}\x{FFFD}]", "")
        text = tf.strings.regex_replace(text, r"\p{Z}", " ")
        if self.strip_accents:
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, r"\p{Mn}", "")
        if self.lowercase:
            # Hugging Face lower-cases character by character; ICU would turn a word-final
            # capital sigma into "ς" where Hugging Face gives "σ".
            text = tf.strings.regex_replace(text, "Σ", "σ")
            text = tf.strings.lower(text, encoding="utf-8")
        return text

    def wordpieces(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Token ids of each text, without special tokens: int64 ragged [batch, (tokens)]."""
        return self._wordpiece.value.unpaired_tokenize(self.normalize(text))

    def _truncate_pair(
        self, first: tf.RaggedTensor, second: tf.RaggedTensor
    ) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
        budget = tf.constant(self.max_length - 3, tf.int64)
        first_length = first.row_lengths()
        second_length = second.row_lengths()
        if self.pair_truncation == RUST_TRUNCATION:
            keep_first, keep_second = _rust_longest_first(first_length, second_length, budget)
        else:
            keep_first, keep_second = _python_longest_first(first_length, second_length, budget)
        return _first_n(first, keep_first), _first_n(second, keep_second)


def _rust_longest_first(first_length, second_length, budget):
    """`tokenizers`' rule: the shorter keeps at most `budget // 2`, the longer the rest."""
    too_long = first_length + second_length > budget
    shorter = tf.minimum(first_length, second_length)
    longer = tf.maximum(first_length, second_length)
    keep_shorter = tf.where(too_long, tf.minimum(shorter, budget // 2), shorter)
    keep_longer = tf.where(too_long, tf.minimum(longer, budget - keep_shorter), longer)
    first_is_shorter = first_length <= second_length
    return (
        tf.where(first_is_shorter, keep_shorter, keep_longer),
        tf.where(first_is_shorter, keep_longer, keep_shorter),
    )


def _python_longest_first(first_length, second_length, budget):
    """`transformers`' slow-tokenizer rule: level the lengths, then cut both, the second first."""
    to_remove = tf.maximum(first_length + second_length - budget, 0)
    level = tf.minimum(tf.abs(first_length - second_length), to_remove)
    rest = to_remove - level
    first_is_longer = first_length > second_length
    remove_first = tf.where(first_is_longer, level + rest // 2, rest // 2)
    remove_second = tf.where(first_is_longer, rest - rest // 2, level + rest - rest // 2)
    return first_length - remove_first, second_length - remove_second


def _first_n(tokens: tf.RaggedTensor, counts: tf.Tensor) -> tf.RaggedTensor:
    positions = tf.ragged.range(tokens.row_lengths())
    return tf.ragged.boolean_mask(tokens, positions < tf.expand_dims(counts, 1))


def _vocab_list(tokenizer: Any) -> list[str]:
    """Tokens by id. `TFBertTokenizer.from_tokenizer` assumes ids 0..N-1 without gaps; a vocab
    file with a repeated line leaves a gap (the dict keeps the last id), which would shift every
    later id by one. Gaps get placeholders that no text can produce (they contain spaces)."""
    vocab = tokenizer.get_vocab()
    tokens = [f"[ unused id {i} ]" for i in range(max(vocab.values()) + 1)]
    for token, index in vocab.items():
        tokens[index] = token
    return tokens


def _wordpiece_options(tokenizer: Any) -> dict[str, Any]:
    """Reads the normalisation and WordPiece settings, or explains why they cannot be embedded."""
    name = type(tokenizer).__name__
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        options = _rust_options(name, json.loads(backend.to_str()))
    else:
        options = _python_options(name, tokenizer)
    for token in ("cls_token_id", "sep_token_id", "pad_token_id"):
        if getattr(tokenizer, token, None) is None:
            raise UnsupportedTokenizerError(
                f"{_SUPPORTED}. Expected a tokenizer with [CLS], [SEP] and [PAD] tokens. "
                f"Received: {name} with {token}=None"
            )
    for side in ("truncation_side", "padding_side"):
        if getattr(tokenizer, side, "right") != "right":
            raise UnsupportedTokenizerError(
                f"{_SUPPORTED}, truncating and padding on the right. Expected {side}='right'. "
                f"Received: {name} with {side}={getattr(tokenizer, side)!r}"
            )
    return options


def _python_options(name: str, tokenizer: Any) -> dict[str, Any]:
    basic = getattr(tokenizer, "basic_tokenizer", None)
    wordpiece = getattr(tokenizer, "wordpiece_tokenizer", None)
    if wordpiece is None or not hasattr(tokenizer, "vocab"):
        raise UnsupportedTokenizerError(
            f"{_SUPPORTED}. Expected a WordPiece tokenizer. Received: {name}"
        )
    if (
        basic is None
        or not getattr(basic, "tokenize_chinese_chars", True)
        or not getattr(basic, "do_split_on_punc", True)
    ):
        raise UnsupportedTokenizerError(
            f"{_SUPPORTED}, with BERT's basic tokenization (punctuation and CJK splitting). "
            f"Expected do_basic_tokenize=True and the default splitting. Received: {name} with "
            f"other settings"
        )
    lowercase = bool(basic.do_lower_case)
    strip_accents = basic.strip_accents
    return {
        "lowercase": lowercase,
        "strip_accents": lowercase if strip_accents is None else bool(strip_accents),
        "clean_text": True,
        "pair_truncation": PYTHON_TRUNCATION,
        "suffix_indicator": "##",
        "max_chars_per_word": int(getattr(wordpiece, "max_input_chars_per_word", 100)),
        "unknown_token": str(getattr(wordpiece, "unk_token", tokenizer.unk_token)),
    }


def _rust_options(name: str, state: dict[str, Any]) -> dict[str, Any]:
    model = state.get("model") or {}
    normalizer = state.get("normalizer") or {}
    pre_tokenizer = state.get("pre_tokenizer") or {}
    if model.get("type") != "WordPiece":
        raise UnsupportedTokenizerError(
            f"{_SUPPORTED}. Expected a tokenizer whose model is WordPiece. Received: {name} with "
            f"a {model.get('type')} model"
        )
    if normalizer.get("type") != "BertNormalizer" or pre_tokenizer.get("type") != (
        "BertPreTokenizer"
    ):
        raise UnsupportedTokenizerError(
            f"{_SUPPORTED}. Expected BertNormalizer and BertPreTokenizer. Received: {name} with "
            f"normalizer {normalizer.get('type')} and pre-tokenizer {pre_tokenizer.get('type')}"
        )
    if not normalizer.get("handle_chinese_chars", True):
        raise UnsupportedTokenizerError(
            f"{_SUPPORTED}, splitting CJK characters. Expected handle_chinese_chars=True. "
            f"Received: {name} with handle_chinese_chars=False"
        )
    lowercase = bool(normalizer.get("lowercase", True))
    strip_accents = normalizer.get("strip_accents")
    return {
        "lowercase": lowercase,
        "strip_accents": lowercase if strip_accents is None else bool(strip_accents),
        "clean_text": bool(normalizer.get("clean_text", True)),
        "pair_truncation": RUST_TRUNCATION,
        "suffix_indicator": model.get("continuing_subword_prefix") or "##",
        "max_chars_per_word": int(model.get("max_input_chars_per_word") or 100),
        "unknown_token": model.get("unk_token") or "[UNK]",
    }
