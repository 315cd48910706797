"""`precision_policy`: Keras' global dtype policy for the duration of a training run."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Sets the tf_keras global dtype policy to `name` ("float32", "mixed_bfloat16") for the
    models built inside the block, and puts the previous policy back afterwards (so a model
    loaded later in the same process, e.g. by `export`, is float32 again).
    """
    import tf_keras

    previous = tf_keras.mixed_precision.global_policy()
    if name != previous.name:
        if name == "mixed_bfloat16" and not _cpu_has_bf16():
            logger.warning(
                "precision=mixed_bfloat16 on a CPU without AVX512-BF16 or AMX: bfloat16 matmuls "
                "are emulated there and training is slower than float32.")
        tf_keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def _cpu_has_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (Linux /proc/cpuinfo; True if unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags
