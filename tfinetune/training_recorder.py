"""`TrainingRecorder`: per-epoch history and best-epoch weights that survive a crash."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from tfinetune import _environment  # noqa: F401
import tf_keras

logger = logging.getLogger(__name__)


class TrainingRecorder(tf_keras.callbacks.Callback):
    """Records every epoch's logs to `history.json` and keeps the weights of the best epoch.

    The best epoch is the one with the highest `monitor` value (validation F1), or the last epoch
    when there is no such value. Its weights are saved as `best-epoch-<N>.h5` (written
    under a temporary name, then renamed), in the legacy HDF5 format of the layers' weights:
    Keras' `.weights.h5` also holds the metrics' sync-on-read variables, which under
    MultiWorkerMirroredStrategy only all workers together can read. On resume, epochs at or
    after the one training restarts from are dropped from the history, since they will run
    again.

    The weights of an epoch that is no longer the best are deleted at the start of the next
    epoch, once the epoch-end backup (taken after this callback's `on_epoch_end`) is written: a
    crash before that backup resumes inside the epoch, with the previous best epoch's weights
    still on disk.

    Args:
        directory: Where `history.json` and the best weights live (the run's checkpoint dir).
        monitor: Log key to maximise.
    """

    def __init__(self, directory: str | Path, monitor: str = "val_f1"):
        super().__init__()
        self.directory = Path(directory)
        self.monitor = monitor
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self._loaded = False
        path = self.directory / "history.json"
        if path.is_file():
            state = json.loads(path.read_text(encoding="utf-8"))
            self.history = state["history"]
            self.best_epoch = state["best_epoch"]

    @property
    def best_weights_path(self) -> Path | None:
        if self.best_epoch is None:
            return None
        return self.directory / f"best-epoch-{self.best_epoch}.h5"

    def on_epoch_begin(self, epoch, logs=None):
        if self._loaded:
            self._delete_stale_weights()
            return
        self._loaded = True
        kept = [entry for entry in self.history if entry["epoch"] <= epoch]
        if len(kept) != len(self.history) or (self.best_epoch or 0) > epoch:
            self.history = kept
            self.best_epoch = self._best_of(kept)

    def _delete_stale_weights(self) -> None:
        keep = self.best_weights_path
        for path in self.directory.glob("best-epoch-*.h5"):
            if path != keep:
                path.unlink(missing_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": epoch + 1}
        entry.update({key: float(value) for key, value in (logs or {}).items()})
        self.history = [item for item in self.history if item["epoch"] != epoch + 1] + [entry]
        best = self._best_of(self.history)
        if best == epoch + 1:
            path = self.directory / f"best-epoch-{best}.h5"
            partial = self.directory / f"partial-{path.name}"
            self.model.save_weights(str(partial))
            os.replace(partial, path)
        self.best_epoch = best
        self._write()

    def _best_of(self, history: list[dict]) -> int | None:
        if not history:
            return None
        def score(entry):
            value = entry.get(self.monitor)
            return -math.inf if value is None or math.isnan(value) else value
        if all(self.monitor not in entry for entry in history):
            return history[-1]["epoch"]
        return max(history, key=lambda entry: (score(entry), -entry["epoch"]))["epoch"]

    def _write(self) -> None:
        path = self.directory / "history.json"
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(
            json.dumps({"history": self.history, "best_epoch": self.best_epoch}, indent=2),
            encoding="utf-8",
        )
        os.replace(temporary, path)
