"""`PortableQuestionAnsweringModule`: an extractive question-answering model whose signatures
take token id windows, so that its graph holds core TensorFlow ops only (`tfinetune export
--portable`)."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402

from export._not_tracked import NotTracked  # noqa: E402
from export.question_answering_serving_module import QuestionAnsweringServingModule  # noqa: E402,E501

logger = logging.getLogger(__name__)

SERVING_DEFAULT = "serving_default"
TOKENS = "tokens"
#: The SavedModel's signatures, `serving_default` first (the text export's names).
SIGNATURE_NAMES = (SERVING_DEFAULT, TOKENS)
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUTS = ("start_logits", "end_logits")


class PortableQuestionAnsweringModule(tf.Module):
    """A fine-tuned extractive QA model without its tokenizer and span choice: the client
    cuts (question, context) pairs into windows and picks the answers
    (`serving.portable_question_answering_codec`).

    Signatures (both the same function; `tokens` is the text export's signature of that name):

    - `serving_default(input_ids, attention_mask, token_type_ids)` (int32 [-1, -1]: windows
      `[CLS] question [SEP] context part [SEP]`, padded on the right) → `start_logits`,
      `end_logits` (float32 [-1, -1], one per window token).
    - `tokens`: the same.

    Args:
        model: A built `TFAutoModelForQuestionAnswering`. A model without `token_type_ids`
            (DistilBERT) ignores that input.
    """

    #: The text export's `tokens` body (model inputs → float32 start/end logits).
    _logits = QuestionAnsweringServingModule._tokens

    def __init__(self, model: Any) -> None:
        super().__init__(name="portable_question_answering_module")
        self._model = NotTracked(model)
        self.model_variables = list(model.variables)
        self.signature_names = SIGNATURE_NAMES
        self._model_takes_token_type_ids = "token_type_ids" in inspect.signature(
            model.call).parameters
        specs = [tf.TensorSpec([None, None], tf.int32, name=name) for name in TOKEN_INPUTS]
        self.serving_default = tf.function(self._logits, input_signature=specs)
        self.tokens = self.serving_default

    def signatures(self) -> dict[str, Any]:
        """The concrete functions to pass to `tf.saved_model.save(..., signatures=...)`."""
        function = self.serving_default.get_concrete_function()
        return {name: function for name in self.signature_names}

