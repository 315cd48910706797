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
REGRESS = "regress"
#: The signatures of a single-label (or multi-label) classifier export.
SIGNATURE_NAMES = (SERVING_DEFAULT, TOKENS, CLASSIFY)

#: Problem types (the names of `tfinetune fit --problem-type`, whose package export never
#: imports).
SINGLE_LABEL = "single-label"
MULTI_LABEL = "multi-label"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)
DEFAULT_THRESHOLD = 0.5


def signature_names(problem_type: str = SINGLE_LABEL) -> tuple[str, ...]:
    """The signatures an export of `problem_type` has: `regress` replaces `classify` for
    regression."""
    if problem_type == REGRESSION:
        return (SERVING_DEFAULT, TOKENS, REGRESS)
    return SIGNATURE_NAMES

TEXT = "text"
TEXT_PAIR = "text_pair"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ClassifierServingModule(tf.Module):
    """A fine-tuned sequence classifier with its tokenizer in the graph.

    Signatures of a single-label classifier (see `signatures()`):

    - `serving_default(text[, text_pair])` → `probabilities` float32 [-1, C], `label_id` int64
      [-1], `label` string [-1], `classes` string [-1, C] (label names, one row per input).
    - `tokens(input_ids, attention_mask, token_type_ids)` (int32 [-1, -1]) → `logits`,
      `probabilities` (float32 [-1, C]), for clients that tokenize themselves.
    - `classify(inputs)`: serialized `tf.Example`s with a `text` (and `text_pair`) bytes
      feature → `classes` string [-1, C], `scores` float32 [-1, C]; TF Serving's Classify API
      (its method name is set after saving, see `saved_model_signatures`).

    Multi-label classifiers (`problem_type="multi-label"`, sigmoid per label):

    - `serving_default` → `scores` float32 [-1, C] (sigmoid), `classes` string [-1, C],
      `predicted` int64 [-1, C] (1 where score >= `threshold`, decided in the graph).
    - `tokens` → `logits`, `scores`; `classify` → `classes`, `scores` (the sigmoid scores).

    Regression models (`problem_type="regression"`, one output):

    - `serving_default` → `value` float32 [-1]; `tokens` → `logits` [-1, 1], `value` [-1].
    - `regress(inputs)` instead of `classify`: serialized `tf.Example`s → `outputs` float32
      [-1]; TF Serving's Regress API (method name set after saving).

    The module also saves `tokenize(text[, text_pair])` (not a signature) so that a reloaded
    model's tokenization can be compared with the Hugging Face tokenizer.

    Args:
        model: A built `TFAutoModelForSequenceClassification`.
        tokenizer: The in-graph tokenizer; None for a subclass that takes token ids
            (`PortableServingModule`): no text functions are built.
        labels: Label names; index = class id.
        text_pair: Whether the model classifies text pairs.
        problem_type: `single-label`, `multi-label` or `regression`.
        threshold: Multi-label: score from which a label is predicted.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: InGraphTokenizer | None,
        labels: Sequence[str],
        *,
        text_pair: bool,
        problem_type: str = SINGLE_LABEL,
        threshold: float = DEFAULT_THRESHOLD,
    ):
        if problem_type not in PROBLEM_TYPES:
            raise ValueError(f"Unknown problem type. Expected one of {list(PROBLEM_TYPES)}. "
                             f"Received: problem_type={problem_type!r}")
        super().__init__(name="classifier_serving_module")
        # Only the model's variables are tracked, not the Keras model itself: saving a tracked
        # Keras model also serializes every layer's call functions (2-3x slower save and load,
        # larger files) for a Keras revival a serving SavedModel does not need.
        self._model = NotTracked(model)
        self.model_variables = list(model.variables)
        self.tokenizer = tokenizer
        self.label_names = tuple(labels)
        self.text_pair = bool(text_pair)
        self.problem_type = problem_type
        self.threshold = float(threshold)
        self.signature_names = signature_names(problem_type)
        self._model_takes_token_type_ids = "token_type_ids" in inspect.signature(
            model.call
        ).parameters

        if tokenizer is not None:  # None: a subclass defines serving_default (`--portable`)
            self._add_text_functions()
        self.tokens = tf.function(
            self._tokens,
            input_signature=[tf.TensorSpec([None, None], tf.int32, name=n) for n in TOKEN_INPUTS],
        )
        examples_spec = [tf.TensorSpec([None], tf.string, name="inputs")]
        if problem_type == REGRESSION:
            self.regress = tf.function(self._regress, input_signature=examples_spec)
        else:
            self.classify = tf.function(self._classify, input_signature=examples_spec)

    def _add_text_functions(self) -> None:
        text_specs = [tf.TensorSpec([None], tf.string, name=TEXT)]
        if self.text_pair:
            text_specs.append(tf.TensorSpec([None], tf.string, name=TEXT_PAIR))
            self.serving_default = tf.function(self._serve_pair, input_signature=text_specs)
            self.tokenize = tf.function(self._tokenize_pair, input_signature=text_specs)
        else:
            self.serving_default = tf.function(self._serve_single, input_signature=text_specs)
            self.tokenize = tf.function(self._tokenize_single, input_signature=text_specs)

    def signatures(self) -> dict[str, Any]:
        """The concrete functions to pass to `tf.saved_model.save(..., signatures=...)`."""
        return {name: getattr(self, name).get_concrete_function()
                for name in self.signature_names}

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
        if self.problem_type == MULTI_LABEL:
            return {"logits": logits, "scores": tf.math.sigmoid(logits)}
        if self.problem_type == REGRESSION:
            return {"logits": logits, "value": logits[:, 0]}
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def _classify(self, inputs):
        outputs = self._predict(self._parse_examples(inputs))
        if self.problem_type == MULTI_LABEL:
            return {"classes": outputs["classes"], "scores": outputs["scores"]}
        return {"classes": outputs["classes"], "scores": outputs["probabilities"]}

    def _regress(self, inputs):
        return {"outputs": self._predict(self._parse_examples(inputs))["value"]}

    def _parse_examples(self, inputs):
        features = {TEXT: tf.io.FixedLenFeature([], tf.string)}
        if self.text_pair:
            features[TEXT_PAIR] = tf.io.FixedLenFeature([], tf.string)
        examples = tf.io.parse_example(inputs, features)
        return self.tokenizer(examples[TEXT], examples.get(TEXT_PAIR))

    # === Shared graph pieces ===

    def _logits(self, encoded):
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if self._model_takes_token_type_ids:
            inputs["token_type_ids"] = encoded["token_type_ids"]
        return tf.cast(self._model.value(**inputs, training=False).logits, tf.float32)

    def _predict(self, encoded):
        # Calling the `tokens` tf.function (rather than the model) traces the model only once:
        # every signature shares that one function in the SavedModel.
        outputs = self.tokens(**encoded)
        if self.problem_type == REGRESSION:
            return {"value": outputs["value"]}
        names = tf.constant(self.label_names, dtype=tf.string)
        batch_size = tf.shape(encoded["input_ids"])[0]
        classes = tf.tile(tf.expand_dims(names, 0), tf.stack([batch_size, 1]))
        if self.problem_type == MULTI_LABEL:
            scores = outputs["scores"]
            predicted = tf.cast(scores >= tf.constant(self.threshold, tf.float32), tf.int64)
            return {"scores": scores, "classes": classes, "predicted": predicted}
        probabilities = outputs["probabilities"]
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "label_id": label_id,
            "label": tf.gather(names, label_id),
            "classes": classes,
        }

