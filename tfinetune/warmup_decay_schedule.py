"""`WarmupDecaySchedule`: linear warmup, then a decay to 0 at the last step."""

from __future__ import annotations

import math

from tfinetune import _environment  # noqa: F401
import tensorflow as tf
import tf_keras

# Exponential decay as a fraction of the way from peak to 0: exp(-k·p) rescaled so that it is
# exactly 1 at p=0 and 0 at p=1 (a plain exponential never reaches 0).
_EXPONENTIAL_RATE = 5.0


@tf_keras.utils.register_keras_serializable(package="tfinetune")
class WarmupDecaySchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate rising linearly from 0 over `warmup_steps`, then decaying to 0.

    After warmup, with `p` the fraction of the decay steps done (0 → 1):
    `linear`: peak·(1 − p); `cosine`: peak·½(1 + cos πp); `polynomial`: peak·(1 − p)^power;
    `exponential`: peak·(e^(−5p) − e^(−5))/(1 − e^(−5)); `constant`: peak (no decay).

    Args:
        peak_learning_rate: Learning rate at the end of warmup.
        total_steps: Optimizer steps in the whole run.
        warmup_steps: Steps of linear warmup, `0 <= warmup_steps <= total_steps`.
        decay: One of `linear`, `cosine`, `polynomial`, `exponential`, `constant`.
        power: Power of the `polynomial` decay.

    Example:
    ```python
    schedule = WarmupDecaySchedule(5e-5, total_steps=1000, warmup_steps=100, decay="cosine")
    optimizer = tf_keras.optimizers.AdamW(learning_rate=schedule)
    ```
    """

    DECAYS = ("linear", "cosine", "polynomial", "exponential", "constant")

    def __init__(self, peak_learning_rate, total_steps, warmup_steps=0, decay="linear", power=1.0):
        super().__init__()
        if decay not in self.DECAYS:
            raise ValueError(
                f"Unknown decay. Expected one of {list(self.DECAYS)}. Received: decay={decay!r}"
            )
        if total_steps < 1:
            raise ValueError(f"`total_steps` must be >= 1. Received: total_steps={total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                "`warmup_steps` must be between 0 and `total_steps`. "
                f"Received: warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.power = float(power)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak_learning_rate, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        warming = peak * tf.minimum(step / warmup, 1.0)
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        if self.decay == "linear":
            factor = 1.0 - progress
        elif self.decay == "cosine":
            factor = 0.5 * (1.0 + tf.cos(math.pi * progress))
        elif self.decay == "polynomial":
            factor = tf.pow(1.0 - progress, self.power)
        elif self.decay == "exponential":
            floor = math.exp(-_EXPONENTIAL_RATE)
            factor = (tf.exp(-_EXPONENTIAL_RATE * progress) - floor) / (1.0 - floor)
        else:
            factor = tf.ones_like(progress)
        if self.warmup_steps == 0:
            return peak * factor
        return tf.where(step < self.warmup_steps, warming, peak * factor)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "power": self.power,
        }
