"""`ValidationMetricsCallback`: the problem type's metrics and loss on validation data."""

from __future__ import annotations

import logging

import numpy as np

from tfinetune import _environment  # noqa: F401
import tf_keras

from tfinetune.problem_type import ProblemType

logger = logging.getLogger(__name__)


def evaluate(model, dataset, targets, labels, problem_type: ProblemType | None = None):
    """`(loss, metrics)` of `model` on a labelled dataset, for its problem type (default:
    single-label, where metrics is a `ClassificationMetrics`)."""
    problem_type = problem_type or ProblemType()
    logits = np.concatenate([model(features, training=False).logits.numpy()
                             for features, _ in dataset])
    return problem_type.loss(targets, logits), problem_type.metrics(targets, logits, labels)


class ValidationMetricsCallback(tf_keras.callbacks.Callback):
    """Adds `val_loss`, the task's `val_*` metrics (e.g. single-label: accuracy and macro
    precision/recall/F1; NER: entity F1) and `learning_rate` to the epoch logs, so that
    History, TensorBoard and later callbacks see them.

    Args:
        task: The run's `FineTuningTask`; its `validate(model)` gives `(loss, metrics)`, or
            None without validation data (then only the learning rate is added).
    """

    def __init__(self, task):
        super().__init__()
        self.task = task

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        learning_rate = self.model.optimizer.learning_rate
        if isinstance(learning_rate, tf_keras.optimizers.schedules.LearningRateSchedule):
            learning_rate = learning_rate(self.model.optimizer.iterations)
        logs["learning_rate"] = float(tf_keras.backend.get_value(learning_rate))
        validated = self.task.validate(self.model)
        if validated is None:
            return
        loss, metrics = validated
        values = ({"val_loss": float(loss)} if loss is not None else {})
        values.update(self.task.epoch_logs(metrics))
        logs.update(values)
        logger.info("Epoch %d validation: %s", epoch + 1,
                    " ".join(f"{key[4:]}={value:.4f}" for key, value in values.items()))
