"""`ResumableBackup`: Keras `BackupAndRestore` that backs up by steps, by time and every epoch."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tfinetune import _environment  # noqa: F401
import tensorflow as tf
import tf_keras

logger = logging.getLogger(__name__)


def _now() -> float:
    """Seconds of a monotonic clock (a function, so that tests can speed time up)."""
    return time.monotonic()


# Keras resumes mid-epoch only with an integer `save_freq`; backups are triggered here instead.
_NEVER = 2**62


class ResumableBackup(tf_keras.callbacks.BackupAndRestore):
    """Backs up the training state every `save_steps` steps, whenever `save_minutes` have passed
    since the last backup, and at the end of each epoch.

    A backup is one TensorFlow checkpoint of the model (weights, dropout random-generator
    state), its optimizer (moments and step, hence the learning-rate schedule) and the epoch
    and batch it was taken at. TensorFlow writes it under temporary names and then points the
    `checkpoint` file at it, so a kill during a backup leaves the previous backup usable.
    Re-running the same `fit` resumes from it (`saved_position` tells where, before training,
    so that the data pipeline can skip the batches done). The backup is kept after training
    (the caller deletes it once the run's outputs are written), so a crash while saving does
    not lose the finished training.

    Multi-worker (`distribution.is_multi_worker`): every worker saves at the same steps
    (saving is collective); the chief into `backup_dir/chief`, the others into a temporary
    directory that Keras deletes after each save (give them a `backup_dir` outside the run
    directory). After every step the workers agree (one small all-reduce) to back up when a
    backup is due on any of them. On resume only the chief reads the backup; the others then
    take its restored state (weights, optimizer, dropout generators, position) through
    collectives, so they need no shared filesystem.

    Args:
        backup_dir: Directory of the backup.
        save_steps: Steps between backups within an epoch, or None for none by count.
        save_minutes: Minutes of training between backups, or 0 for none by time.
        distribution: The run's `DistributionStrategy`, or None without one.
    """

    def __init__(self, backup_dir: str, save_steps: int | None = None,
                 save_minutes: float = 0.0, distribution=None):
        super().__init__(backup_dir=backup_dir, save_freq=int(save_steps or _NEVER),
                         delete_checkpoint=False)
        self.save_steps = save_steps
        self.save_seconds = 60.0 * save_minutes
        self.distribution = distribution
        self._last_backup = _now()

    @staticmethod
    def saved_position(backup_dir: str | Path) -> tuple[int, int] | None:
        """`(epoch, batch)` (0-based) of the last batch trained before the backup in
        `backup_dir` was taken, or None without a backup."""
        path = tf.train.latest_checkpoint(str(Path(backup_dir) / "chief"))
        if path is None:
            return None
        reader = tf.train.load_checkpoint(path)
        epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
        batch = int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
        if epoch < 0 or batch < 0:
            return None
        return epoch, batch

    @staticmethod
    def steps_done(position: tuple[int, int] | None, steps_per_epoch: int) -> int:
        """Training steps before the resume point of `position` (as Keras resumes it)."""
        if position is None:
            return 0
        epoch, batch = position
        return epoch * steps_per_epoch + batch + 1

    def on_train_begin(self, logs=None):
        # As `BackupAndRestore.on_train_begin` (single worker), plus the layers' dropout random
        # generators in the checkpoint: Keras leaves them out of checkpoints, and without their
        # state a resumed run would draw other dropout masks than an uninterrupted one.
        from tf_keras.src.distribute import worker_training_state

        model = self.model
        if model.optimizer is not None and not getattr(model.optimizer, "_built", False):
            model.optimizer.build(model.trainable_variables)
        state = worker_training_state.WorkerTrainingState(
            model, self.backup_dir, self.save_freq, self.save_before_preemption)
        generators = random_generators(model)
        state.read_checkpoint_manager.checkpoint.random_generators = generators
        model._training_state = self._training_state = state
        distribution = self.distribution
        if distribution is not None and distribution.is_multi_worker:
            # Restoring creates the checkpoint's save counter, a variable, which all workers
            # must create together: only the chief restores, so it is created here, on all.
            state.read_checkpoint_manager.checkpoint._maybe_create_save_counter()
        state.restore()
        if distribution is not None and distribution.is_multi_worker:
            restored = state.read_checkpoint_manager.latest_checkpoint is not None
            if distribution.broadcast_from_chief([restored])[0]:
                distribution.sync_from_chief(
                    [*model.weights, *model.optimizer.variables(), state._ckpt_saved_epoch,
                     state._ckpt_saved_batch, model._train_counter,
                     *(generator.state for generator in generators)])
        self._last_backup = _now()

    def on_train_batch_end(self, batch, logs=None):
        self._training_state.backup_if_preempted()
        self._batches_count += 1
        due_by_steps = self.save_steps is not None and self._batches_count >= self.save_steps
        due_by_time = (self.save_seconds > 0
                       and _now() - self._last_backup >= self.save_seconds)
        due = due_by_steps or due_by_time
        if self.distribution is not None and self.distribution.is_multi_worker:
            # Saving is collective: all workers back up when one is due (by its clock, or by
            # its --save-steps should the workers have been given different ones).
            due = self.distribution.any_worker(due)
        if due:
            self._backup(epoch=self._current_epoch, batch=batch)

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps")
        if steps:
            self._backup(epoch=epoch, batch=steps - 1)

    def _backup(self, epoch, batch=0):
        self._batches_count = 0
        super()._backup(epoch=epoch, batch=batch)
        self._last_backup = _now()
        logger.debug("Backed up the training state at epoch %d, batch %d", epoch + 1, batch + 1)


def random_generators(model) -> list:
    """The `tf.random.Generator`s of `model`'s random layers (dropout), created now if Keras has
    not yet (it does at the first training step), in a fixed layer order.

    They exist only for layers built while `tf_keras.backend.experimental.
    enable_tf_random_generator()` was on; other layers draw from stateless-kernel random ops
    whose state cannot be saved."""
    generators = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        random = getattr(layer, "_random_generator", None)
        if random is None or not hasattr(random, "_maybe_init"):
            continue
        random._maybe_init()
        if getattr(random, "_generator", None) is not None:
            generators.append(random._generator)
    return generators
