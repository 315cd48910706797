"""`Seq2SeqServingModule`: the `tf.Module` a seq2seq export saves — tokenizer, XLA-compiled
`generate` and detokenizer in one graph behind `serving_default`."""

from __future__ import annotations

import logging
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402

from export._not_tracked import NotTracked  # noqa: E402

logger = logging.getLogger(__name__)

SERVING_DEFAULT = "serving_default"
TEXT = "text"
GENERATED_TEXT = "generated_text"
GENERATED_IDS = "generated_ids"
SIGNATURE_NAMES = (SERVING_DEFAULT,)


class Seq2SeqServingModule(tf.Module):
    """A fine-tuned encoder-decoder model with its tokenizer and generation in the graph.

    `serving_default(text)` (string [-1]) → `generated_text` (string [-1], decoded like
    `tokenizer.batch_decode(..., skip_special_tokens=True)`) and `generated_ids` (int32
    [-1, max_new_tokens + 1]: the decoder start token, the generated tokens, then padding).

    Each text becomes `source_prefix + text`, tokenized and padded to `max_length` tokens, and
    is generated on its own (`tf.map_fn` over the batch) by `model.generate` compiled with XLA
    for the fixed shape `[1, max_length]`: one compilation serves every batch size (XLA
    compiles once per input shape, and the beam search of transformers' TF `generate` needs a
    static batch size), and on CPU the compiled loop is ~10-30x faster than graph-mode
    `generate` after a compilation of a few seconds (paid during warm-up).

    Args:
        model: The `TFAutoModelForSeq2SeqLM` (its variables are tracked, not the Keras model).
        tokenizer: A `ByteTokenizer` or `SentencePieceTokenizer` (`tokenize` / `detokenize`).
        source_prefix: Text put before every input (the run's `source_prefix`).
        max_new_tokens: Tokens generated at most (the run's `max_target_length`).
        num_beams: 1 for greedy search, more for beam search.
    """

    def __init__(self, model: Any, tokenizer: tf.Module, *, source_prefix: str,
                 max_new_tokens: int, num_beams: int) -> None:
        super().__init__(name="seq2seq_serving_module")
        self._model = NotTracked(model)
        self.model_variables = list(model.variables)
        self.tokenizer = tokenizer
        self.source_prefix = str(source_prefix)
        self.max_length = int(tokenizer.max_length)
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)
        self.signature_names = SIGNATURE_NAMES
        self.pad_token_id = int(model.config.pad_token_id or 0)
        length = self.max_length
        self._generate_one = tf.function(
            self._generate, jit_compile=True,
            input_signature=[tf.TensorSpec([1, length], tf.int32),
                             tf.TensorSpec([1, length], tf.int32)])
        text_spec = [tf.TensorSpec([None], tf.string, name=TEXT)]
        self.serving_default = tf.function(self._serve, input_signature=text_spec)
        self.tokenize = tf.function(self._tokenize, input_signature=text_spec)

    def signatures(self) -> dict[str, Any]:
        """The concrete functions to pass to `tf.saved_model.save(..., signatures=...)`."""
        return {SERVING_DEFAULT: self.serving_default.get_concrete_function()}

    def _tokenize(self, text):
        if self.source_prefix:
            text = tf.strings.join([self.source_prefix, text])
        input_ids, attention_mask = self.tokenizer.tokenize(text)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _generate(self, input_ids, attention_mask):
        sequences = self._model.value.generate(
            input_ids=input_ids, attention_mask=attention_mask,
            max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
            do_sample=False, num_return_sequences=1, return_dict_in_generate=True)["sequences"]
        # XLA generation pads to the full length already; make the static shape exact.
        width = self.max_new_tokens + 1
        sequences = tf.pad(sequences[:, :width], [[0, 0], [0, width - tf.shape(sequences)[1]]],
                           constant_values=self.pad_token_id)
        return tf.ensure_shape(tf.cast(sequences, tf.int32), [1, width])

    def _serve(self, text):
        features = self._tokenize(text)
        width = self.max_new_tokens + 1
        generated = tf.map_fn(
            lambda row: self._generate_one(row[0][None], row[1][None])[0],
            (features["input_ids"], features["attention_mask"]),
            fn_output_signature=tf.TensorSpec([width], tf.int32))
        return {GENERATED_TEXT: self.tokenizer.detokenize(generated), GENERATED_IDS: generated}
