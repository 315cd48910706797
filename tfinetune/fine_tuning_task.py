"""`FineTuningTask`: what one task (`fit --task`) contributes to `fit` and `evaluate`.

`tfinetune.fit` runs the parts every task shares — output-directory checks and resume, the
AdamW optimizer with the warmup-then-decay schedule, Keras `fit` with backups, best-epoch
selection, TensorBoard, writing the run directory atomically — and asks the task for the rest:

    task = task_for(config)          # e.g. TokenClassificationTask(config)
    task.read_data()                 # before anything is loaded or written
    tokenizer, model = task.load_model()
    dataset, steps = task.train_dataset(tokenizer)
    task.prepare_validation(tokenizer)
    ...  model.fit(...), with task.validate(model) at every epoch end ...
    task.save_files(staging_dir)     # e.g. labels.json, beside save_pretrained's files

A run directory always holds `fit_config.yaml` (with `task`), `metrics.json`, `README.md`, the
model and tokenizer files of `save_pretrained`; tasks with labels also `labels.json`
(`{"labels": [...]}`).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from tfinetune.fit_config import FitConfig


class FineTuningTask(abc.ABC):
    """One task's data, model, datasets and metrics.

    Subclasses are named in `tfinetune.tasks.TASK_CLASSES` and constructed with the run's
    config; they must not load TensorFlow or transformers before `load_model`.

    Args:
        config: The run's options (`config.task` names this task).
    """

    #: The `fit --task` name.
    name: str = ""
    #: `pipeline_tag` of the model card.
    pipeline_tag: str = ""

    def __init__(self, config: FitConfig) -> None:
        self.config = config
        #: The examples `read_data` read (any object with a length), None before.
        self.train: Any = None
        self.validation: Any = None

    # --- data ------------------------------------------------------------------------------

    @abc.abstractmethod
    def read_data(self) -> None:
        """Reads and checks `config.train` (and `config.validation`).

        Called before any model is loaded or anything is written.

        Raises:
            DataError: naming the file, row and field of the first problem.
        """

    @property
    def train_rows(self) -> int:
        """Training examples read (before windowing / tokenization)."""
        return len(self.train)

    @property
    def validation_rows(self) -> int | None:
        """Validation examples read, or None without `config.validation`."""
        return len(self.validation) if self.validation is not None else None

    @property
    def label_names(self) -> list[str]:
        """The label (or tag) names in id order; empty for tasks without labels."""
        return []

    # --- model -----------------------------------------------------------------------------

    @abc.abstractmethod
    def load_model(self) -> tuple[Any, Any]:
        """`(tokenizer, model)`: the Hugging Face tokenizer and TF model for `config.model`,
        set up for this task (head sized for the labels, etc.), seeded with `config.seed`.

        Raises:
            ModelError: the model or tokenizer cannot be loaded or does not suit the task.
        """

    def compile_metrics(self) -> list:
        """Keras metrics given to `model.compile` (shown in the progress bar)."""
        return []

    # --- datasets --------------------------------------------------------------------------

    @abc.abstractmethod
    def train_dataset(self, tokenizer: Any, batch_size: int | None = None) -> tuple[Any, int]:
        """`(dataset, steps_per_epoch)`: a shuffled (`config.seed`) `tf.data.Dataset` of
        `(features, labels)` batches of `batch_size` (default `config.batch_size`; `fit` passes
        the global batch, per replica x replicas) for `model.fit` (the model computes its own
        loss from `labels`), and the number of batches in one epoch. Every epoch follows the
        other without end, each in an order that depends on `(seed, epoch)` only."""

    def prepare_validation(self, tokenizer: Any) -> None:
        """Tokenizes the validation data once (no-op without validation)."""

    def validate(self, model: Any) -> tuple[float | None, dict[str, Any]] | None:
        """`(loss, metrics)` of `model` on the validation data, or None without validation.

        `metrics` is JSON-able (it is written to `metrics.json`); its top-level numbers also go
        to the epoch logs as `val_<name>` (see `epoch_logs`).
        """
        return None

    def epoch_logs(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The `val_*` scalars of `metrics` for Keras' epoch logs."""
        return {f"val_{key}": float(value) for key, value in metrics.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)}

    @property
    def monitor(self) -> str:
        """The epoch-log key whose highest value picks the kept epoch (e.g. `val_f1`)."""
        return "val_f1"

    # --- outputs ---------------------------------------------------------------------------

    def save_files(self, directory: Path) -> None:
        """Writes the task's own files into the run directory being staged (default: none)."""

    def model_card_lines(self, metrics: dict[str, Any] | None) -> list[str]:
        """Task-specific Markdown lines for the run's model card (data format, targets)."""
        return []

    # --- `tfinetune evaluate` --------------------------------------------------------------

    @classmethod
    def evaluate_run(cls, run_dir: Path, config: FitConfig, data: Path, *,
                     batch_size: int = 64) -> dict[str, Any]:
        """Every metric of the run's model on a labelled `data` file (same format as training
        data), as a JSON-able dict with `loss` when the task has one.

        Raises:
            DataError, ModelError: naming the problem.
        """
        raise NotImplementedError(f"`tfinetune evaluate` is not implemented for {cls.name}")
