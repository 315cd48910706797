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
    """Adds `val_loss`, the problem type's `val_*` metrics (single-label: accuracy and macro
    precision/recall/F1) and `learning_rate` to the epoch logs, so that History, TensorBoard
    and later callbacks see them.

    Args:
        dataset: Batched `(features, targets)` validation dataset, or None (then only the
            learning rate is added).
        targets: The validation targets in dataset order.
        labels: Label names in class-id order.
        problem_type: Single-label (default), multi-label or regression.
    """

    def __init__(self, dataset, targets, labels, problem_type: ProblemType | None = None):
        super().__init__()
        self.dataset = dataset
        self.targets = list(targets) if targets is not None else None
        self.labels = list(labels)
        self.problem_type = problem_type or ProblemType()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        learning_rate = self.model.optimizer.learning_rate
        if isinstance(learning_rate, tf_keras.optimizers.schedules.LearningRateSchedule):
            learning_rate = learning_rate(self.model.optimizer.iterations)
        logs["learning_rate"] = float(tf_keras.backend.get_value(learning_rate))
        if self.dataset is None:
            return
        loss, metrics = evaluate(self.model, self.dataset, self.targets, self.labels,
                                 self.problem_type)
        values = {"val_loss": loss, **self.problem_type.epoch_logs(metrics)}
        logs.update(values)
        logger.info("Epoch %d validation: %s", epoch + 1,
                    " ".join(f"{key[4:]}={value:.4f}" for key, value in values.items()))
