"""Import TensorFlow without the native start-up chatter on stderr.

TensorFlow's C++ side prints `WARNING: All log messages before absl::InitializeLog()...`,
oneDNN and CUDA-probe lines straight to file descriptor 2 before Python's logging or
`TF_CPP_MIN_LOG_LEVEL` can act. Commands call `import_tensorflow_quietly()` once before their
real work so that stderr carries only tfinetune's own status and progress. With `-vv` (debug
logging) nothing is hidden.
"""

from __future__ import annotations

import logging
import os

from tfinetune import _environment  # noqa: F401


def import_tensorflow_quietly() -> None:
    """Imports tensorflow and tensorflow_text and initialises devices with fd 2 muted."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        _import()
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        _import()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import() -> None:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops exported models use)

    tf.config.list_physical_devices("GPU")
