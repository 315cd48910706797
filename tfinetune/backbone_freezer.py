"""`BackboneFreezer`: freezes the pretrained part of a transformers TF model before training."""

from __future__ import annotations

import logging

from tfinetune.errors import ConfigError
from tfinetune.errors import ModelError

logger = logging.getLogger(__name__)

# Where the list of transformer blocks lives inside the main layer, per architecture family.
_LAYER_PATHS = (
    "encoder.layer", "transformer.layer", "encoder.layers", "encoder.albert_layer_groups")


class BackboneFreezer:
    """Marks the main (pretrained) layer, or its embeddings and first N blocks, untrainable.

    Works on the transformers TF task models, whose pretrained part is the attribute named by
    `model.base_model_prefix` (`bert`, `distilbert`, `roberta`, ...). The task head stays
    trainable. Call before `compile`.

    Args:
        model: A transformers TF model (e.g. `TFBertForSequenceClassification`).
    """

    def __init__(self, model):
        self.model = model
        self.main = getattr(model, model.base_model_prefix, None)
        if self.main is None:
            raise ModelError(
                f"Cannot find the pretrained part of {type(model).__name__} to freeze. Expected "
                f"an attribute {model.base_model_prefix!r}.")

    def freeze_backbone(self) -> None:
        self.main.trainable = False
        logger.info("Froze the whole %s encoder; training the head only", type(self.main).__name__)

    def freeze_layers(self, count: int) -> None:
        blocks = self._blocks()
        if count > len(blocks):
            raise ConfigError(
                f"--freeze-layers is larger than the model's {len(blocks)} transformer layers. "
                f"Received: freeze_layers={count}")
        self.main.embeddings.trainable = False
        for block in blocks[:count]:
            block.trainable = False
        logger.info("Froze the embeddings and %d of %d transformer layers", count, len(blocks))

    def _blocks(self) -> list:
        for path in _LAYER_PATHS:
            node = self.main
            for name in path.split("."):
                node = getattr(node, name, None)
                if node is None:
                    break
            if isinstance(node, (list, tuple)) and node:
                return list(node)
        raise ModelError(
            f"--freeze-layers does not know where {type(self.main).__name__} keeps its "
            f"transformer layers (looked for {', '.join(_LAYER_PATHS)}); use "
            "--freeze-backbone instead.")
