"""`PortableServingModule`: a text classifier whose signatures take token ids, so that its graph
holds core TensorFlow ops only (`tfinetune export --portable`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402

from export.classifier_serving_module import DEFAULT_THRESHOLD  # noqa: E402
from export.classifier_serving_module import SINGLE_LABEL  # noqa: E402
from export.classifier_serving_module import TOKEN_INPUTS  # noqa: E402
from export.classifier_serving_module import ClassifierServingModule  # noqa: E402

logger = logging.getLogger(__name__)

INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS = TOKEN_INPUTS


class PortableServingModule(ClassifierServingModule):
    """A fine-tuned sequence classifier without its tokenizer: the client tokenises.

    Stock TensorFlow Serving images ship an older tensorflow-text than the one tfinetune
    exports with, so the in-graph tokenizer's ops may be missing there. This module's graph uses
    core TensorFlow ops only. Its signatures have the outputs of `ClassifierServingModule`'s
    (same names, types and meaning per problem type), but the inputs are token ids:

    - `serving_default(input_ids, attention_mask, token_type_ids)` (int32 [-1, -1], padded on
      the right, as the Hugging Face tokenizer gives them with `padding=True`) → the outputs of
      the text export's `serving_default` (`probabilities`, `label_id`, `label`, `classes`;
      multi-label `scores`, `classes`, `predicted`; regression `value`).
    - `tokens`: the same inputs → `logits` and `probabilities` (or `scores` / `value`), as in
      the text export.
    - `classify(inputs)` (regression: `regress`): serialized `tf.Example`s with an int64 list
      feature `input_ids` (the ids of one input, special tokens included, no padding) and an
      optional `token_type_ids` of the same length (default zeros); every given id is attended.

    Args:
        model: A built `TFAutoModelForSequenceClassification`.
        labels: Label names; index = class id.
        text_pair: Whether the model classifies text pairs (recorded; the ids carry the pair).
        problem_type: `single-label`, `multi-label` or `regression`.
        threshold: Multi-label: score from which a label is predicted.
        pad_token_id: The id `classify`/`regress` pad `input_ids` with.
    """

    def __init__(
        self,
        model: Any,
        labels: Sequence[str],
        *,
        text_pair: bool,
        problem_type: str = SINGLE_LABEL,
        threshold: float = DEFAULT_THRESHOLD,
        pad_token_id: int = 0,
    ):
        super().__init__(model, None, labels, text_pair=text_pair, problem_type=problem_type,
                         threshold=threshold)
        self.pad_token_id = int(pad_token_id)
        self.serving_default = tf.function(
            self._serve_tokens,
            input_signature=[tf.TensorSpec([None, None], tf.int32, name=n) for n in TOKEN_INPUTS],
        )

    def _serve_tokens(self, input_ids, attention_mask, token_type_ids):
        return self._predict({INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask,
                              TOKEN_TYPE_IDS: token_type_ids})

    def _parse_examples(self, inputs):
        """Serialized `tf.Example`s with token id lists → padded model inputs (int32)."""
        features = {INPUT_IDS: tf.io.RaggedFeature(tf.int64),
                    TOKEN_TYPE_IDS: tf.io.RaggedFeature(tf.int64)}
        parsed = tf.io.parse_example(inputs, features)
        ids, types = parsed[INPUT_IDS], parsed[TOKEN_TYPE_IDS]
        lengths, type_lengths = ids.row_lengths(), types.row_lengths()
        check = tf.debugging.assert_equal(
            tf.reduce_all((type_lengths == 0) | (type_lengths == lengths)), True,
            message=f"Each tf.Example's '{TOKEN_TYPE_IDS}' must be absent or as long as its "
                    f"'{INPUT_IDS}'")
        with tf.control_dependencies([check]):
            shape = tf.stack([ids.nrows(), tf.maximum(ids.bounding_shape(axis=1), 1)])
        return {
            INPUT_IDS: tf.cast(ids.to_tensor(default_value=self.pad_token_id, shape=shape),
                               tf.int32),
            ATTENTION_MASK: tf.cast(tf.ones_like(ids).to_tensor(default_value=0, shape=shape),
                                    tf.int32),
            TOKEN_TYPE_IDS: tf.cast(types.to_tensor(default_value=0, shape=shape), tf.int32),
        }
