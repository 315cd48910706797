"""`DenseHeadClassifier`: a transformers encoder with extra dense ReLU layers before the output.

`tfinetune fit --head-hidden-sizes 256,128` trains this model. It lives in `export` because
export must rebuild it from a run directory without importing tfinetune. The run's
`config.json` is the base model's config (same `model_type`, so tokenizers and `AutoConfig`
work unchanged) plus `"tfinetune_head": "dense"`, `"head_hidden_sizes": [256, 128]` and
`"architectures": ["DenseHeadClassifier"]`; `load_classifier(run_dir)` reads that marker and
rebuilds the right class. The head's layers have their own names (`head_hidden_0`, ...,
`head_output`), so a plain `TFAutoModelForSequenceClassification.from_pretrained(run_dir)`
never reuses them as its own `classifier`: it reports them as unused and its classifier as newly
initialized instead of silently loading mismatched weights.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from transformers import AutoConfig  # noqa: E402
from transformers import PretrainedConfig  # noqa: E402
from transformers.modeling_tf_outputs import TFSequenceClassifierOutput  # noqa: E402
from transformers.modeling_tf_utils import TFPreTrainedModel  # noqa: E402
from transformers.modeling_tf_utils import TFSequenceClassificationLoss  # noqa: E402
from transformers.modeling_tf_utils import get_initializer  # noqa: E402
from transformers.modeling_tf_utils import unpack_inputs  # noqa: E402

logger = logging.getLogger(__name__)

#: `config.json` key marking a model with this head, and its value.
HEAD_MARKER = "tfinetune_head"
DENSE_HEAD = "dense"
#: `config.json` key with the hidden layer widths.
HEAD_HIDDEN_SIZES = "head_hidden_sizes"
ARCHITECTURE = "DenseHeadClassifier"
#: Encoder families whose TF base model's main layer the head has been checked with. Models
#: with a pooler (BERT, ALBERT, RoBERTa, ...) feed the pooled output to the head; the others
#: (DistilBERT, ELECTRA) the first token's hidden state, as their own classifiers do.
SUPPORTED_MODEL_TYPES = ("bert", "distilbert", "electra", "albert", "roberta", "xlm-roberta",
                         "camembert", "mpnet")
HIDDEN_LAYER_NAME = "head_hidden_{}"
OUTPUT_LAYER_NAME = "head_output"
DROPOUT_NAME = "head_dropout"


class DenseHeadClassifier(TFPreTrainedModel, TFSequenceClassificationLoss):
    """A sequence classifier: encoder → [dropout → dense(size, ReLU)] per hidden size →
    dropout → dense(num_labels).

    Behaves like `TFAutoModelForSequenceClassification`: `call` takes the same inputs, returns
    a `TFSequenceClassifierOutput` with `.logits` and, given `labels`, a loss from
    `hf_compute_loss` (cross-entropy, or MSE for one output; replace the method for other
    losses); `save_pretrained` / `from_pretrained` round-trip it exactly. The encoder is the
    attribute named by `base_model_prefix` (`bert`, `distilbert`, ...), as in transformers' own
    task models, so the encoder weights of any checkpoint of the same architecture load into it.

    The dropout rate is the config's `classifier_dropout` (or DistilBERT's
    `seq_classif_dropout`), else its `hidden_dropout_prob`.

    Args:
        config: The base model's config with `head_hidden_sizes` (a list of positive ints) and
            `num_labels`.
    """

    # Pretraining heads in base checkpoints; transformers' own classifiers ignore them too.
    _keys_to_ignore_on_load_unexpected = [r"mlm___cls", r"nsp___cls", r"cls.predictions",
                                          r"cls.seq_relationship", r"vocab_", r"lm_head",
                                          r"generator_", r"discriminator_predictions"]
    _keys_to_ignore_on_load_missing = [r"dropout"]

    def __init__(self, config: PretrainedConfig, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        sizes = head_hidden_sizes(config)
        if not sizes:
            raise ValueError(
                f"A DenseHeadClassifier needs hidden layer sizes. Expected "
                f"{HEAD_HIDDEN_SIZES}=[positive ints] in the model config. Received: "
                f"{HEAD_HIDDEN_SIZES}={getattr(config, HEAD_HIDDEN_SIZES, None)!r}")
        base_class = _base_model_class(config)
        self.num_labels = config.num_labels
        self.hidden_sizes = sizes
        # The encoder is built exactly as the base model builds it (taken from a throwaway,
        # unbuilt base model), under the same attribute name, so checkpoint names match.
        self.base_model_prefix = base_class.base_model_prefix
        main_layer = getattr(base_class(config), self.base_model_prefix)
        setattr(self, self.base_model_prefix, main_layer)
        self._encoder_arguments = set(inspect.signature(main_layer.call).parameters)
        self._pooled = getattr(main_layer, "pooler", None) is not None
        self.dropout = tf_keras.layers.Dropout(rate=_dropout_rate(config), name=DROPOUT_NAME)
        self.hidden_layers = [
            tf_keras.layers.Dense(size, activation="relu", name=HIDDEN_LAYER_NAME.format(i),
                                  kernel_initializer=tf_keras.initializers.HeNormal())
            for i, size in enumerate(sizes)]
        self.output_layer = tf_keras.layers.Dense(
            config.num_labels, kernel_initializer=get_initializer(config.initializer_range),
            name=OUTPUT_LAYER_NAME)

    @property
    def encoder(self) -> Any:
        """The pretrained main layer (`TFBertMainLayer`, `TFDistilBertMainLayer`, ...)."""
        return getattr(self, self.base_model_prefix)

    @unpack_inputs
    def call(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        position_ids: Any = None,
        head_mask: Any = None,
        inputs_embeds: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        labels: Any = None,
        training: bool | None = False,
    ) -> TFSequenceClassifierOutput | tuple:
        """Logits [batch, num_labels] (and the loss when `labels` are given).

        `token_type_ids` and `position_ids` are ignored by encoders without them (DistilBERT).
        """
        arguments = {"input_ids": input_ids, "attention_mask": attention_mask,
                     "token_type_ids": token_type_ids, "position_ids": position_ids,
                     "head_mask": head_mask, "inputs_embeds": inputs_embeds,
                     "output_attentions": output_attentions,
                     "output_hidden_states": output_hidden_states}
        outputs = self.encoder(
            **{name: value for name, value in arguments.items()
               if name in self._encoder_arguments},
            return_dict=True, training=training)
        if self._pooled:
            features = outputs.pooler_output
        else:
            features = outputs.last_hidden_state[:, 0]
        features = self.dropout(features, training=training)
        for layer in self.hidden_layers:
            features = self.dropout(layer(features), training=training)
        logits = self.output_layer(features)
        loss = None if labels is None else self.hf_compute_loss(labels=labels, logits=logits)
        hidden_states = getattr(outputs, "hidden_states", None)
        attentions = getattr(outputs, "attentions", None)
        if return_dict is False:
            output = (logits,) + tuple(value for value in (hidden_states, attentions)
                                       if value is not None)
            return ((loss,) + output) if loss is not None else output
        return TFSequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states,
                                          attentions=attentions)

    def build(self, input_shape=None) -> None:
        if self.built:
            return
        self.built = True
        with tf.name_scope(self.encoder.name):
            self.encoder.build(None)
        width = self.config.hidden_size
        for layer in self.hidden_layers:
            with tf.name_scope(layer.name):
                layer.build([None, width])
            width = layer.units
        with tf.name_scope(self.output_layer.name):
            self.output_layer.build([None, width])

    def save_pretrained(self, save_directory: str | Path, *args, **kwargs) -> None:
        """transformers' `save_pretrained`, with `architectures: ["DenseHeadClassifier"]` and
        the head marker in `config.json`."""
        super().save_pretrained(save_directory, *args, **kwargs)
        setattr(self.config, HEAD_MARKER, DENSE_HEAD)
        self.config.architectures = [ARCHITECTURE]
        self.config.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args,
                        config: PretrainedConfig | None = None, **kwargs) -> Any:
        """Loads a saved `DenseHeadClassifier`, or (given a `config` with `head_hidden_sizes`)
        a base checkpoint's encoder under a new head. The config defaults to the checkpoint's
        own (`AutoConfig`), which must have `head_hidden_sizes`."""
        if config is None:
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                       config=config, **kwargs)


def head_hidden_sizes(config: PretrainedConfig) -> tuple[int, ...]:
    """The config's `head_hidden_sizes` (checked), or () when it has none."""
    sizes = getattr(config, HEAD_HIDDEN_SIZES, None)
    if sizes is None:
        return ()
    if (isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence)
            or not all(isinstance(size, int) and not isinstance(size, bool) and size > 0
                       for size in sizes)):
        raise ValueError(
            f"Invalid {HEAD_HIDDEN_SIZES} in the model config. Expected a list of positive "
            f"integers (e.g. [256, 128]). Received: {HEAD_HIDDEN_SIZES}={sizes!r}")
    return tuple(sizes)


def has_dense_head(config: PretrainedConfig | dict) -> bool:
    """Whether a saved model config (object or `config.json` dict) describes a
    `DenseHeadClassifier`: the head marker and `architectures: ["DenseHeadClassifier"]`.

    Both are needed because a plain classifier fine-tuned from a dense-head run inherits the
    marker from that run's config, while its `save_pretrained` rewrites `architectures`.
    """
    if isinstance(config, dict):
        marker, architectures = config.get(HEAD_MARKER), config.get("architectures")
    else:
        marker = getattr(config, HEAD_MARKER, None)
        architectures = getattr(config, "architectures", None)
    return marker == DENSE_HEAD and ARCHITECTURE in (architectures or ())


def load_with_dense_head(source: str | Path, model_config: PretrainedConfig,
                         hidden_sizes: Sequence[int]) -> DenseHeadClassifier:
    """A `DenseHeadClassifier` for fine-tuning: `source`'s encoder weights under a new head
    (or `source`'s head too, when it is a dense-head run with the same sizes and labels).

    Sets `head_hidden_sizes` and the head marker on `model_config`, so `save_pretrained`
    records them in `config.json`.

    Args:
        source: A model name or directory (a base model or any task model of the architecture).
        model_config: The config to train with (labels, problem type, dropout already set).
        hidden_sizes: The widths of the dense ReLU layers before the output layer.

    Raises:
        ValueError: The architecture is not supported, or the sizes are invalid.
        OSError: `source` cannot be loaded.
    """
    _base_model_class(model_config)
    setattr(model_config, HEAD_HIDDEN_SIZES, [int(size) for size in hidden_sizes])
    head_hidden_sizes(model_config)
    setattr(model_config, HEAD_MARKER, DENSE_HEAD)
    model = DenseHeadClassifier.from_pretrained(source, config=model_config,
                                                ignore_mismatched_sizes=True)
    logger.info("Added a dense head %s before the %d outputs of %s",
                list(model.hidden_sizes), model.num_labels, model_config.model_type)
    return model


def load_classifier(path: str | Path) -> Any:
    """Reloads the sequence classifier a fine-tuning run saved in `path`: a
    `DenseHeadClassifier` when its `config.json` has the dense-head marker, else
    `TFAutoModelForSequenceClassification`.

    A dense-head model must load completely: a missing or mis-shaped weight is an error rather
    than a silently re-initialized layer.

    Raises:
        ValueError: The config or weights do not describe a complete model.
        OSError: The files cannot be read.
    """
    from transformers import TFAutoModelForSequenceClassification

    path = Path(path)
    config_file = path / "config.json"
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        saved = {}  # let transformers report the problem
    if not has_dense_head(saved):
        return TFAutoModelForSequenceClassification.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    # Mis-shaped weights are collected (not raised one by one) to be reported together.
    model, info = DenseHeadClassifier.from_pretrained(path, config=config,
                                                      output_loading_info=True,
                                                      ignore_mismatched_sizes=True)
    missing = list(info["missing_keys"])
    mismatched = [f"{key} (saved {tuple(saved)}, expected {tuple(expected)})"
                  for key, saved, expected in info["mismatched_keys"]]
    if missing or mismatched:
        raise ValueError(
            f"The saved dense-head classifier is incomplete. Expected every weight of "
            f"{ARCHITECTURE} (head_hidden_sizes={list(model.hidden_sizes)} in {config_file}) "
            f"in the weights file next to it. Received: no saved weights for {missing}, "
            f"other shapes for {mismatched}")
    return model


def _base_model_class(config: PretrainedConfig) -> type:
    from transformers import TFAutoModel

    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"--head-hidden-sizes does not support model type {model_type!r}. Expected an "
            f"encoder of type {', '.join(SUPPORTED_MODEL_TYPES)}. Received: "
            f"model_type={model_type!r}")
    return TFAutoModel._model_mapping[type(config)]


def _dropout_rate(config: PretrainedConfig) -> float:
    for name in ("classifier_dropout", "seq_classif_dropout", "hidden_dropout_prob"):
        rate = getattr(config, name, None)
        if rate is not None:
            return float(rate)
    return 0.1
