"""The `tf.Module` that becomes the SavedModel: tokenizer + classifier behind three signatures."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402

from export._not_tracked import NotTracked  # noqa: E402
from export.in_graph_tokenizer import InGraphTokenizer  # noqa: E402

logger = logging.getLogger(__name__)

SERVING_DEFAULT = "serving_default"
TOKENS = "tokens"
CLASSIFY = "classify"
SIGNATURE_NAMES = (SERVING_DEFAULT, TOKENS, CLASSIFY)

TEXT = "text"
TEXT_PAIR = "text_pair"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ClassifierServingModule(tf.Module):
    """A fine-tuned sequence classifier with its tokenizer in the graph.

    Signatures (see `signatures()`):

    - `serving_default(text[, text_pair])` → `probabilities` float32 [-1, C], `label_id` int64
      [-1], `label` string [-1], `classes` string [-1, C] (label names, one row per input).
    - `tokens(input_ids, attention_mask, token_type_ids)` (int32 [-1, -1]) → `logits`,
      `probabilities` (float32 [-1, C]), for clients that tokenize themselves.
    - `classify(inputs)`: serialized `tf.Example`s with a `text` (and `text_pair`) bytes
      feature → `classes` string [-1, C], `scores` float32 [-1, C]; TF Serving's Classify API
      (its method name is set after saving, see `saved_model_signatures`).

    The module also saves `tokenize(text[, text_pair])` (not a signature) so that a reloaded
    model's tokenization can be compared with the Hugging Face tokenizer.

    Args:
        model: A built `TFAutoModelForSequenceClassification`.
        tokenizer: The in-graph tokenizer.
        labels: Label names; index = class id.
        text_pair: Whether the model classifies text pairs.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: InGraphTokenizer,
        labels: Sequence[str],
        *,
        text_pair: bool,
    ):
        super().__init__(name="classifier_serving_module")
        # Only the model's variables are tracked, not the Keras model itself: saving a tracked
        # Keras model also serializes every layer's call functions (2-3x slower save and load,
        # larger files) for a Keras revival a serving SavedModel does not need.
        self._model = NotTracked(model)
        self.model_variables = list(model.variables)
        self.tokenizer = tokenizer
        self.label_names = tuple(labels)
        self.text_pair = bool(text_pair)
        self._model_takes_token_type_ids = "token_type_ids" in inspect.signature(
            model.call
        ).parameters

        text_specs = [tf.TensorSpec([None], tf.string, name=TEXT)]
        if self.text_pair:
            text_specs.append(tf.TensorSpec([None], tf.string, name=TEXT_PAIR))
            self.serving_default = tf.function(self._serve_pair, input_signature=text_specs)
            self.tokenize = tf.function(self._tokenize_pair, input_signature=text_specs)
        else:
            self.serving_default = tf.function(self._serve_single, input_signature=text_specs)
            self.tokenize = tf.function(self._tokenize_single, input_signature=text_specs)
        self.tokens = tf.function(
            self._tokens,
            input_signature=[tf.TensorSpec([None, None], tf.int32, name=n) for n in TOKEN_INPUTS],
        )
        self.classify = tf.function(
            self._classify, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")]
        )

    def signatures(self) -> dict[str, Any]:
        """The concrete functions to pass to `tf.saved_model.save(..., signatures=...)`."""
        return {
            SERVING_DEFAULT: self.serving_default.get_concrete_function(),
            TOKENS: self.tokens.get_concrete_function(),
            CLASSIFY: self.classify.get_concrete_function(),
        }

    # === Signature bodies ===

    def _serve_single(self, text):
        return self._predict(self.tokenizer(text))

    def _serve_pair(self, text, text_pair):
        return self._predict(self.tokenizer(text, text_pair))

    def _tokenize_single(self, text):
        return self.tokenizer(text)

    def _tokenize_pair(self, text, text_pair):
        return self.tokenizer(text, text_pair)

    def _tokens(self, input_ids, attention_mask, token_type_ids):
        logits = self._logits(
            {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
        )
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def _classify(self, inputs):
        features = {TEXT: tf.io.FixedLenFeature([], tf.string)}
        if self.text_pair:
            features[TEXT_PAIR] = tf.io.FixedLenFeature([], tf.string)
        examples = tf.io.parse_example(inputs, features)
        encoded = self.tokenizer(examples[TEXT], examples.get(TEXT_PAIR))
        outputs = self._predict(encoded)
        return {"classes": outputs["classes"], "scores": outputs["probabilities"]}

    # === Shared graph pieces ===

    def _logits(self, encoded):
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if self._model_takes_token_type_ids:
            inputs["token_type_ids"] = encoded["token_type_ids"]
        return tf.cast(self._model.value(**inputs, training=False).logits, tf.float32)

    def _predict(self, encoded):
        # Calling the `tokens` tf.function (rather than the model) traces the model only once:
        # every signature shares that one function in the SavedModel.
        probabilities = self.tokens(**encoded)["probabilities"]
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        names = tf.constant(self.label_names, dtype=tf.string)
        batch_size = tf.shape(encoded["input_ids"])[0]
        return {
            "probabilities": probabilities,
            "label_id": label_id,
            "label": tf.gather(names, label_id),
            "classes": tf.tile(tf.expand_dims(names, 0), tf.stack([batch_size, 1])),
        }

