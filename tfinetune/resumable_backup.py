"""`ResumableBackup`: Keras `BackupAndRestore` that also backs up at every epoch end."""

from __future__ import annotations

from tfinetune import _environment  # noqa: F401
import tf_keras


class ResumableBackup(tf_keras.callbacks.BackupAndRestore):
    """Backs up model and optimizer state every `save_steps` steps and at the end of each epoch.

    Re-running the same `fit` resumes from the last backup: the epoch and step counters, the
    weights and the optimizer (including its step, hence the learning-rate schedule) come back.
    The backup is kept after training (the caller deletes it once the run's outputs are
    written), so a crash while saving does not lose the finished training.

    Args:
        backup_dir: Directory of the backup.
        save_steps: Steps between backups within an epoch.
    """

    def __init__(self, backup_dir: str, save_steps: int):
        super().__init__(backup_dir=backup_dir, save_freq=int(save_steps), delete_checkpoint=False)

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps")
        if steps:
            self._batches_count = 0
            self._backup(epoch=epoch, batch=steps - 1)
