"""A finished `tfinetune fit` run directory, validated before anything heavy is loaded."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from export.errors import RunDirError

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.json"
FIT_CONFIG_FILE = "fit_config.yaml"
MODEL_CONFIG_FILE = "config.json"
SUPPORTED_TASK = "text-classification"
#: Every task `tfinetune fit --task` writes (export never imports tfinetune).
TASKS = ("text-classification", "token-classification", "question-answering", "seq2seq")
#: Tasks whose run directory has a `labels.json` (class or tag names).
LABELLED_TASKS = ("text-classification", "token-classification")
PROBLEM_TYPES = ("single-label", "multi-label", "regression")
#: The model config's `problem_type` for each problem type (transformers' names).
HF_PROBLEM_TYPES = {"single-label": "single_label_classification",
                    "multi-label": "multi_label_classification",
                    "regression": "regression"}

_WRITTEN_BY = "written by `tfinetune fit`"


@dataclasses.dataclass(frozen=True)
class RunDirectory:
    """The parts of a run directory that export needs.

    Use `RunDirectory.open(path)`: it checks the layout (`labels.json`, `fit_config.yaml`,
    `config.json`) and reads the small files; the model and tokenizer are loaded on request.

    Attributes:
        path: The run directory.
        labels: The label names; index = class id (regression: one name, the target column;
            token classification: the tag names; empty for tasks without labels).
        fit_config: The parsed `fit_config.yaml`.
    """

    path: Path
    labels: tuple[str, ...]
    fit_config: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        """Validates the run directory's layout and reads `labels.json` and `fit_config.yaml`.

        Args:
            path: The directory `tfinetune fit` wrote.

        Returns:
            The run directory.

        Raises:
            RunDirError: The directory or one of its files is missing or invalid.
        """
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(
                f"Run directory not found. Expected a directory {_WRITTEN_BY} (with "
                f"{MODEL_CONFIG_FILE}, the model weights, {LABELS_FILE} and {FIT_CONFIG_FILE}). "
                f"Received: run_dir='{path}'"
            )
        fit_config = _read_fit_config(path)
        labels: tuple[str, ...] = ()
        if fit_config.get("task", SUPPORTED_TASK) in LABELLED_TASKS:
            labels = _checked_labels(_read_labels_file(path), path / LABELS_FILE,
                                     fit_config.get("problem_type", "single-label"))
        if not (path / MODEL_CONFIG_FILE).is_file():
            raise RunDirError(
                f"Missing {MODEL_CONFIG_FILE} in the run directory. Expected the fine-tuned model "
                f"saved with `save_pretrained` ({_WRITTEN_BY}). Received: run_dir='{path}' "
                f"without {MODEL_CONFIG_FILE}"
            )
        return cls(path=path, labels=labels, fit_config=fit_config)

    @property
    def task(self) -> str:
        """The run's task (`fit_config.yaml`'s `task`; `text-classification` when absent)."""
        return self.fit_config.get("task", SUPPORTED_TASK)

    @property
    def text_pair(self) -> bool:
        """Whether the model classifies text pairs (`fit_config.yaml` has a `text_pair_column`)."""
        return bool(self.fit_config.get("text_pair_column"))

    @property
    def problem_type(self) -> str:
        """`single-label`, `multi-label` or `regression` (`fit_config.yaml`'s `problem_type`)."""
        return self.fit_config.get("problem_type", "single-label")

    @property
    def threshold(self) -> float:
        """Multi-label: the score from which a label is predicted (`threshold`, default 0.5)."""
        return float(self.fit_config.get("threshold", 0.5))

    @property
    def max_length(self) -> int | None:
        """The `max_length` the model was fine-tuned with, or None when the config has none."""
        value = self.fit_config.get("max_length")
        return None if value is None else int(value)

    def load_model(self) -> Any:
        """Loads the fine-tuned `TFAutoModelForSequenceClassification` (or `DenseHeadClassifier`
        when the run added dense head layers) and checks its labels.

        Raises:
            RunDirError: The model cannot be loaded, or its classes do not match `labels.json`.
        """
        from export import _environment  # noqa: F401  (before transformers)
        from export.dense_head import load_classifier

        try:
            # A `--head-hidden-sizes` run (config.json marks it) loads as DenseHeadClassifier.
            model = load_classifier(self.path)
        except (OSError, ValueError, KeyError) as error:
            raise RunDirError(
                f"Cannot load the fine-tuned model. Expected a TF sequence-classification model "
                f"saved with `save_pretrained` in the run directory ({_WRITTEN_BY}). Received: "
                f"run_dir='{self.path}', error: {error}"
            ) from error
        num_labels = model.config.num_labels
        if num_labels != len(self.labels):
            raise RunDirError(
                f"The model and {LABELS_FILE} disagree on the number of classes. Expected "
                f"{len(self.labels)} classes ({list(self.labels)}). Received: "
                f"num_labels={num_labels} in {self.path / MODEL_CONFIG_FILE}"
            )
        model_problem_type = getattr(model.config, "problem_type", None)
        expected_problem_type = HF_PROBLEM_TYPES[self.problem_type]
        if model_problem_type is not None and model_problem_type != expected_problem_type:
            raise RunDirError(
                f"The model and {FIT_CONFIG_FILE} disagree on the problem type. Expected "
                f"problem_type={expected_problem_type!r} in {self.path / MODEL_CONFIG_FILE} "
                f"(problem_type: {self.problem_type} in {FIT_CONFIG_FILE}). Received: "
                f"problem_type={model_problem_type!r}"
            )
        id2label = {int(k): v for k, v in (model.config.id2label or {}).items()}
        if id2label and not _is_default_id2label(id2label):
            model_labels = [id2label.get(i) for i in range(num_labels)]
            if model_labels != list(self.labels):
                raise RunDirError(
                    f"The model's id2label and {LABELS_FILE} disagree. Expected the classes in "
                    f"{LABELS_FILE}: {list(self.labels)}. Received: id2label={model_labels} in "
                    f"{self.path / MODEL_CONFIG_FILE}"
                )
        return model

    def load_tokenizer(self) -> Any:
        """Loads the run's Hugging Face tokenizer (`AutoTokenizer.from_pretrained(run_dir)`).

        Raises:
            RunDirError: No tokenizer files in the run directory.
        """
        from export import _environment  # noqa: F401  (before transformers)
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.path)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RunDirError(
                f"Cannot load the tokenizer. Expected the tokenizer files (vocab.txt, "
                f"tokenizer.json, tokenizer_config.json) saved with `save_pretrained` in the run "
                f"directory ({_WRITTEN_BY}). Received: run_dir='{self.path}', error: {error}"
            ) from error


def _read_labels_file(path: Path) -> Any:
    labels_path = path / LABELS_FILE
    if not labels_path.is_file():
        raise RunDirError(
            f"Missing {LABELS_FILE} in the run directory. Expected {labels_path} ({_WRITTEN_BY}) "
            f'holding {{"labels": ["negative", "positive", ...]}}. Received: run_dir=\'{path}\' '
            f"without {LABELS_FILE}"
        )
    try:
        content = json.loads(labels_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirError(
            f'Invalid {LABELS_FILE}. Expected JSON {{"labels": [...]}}. Received: {labels_path} '
            f"({error})"
        ) from error
    return content


def _checked_labels(content: Any, labels_path: Path, problem_type: str) -> tuple[str, ...]:
    labels = content.get("labels") if isinstance(content, dict) else None
    if problem_type == "regression":
        if not (isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str)
                and labels[0]):
            raise RunDirError(
                f'Invalid {LABELS_FILE} for a regression run. Expected {{"labels": [name]}} '
                f"with the target column's name. Received: {content!r} in {labels_path}"
            )
        return tuple(labels)
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != len(labels)
    ):
        raise RunDirError(
            f'Invalid {LABELS_FILE}. Expected {{"labels": [...]}} with two or more unique, '
            f"non-empty label names (index = class id). Received: {content!r} in {labels_path}"
        )
    return tuple(labels)


def _read_fit_config(path: Path) -> dict[str, Any]:
    config_path = path / FIT_CONFIG_FILE
    if not config_path.is_file():
        raise RunDirError(
            f"Missing {FIT_CONFIG_FILE} in the run directory. Expected {config_path} "
            f"({_WRITTEN_BY}) with max_length and text_pair_column. Received: run_dir='{path}' "
            f"without {FIT_CONFIG_FILE}"
        )
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise RunDirError(
            f"Invalid {FIT_CONFIG_FILE}. Expected a YAML mapping. Received: {config_path} ({error})"
        ) from error
    if not isinstance(config, dict):
        raise RunDirError(
            f"Invalid {FIT_CONFIG_FILE}. Expected a YAML mapping with max_length and "
            f"text_pair_column. Received: {type(config).__name__} in {config_path}"
        )
    task = config.get("task", SUPPORTED_TASK)
    if task not in TASKS:
        raise RunDirError(
            f"Unsupported task in {FIT_CONFIG_FILE}. Expected one of {list(TASKS)}. "
            f"Received: task={task!r} in {config_path}"
        )
    problem_type = config.get("problem_type", "single-label")
    if problem_type not in PROBLEM_TYPES:
        raise RunDirError(
            f"Unknown problem_type in {FIT_CONFIG_FILE}. Expected one of "
            f"{list(PROBLEM_TYPES)}. Received: problem_type={problem_type!r} in {config_path}"
        )
    threshold = config.get("threshold", 0.5)
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
            or not 0.0 < threshold < 1.0):
        raise RunDirError(
            f"Invalid threshold in {FIT_CONFIG_FILE}. Expected a number in (0, 1). Received: "
            f"threshold={threshold!r} in {config_path}"
        )
    max_length = config.get("max_length")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise RunDirError(
            f"Invalid max_length in {FIT_CONFIG_FILE}. Expected a positive integer. Received: "
            f"max_length={max_length!r} in {config_path}"
        )
    return config


def _is_default_id2label(id2label: dict[int, str]) -> bool:
    """True for transformers' placeholder names (`LABEL_0`, `LABEL_1`, ...)."""
    return all(name == f"LABEL_{i}" for i, name in id2label.items())
