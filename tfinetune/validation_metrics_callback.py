"""`ValidationMetricsCallback`: accuracy, precision, recall, F1 and loss on validation data."""

from __future__ import annotations

import logging

import numpy as np

from tfinetune import _environment  # noqa: F401
import tensorflow as tf
import tf_keras

from tfinetune.classification_metrics import ClassificationMetrics

logger = logging.getLogger(__name__)


def evaluate(model, dataset, label_ids, labels) -> tuple[float, ClassificationMetrics]:
    """Mean cross-entropy and classification metrics of `model` on a labelled dataset."""
    logits = np.concatenate([model(features, training=False).logits.numpy()
                             for features, _ in dataset])
    loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(
        np.asarray(label_ids), logits, from_logits=True))
    metrics = ClassificationMetrics.compute(
        list(label_ids), logits.argmax(axis=-1).tolist(), list(labels))
    return float(loss), metrics


class ValidationMetricsCallback(tf_keras.callbacks.Callback):
    """Adds `val_loss`, `val_accuracy`, `val_precision`, `val_recall`, `val_f1` (macro) and
    `learning_rate` to the epoch logs, so that History, TensorBoard and later callbacks see them.

    Args:
        dataset: Batched `(features, label_ids)` validation dataset, or None (then only the
            learning rate is added).
        label_ids: The validation labels in dataset order.
        labels: Label names in class-id order.
    """

    def __init__(self, dataset, label_ids, labels):
        super().__init__()
        self.dataset = dataset
        self.label_ids = list(label_ids) if label_ids is not None else None
        self.labels = list(labels)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        learning_rate = self.model.optimizer.learning_rate
        if isinstance(learning_rate, tf_keras.optimizers.schedules.LearningRateSchedule):
            learning_rate = learning_rate(self.model.optimizer.iterations)
        logs["learning_rate"] = float(tf_keras.backend.get_value(learning_rate))
        if self.dataset is None:
            return
        loss, metrics = evaluate(self.model, self.dataset, self.label_ids, self.labels)
        logs.update({
            "val_loss": loss,
            "val_accuracy": metrics.accuracy,
            "val_precision": metrics.precision,
            "val_recall": metrics.recall,
            "val_f1": metrics.f1,
        })
        logger.info(
            "Epoch %d validation: loss=%.4f accuracy=%.4f precision=%.4f recall=%.4f f1=%.4f",
            epoch + 1, logs["val_loss"], metrics.accuracy, metrics.precision, metrics.recall,
            metrics.f1,
        )
