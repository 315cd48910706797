"""The `tf.Module` of a token-classification (NER) export: word splitting with byte offsets,
WordPiece and the token classifier in one graph, one tag per word.

Signatures:

- `serving_default(text)`: `text` string [-1] (raw UTF-8 text) →
  - `tags` string [-1, -1]: per word, its predicted BIO tag (`""` past `word_count`);
  - `scores` float32 [-1, -1]: the softmax probability of that tag (0 past `word_count`);
  - `word_start`, `word_end` int64 [-1, -1]: the word's byte offsets in the UTF-8 text
    (`end` exclusive; 0 past `word_count`);
  - `word_count` int64 [-1]: the words tagged in each text.

  Words are decoded into entities by the client (`serving.TokenClassificationCodec`): BIO spans,
  character offsets, entity score = mean of its words' scores.
- `tokens(input_ids, attention_mask, token_type_ids)` (int32 [-1, -1]) → `logits`,
  `probabilities` (float32 [-1, -1, T]), for clients that tokenize themselves.

How text becomes words: the raw text is split the way BERT's basic tokenizer (and Hugging
Face's `BertPreTokenizer`) splits it, on whitespace (removed) and punctuation and CJK
characters (each its own word), keeping byte offsets into the raw text. Each word is then
normalised like the Hugging Face tokenizer (lower-casing, accent stripping) and WordPiece
tokenized; the model sees `[CLS] pieces of every word [SEP]`, exactly what
`tokenizer(words, is_split_into_words=True)` gives, and each word is tagged from its first
sub-token, as in training. Words that normalise to nothing (e.g. only control characters) are
dropped. A text longer than `max_length` tokens is cut into consecutive windows of
`max_length - 2` word pieces (no overlap; a word may straddle two windows, and is tagged from the
window holding its first piece), each run as `[CLS] window [SEP]`, so every word is tagged; a
word at the start of a window sees only that window as context.

The module also saves `tokenize(text)` (not a signature): the windows' model inputs and each
word's window, first-token position and offsets, so that the parity check can compare the
in-graph tokenization with the Hugging Face tokenizer exactly.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from export._not_tracked import NotTracked  # noqa: E402
from export.classifier_serving_module import SERVING_DEFAULT  # noqa: E402
from export.classifier_serving_module import TEXT  # noqa: E402
from export.classifier_serving_module import TOKEN_INPUTS  # noqa: E402
from export.classifier_serving_module import TOKENS  # noqa: E402
from export.in_graph_tokenizer import InGraphTokenizer  # noqa: E402

logger = logging.getLogger(__name__)

#: The signatures of a token-classification export.
SIGNATURE_NAMES = (SERVING_DEFAULT, TOKENS)
#: The outputs of `serving_default`.
OUTPUTS = ("tags", "scores", "word_start", "word_end", "word_count")

# BERT's basic tokenization (tensorflow_text's `BasicTokenizer` and Hugging Face's
# `BertPreTokenizer`): ASCII and Unicode punctuation and CJK ideographs are words of their own.
_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|\p{P}"
_CJK = "|".join((
    r"[\x{4E00}-\x{9FFF}]", r"[\x{3400}-\x{4DBF}]", r"[\x{20000}-\x{2A6DF}]",
    r"[\x{2A700}-\x{2B73F}]", r"[\x{2B740}-\x{2B81F}]", r"[\x{2B820}-\x{2CEAF}]",
    r"[\x{F900}-\x{FAFF}]", r"[\x{2F800}-\x{2FA1F}]"))
# Whitespace as Hugging Face's BertNormalizer sees it (tab, newline, return, Unicode spaces).
_WHITESPACE = r"[\t\n\r]|\p{Z}"
KEEP_PATTERN = f"{_PUNCTUATION}|{_CJK}"
SPLIT_PATTERN = f"{_WHITESPACE}|{KEEP_PATTERN}"


def split_words(text: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
    """`(words, starts, ends)`: the words of each text, ragged [batch, (words)], with their byte
    offsets (int64, `end` exclusive) into the text."""
    return tf_text.regex_split_with_offsets(text, SPLIT_PATTERN, KEEP_PATTERN)


class TokenClassifierServingModule(tf.Module):
    """A fine-tuned token classifier with word splitting and its tokenizer in the graph.

    Args:
        model: A built `TFAutoModelForTokenClassification`.
        tokenizer: The in-graph WordPiece tokenizer (its `max_length` bounds the tokens).
        tags: Tag names; index = tag id.
    """

    def __init__(self, model: Any, tokenizer: InGraphTokenizer, tags: Sequence[str]) -> None:
        super().__init__(name="token_classifier_serving_module")
        # As in ClassifierServingModule: the variables are tracked, not the Keras model.
        self._model = NotTracked(model)
        self.model_variables = list(model.variables)
        self.tokenizer = tokenizer
        self.tag_names = tuple(tags)
        self.signature_names = SIGNATURE_NAMES
        self._model_takes_token_type_ids = "token_type_ids" in inspect.signature(
            model.call).parameters
        text_spec = [tf.TensorSpec([None], tf.string, name=TEXT)]
        self.serving_default = tf.function(self._serve, input_signature=text_spec)
        self.tokenize = tf.function(self._tokenize, input_signature=text_spec)
        self.tokens = tf.function(
            self._tokens,
            input_signature=[tf.TensorSpec([None, None], tf.int32, name=n) for n in TOKEN_INPUTS])

    def signatures(self) -> dict[str, Any]:
        """The concrete functions to pass to `tf.saved_model.save(..., signatures=...)`."""
        return {name: getattr(self, name).get_concrete_function()
                for name in self.signature_names}

    # === Signature bodies ===

    def _serve(self, text):
        encoded = self._tokenize(text)
        logits = self.tokens(input_ids=encoded["input_ids"],
                             attention_mask=encoded["attention_mask"],
                             token_type_ids=encoded["token_type_ids"])["logits"]
        word_count = encoded["word_count"]
        # Each word's logits: row `word_window` (its window), column `word_position`.
        words = tf.sequence_mask(word_count, tf.shape(encoded["word_window"], tf.int64)[1])
        at = tf.stack([tf.boolean_mask(encoded["word_window"], words),
                       tf.boolean_mask(encoded["word_position"], words)], axis=1)
        flat = tf.gather_nd(logits, at)
        word_logits = tf.RaggedTensor.from_row_lengths(flat, word_count).to_tensor()
        probabilities = tf.nn.softmax(word_logits, axis=-1)
        tag_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        names = tf.constant(self.tag_names, dtype=tf.string)
        # to_tensor pads to the longest row: the same width as the offsets.
        words = tf.sequence_mask(word_count, tf.shape(tag_ids, tf.int64)[1])
        return {
            "tags": tf.where(words, tf.gather(names, tag_ids), ""),
            "scores": tf.where(words, tf.reduce_max(probabilities, axis=-1), 0.0),
            "word_start": encoded["word_start"],
            "word_end": encoded["word_end"],
            "word_count": word_count,
        }

    def _tokens(self, input_ids, attention_mask, token_type_ids):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._model_takes_token_type_ids:
            inputs["token_type_ids"] = token_type_ids
        logits = tf.cast(self._model.value(**inputs, training=False).logits, tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def _tokenize(self, text):
        """The model inputs of every window (int32 [windows, longest]) and, per text,
        `window_count` int64 [batch]; per word, `word_window` (its window's row in the inputs),
        `word_position` (its first token's index in that row), `word_start`/`word_end` (byte
        offsets), all int64 [batch, words] padded with 0; and `word_count` int64 [batch]."""
        words, starts, ends = split_words(text)
        pieces = self.tokenizer.wordpieces(words.flat_values)  # [all words, (pieces)]
        piece_counts = pieces.row_lengths()
        # Words that normalise to nothing have no token: Hugging Face never tags them either.
        has_tokens = words.with_flat_values(piece_counts > 0)
        counts = tf.ragged.boolean_mask(words.with_flat_values(piece_counts), has_tokens)
        starts = tf.ragged.boolean_mask(starts, has_tokens)
        ends = tf.ragged.boolean_mask(ends, has_tokens)
        # The first token of each word, counted from the text's first token.
        first = _exclusive_row_cumsum(counts)

        # Windows of `budget` tokens, one after the other (at least one per text).
        budget = tf.constant(self.tokenizer.max_length - 2, tf.int64)
        token_ids = tf.RaggedTensor.from_row_splits(pieces, words.row_splits).merge_dims(1, 2)
        total = token_ids.row_lengths()
        window_count = tf.maximum((total + budget - 1) // budget, 1)
        window_begin = tf.ragged.range(window_count).flat_values * budget
        window_length = tf.minimum(budget, tf.repeat(total, window_count) - window_begin)
        windows = tf.RaggedTensor.from_row_lengths(token_ids.flat_values, window_length)
        input_ids, token_type_ids = tf_text.combine_segments(
            (windows,), start_of_sequence_id=self.tokenizer.cls_token_id,
            end_of_segment_id=self.tokenizer.sep_token_id)
        length = tf.maximum(input_ids.bounding_shape(axis=1), 2)
        input_ids, attention_mask = tf_text.pad_model_inputs(
            input_ids, max_seq_length=length, pad_value=self.tokenizer.pad_token_id)
        token_type_ids, _ = tf_text.pad_model_inputs(token_type_ids, max_seq_length=length)

        first_window = tf.cumsum(window_count, exclusive=True)  # each text's first window row
        word_window = first // budget + tf.expand_dims(first_window, 1)
        return {
            "input_ids": tf.cast(input_ids, tf.int32),
            "attention_mask": tf.cast(attention_mask, tf.int32),
            "token_type_ids": tf.cast(token_type_ids, tf.int32),
            "window_count": window_count,
            "word_window": word_window.to_tensor(default_value=0),
            "word_position": (first % budget + 1).to_tensor(default_value=0),  # after [CLS]
            "word_start": starts.to_tensor(default_value=0),
            "word_end": ends.to_tensor(default_value=0),
            "word_count": first.row_lengths(),
        }


def _exclusive_row_cumsum(values: tf.RaggedTensor) -> tf.RaggedTensor:
    """Per row, the running sum of the values before each one (int64 ragged [batch, (n)])."""
    flat = tf.cast(values.flat_values, tf.int64)
    running = tf.cumsum(flat, exclusive=True)
    # Each row's offset: the running sum at its first value (the total for empty trailing rows).
    ends_of_rows = tf.concat([running, tf.reduce_sum(flat, keepdims=True)], axis=0)
    row_offsets = tf.gather(ends_of_rows, values.row_starts())
    return values.with_flat_values(running - tf.repeat(row_offsets, values.row_lengths()))
