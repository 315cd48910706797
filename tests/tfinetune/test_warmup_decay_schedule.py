import math

import pytest

import tfinetune  # noqa: F401
import tf_keras

from tfinetune.warmup_decay_schedule import WarmupDecaySchedule


def values(schedule, steps):
    return [float(schedule(step)) for step in steps]


@pytest.mark.parametrize("decay", WarmupDecaySchedule.DECAYS)
def test_warmup_is_linear_from_zero_to_peak(decay):
    schedule = WarmupDecaySchedule(1e-3, total_steps=100, warmup_steps=10, decay=decay)
    assert values(schedule, [0, 5, 10]) == pytest.approx([0.0, 5e-4, 1e-3])


@pytest.mark.parametrize("decay", ["linear", "cosine", "polynomial", "exponential"])
def test_decays_reach_zero_at_the_last_step_and_never_increase(decay):
    schedule = WarmupDecaySchedule(1e-3, total_steps=100, warmup_steps=10, decay=decay, power=2.0)
    after_warmup = values(schedule, range(10, 101))
    assert after_warmup[0] == pytest.approx(1e-3)
    assert after_warmup[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b - 1e-12 for a, b in zip(after_warmup, after_warmup[1:]))


def test_decay_shapes_at_the_midpoint():
    def midpoint(decay, power=1.0):
        return float(WarmupDecaySchedule(1.0, 110, 10, decay=decay, power=power)(60))

    assert midpoint("linear") == pytest.approx(0.5)
    assert midpoint("cosine") == pytest.approx(0.5)
    assert midpoint("polynomial", power=2.0) == pytest.approx(0.25)
    floor = math.exp(-5.0)
    assert midpoint("exponential") == pytest.approx((math.exp(-2.5) - floor) / (1 - floor))
    assert midpoint("constant") == pytest.approx(1.0)


def test_no_warmup_starts_at_peak():
    schedule = WarmupDecaySchedule(2e-5, total_steps=10, warmup_steps=0)
    assert values(schedule, [0, 5, 10]) == pytest.approx([2e-5, 1e-5, 0.0])


def test_schedule_serialises_through_keras():
    schedule = WarmupDecaySchedule(3e-5, total_steps=50, warmup_steps=5, decay="cosine")
    config = tf_keras.optimizers.schedules.serialize(schedule)
    restored = tf_keras.optimizers.schedules.deserialize(config)
    assert isinstance(restored, WarmupDecaySchedule)
    assert restored.get_config() == schedule.get_config()
    assert values(restored, range(0, 51, 7)) == pytest.approx(values(schedule, range(0, 51, 7)))
    optimizer = tf_keras.optimizers.AdamW(learning_rate=schedule)
    rebuilt = tf_keras.optimizers.AdamW.from_config(optimizer.get_config())
    assert isinstance(rebuilt._learning_rate, WarmupDecaySchedule)
    assert rebuilt._learning_rate.get_config() == schedule.get_config()


@pytest.mark.parametrize("kwargs, message", [
    ({"decay": "step"}, "Unknown decay"),
    ({"total_steps": 0}, "total_steps"),
    ({"warmup_steps": 200}, "warmup_steps"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    arguments = {"peak_learning_rate": 1e-3, "total_steps": 100, "warmup_steps": 10}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        WarmupDecaySchedule(**arguments)
