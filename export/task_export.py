"""`TaskExport`: what one task contributes to `export_model` (tasks other than text
classification, whose export is `ClassifierServingModule`'s)."""

from __future__ import annotations

import abc
import importlib
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)
from export.run_directory import RunDirectory

#: Task name → "module:Class" of its `TaskExport`.
TASK_EXPORTS = {
    "token-classification": "export.token_classification_export:TokenClassificationExport",
    "question-answering": "export.question_answering_export:QuestionAnsweringExport",
    "seq2seq": "export.seq2seq_export:Seq2SeqExport",
}


def task_export_class(task: str) -> type:
    """The `TaskExport` subclass of `task` (a key of `TASK_EXPORTS`)."""
    module_name, class_name = TASK_EXPORTS[task].split(":")
    return getattr(importlib.import_module(module_name), class_name)


class TaskExport(abc.ABC):
    """Builds, saves and checks one task's SavedModel; `export_model` does the rest (version
    choice, temporary directory, `assets.extra/` common files, atomic rename, clean-up).

    Construction loads the run's model and tokenizer and builds the `tf.Module` (with the
    tokenizer in the graph), raising `ExportError` subclasses naming the problem.

    Args:
        run: The run directory (its `task` is this export's).
        max_length: Input tokens (default: the run's `max_length`).
        parity_texts: Inputs for the parity check (the task documents their meaning), or None
            for the task's default set.
    """

    def __init__(self, run: RunDirectory, *, max_length: int | None = None,
                 parity_texts: Any = None) -> None:
        self.run = run

    #: Set by subclasses' constructors: the `tf.Module` to save (with `signatures()` and
    #: `signature_names`) and the input length it was built with.
    module: Any
    _max_length: int

    @property
    def max_length(self) -> int:
        """The input length the export was built with."""
        return self._max_length

    @property
    def signature_names(self) -> tuple[str, ...]:
        """The SavedModel's signatures, `serving_default` first."""
        return self.module.signature_names

    def save(self, export_dir: Path) -> None:
        """Writes the SavedModel (`tf.saved_model.save` with the signatures) to `export_dir`."""
        import tensorflow as tf

        tf.saved_model.save(self.module, str(export_dir), signatures=self.module.signatures())

    @abc.abstractmethod
    def write_assets(self, assets_extra: Path) -> dict[str, Any]:
        """Writes the task's files into `assets.extra/` (the tokenizer, labels when any,
        `tf_serving_warmup_requests`) and returns the task's extra `export_config.json` fields."""

    @abc.abstractmethod
    def check_parity(self, export_dir: Path) -> float:
        """Reloads `export_dir` and compares its outputs with the in-memory model's.

        Returns:
            The largest absolute difference (of the compared numeric outputs).

        Raises:
            ParityError: the SavedModel disagrees with the in-memory model.
        """
