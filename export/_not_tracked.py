"""A holder that hides an object from `tf.Module`'s automatic dependency tracking."""

from __future__ import annotations

from typing import Any


class NotTracked:
    """Holds `value` so that assigning the holder to a `tf.Module` attribute does not track it.

    Used for Keras objects whose variables or resources are tracked separately: saving a tracked
    Keras model or layer also serializes its Keras metadata and call functions, which a serving
    SavedModel does not need (slower save and load, larger files).
    """

    def __init__(self, value: Any):
        self.value = value
