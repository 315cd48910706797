"""`FitConfig`: every option of `tfinetune fit`, validated before any training starts."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any
from typing import Mapping

import yaml

from tfinetune.distribution_strategy import STRATEGIES
from tfinetune.errors import ConfigError
from tfinetune.model_source import DEFAULT_MODEL
from tfinetune.problem_type import PROBLEM_TYPES

logger = logging.getLogger(__name__)

SCHEDULES = ("linear", "cosine", "polynomial", "exponential", "constant")
PRECISIONS = ("float32", "mixed_bfloat16")
TASKS = ("text-classification", "token-classification", "question-answering", "seq2seq")
#: `max_length` when none is given, per task (source tokens for seq2seq).
DEFAULT_MAX_LENGTH = {"text-classification": 128, "token-classification": 128,
                      "question-answering": 384, "seq2seq": 512}

# Names users bring from Hugging Face `TrainingArguments` / the example scripts → our names.
ALIASES = {
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "lr_scheduler_type": "schedule",
    "model_name_or_path": "model",
    "train_file": "train",
    "validation_file": "validation",
    "max_seq_length": "max_length",
    "max_source_length": "max_length",
    "text_column_name": "tokens_column",
    "label_column_name": "tags_column",
    "summary_column": "target_column",
}
# Hugging Face scheduler names → ours.
SCHEDULE_ALIASES = {"constant_with_warmup": "constant"}


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Options of one fine-tuning run.

    Args:
        train: Training file (CSV, TSV, JSONL or Parquet).
        output_dir: Where the fine-tuned model, labels, metrics and logs are written.
        model: Hugging Face model name or local directory of the pretrained model.
        validation: Optional validation file, same format rules as `train`.
        text_column: Column holding the text.
        text_pair_column: Optional second text column (sentence-pair tasks).
        label_column: Column holding the label (strings or integers).
        max_length: Tokens per example after truncation (question + context window for
            question answering, source tokens for seq2seq); default per task: 128, 384 for
            question-answering, 512 for seq2seq.
        epochs: Passes over the training data.
        batch_size: Training batch size per replica: a step trains on `batch_size` x replicas
            examples (one replica without a distribution strategy; see `strategy`).
        eval_batch_size: Validation batch size.
        learning_rate: Peak learning rate, reached after warmup.
        warmup_ratio: Fraction of the total steps spent warming up linearly.
        warmup_steps: Warmup steps; overrides `warmup_ratio` when set.
        schedule: Decay after warmup: linear, cosine, polynomial, exponential or constant.
        poly_power: Power of the polynomial schedule (1.0 = linear).
        weight_decay: Decoupled (AdamW) weight decay, not applied to biases and LayerNorm.
        max_grad_norm: Global gradient-norm clipping; 0 disables clipping.
        seed: Seed for initialisation, shuffling and dropout.
        precision: "float32", or "mixed_bfloat16" to compute in bfloat16 with float32 weights
            (Keras mixed precision): about 1.4x faster on CPUs with AVX512-BF16 or AMX (and
            GPUs/TPUs), much slower on CPUs without them. Saved weights are float32 either way.
        save_steps: Back up the training state every this many steps, so that re-running the
            same command resumes after a crash; None (the default): by time and epoch only.
            Backups are also taken at every epoch end and every `save_minutes`.
        save_minutes: Back up the training state whenever this many minutes of training have
            passed since the last backup; 0 disables the time trigger.
        strategy: How training is spread over devices and machines: `one-device`,
            `mirrored` (this machine's GPUs), `multi-worker` (several machines, configured by
            the `TF_CONFIG` environment variable) or `auto` (multi-worker when TF_CONFIG names
            several tasks, mirrored with several GPUs, else one-device). See
            `tfinetune.distribution_strategy.DistributionStrategy`.
        overwrite_output_dir: Start afresh: replace a finished run in `output_dir` instead of
            refusing, and discard the backups of an unfinished one instead of resuming it.
        freeze_backbone: Train only the classification head; the pretrained encoder is frozen
            (text and token classification).
        freeze_layers: Freeze the embeddings and the first N transformer layers (text and token
            classification).
        classifier_dropout: Dropout before the classification head (the model's default when
            None; text and token classification).
        problem_type: `single-label` (one label per text), `multi-label` (a set of labels per
            text: a list, or a `label_delimiter`-separated string) or `regression` (a number).
        threshold: Multi-label: a label is predicted when its sigmoid score is at least this.
        label_delimiter: Multi-label: separator of labels written in one string.
        task: `text-classification`, `token-classification` (NER), `question-answering`
            (extractive, SQuAD-style) or `seq2seq` (translation, summarisation).
        head_hidden_sizes: Text classification: extra dense layers (ReLU, with the classifier
            dropout) between the encoder's pooled output and the output layer.
        tokens_column: Token classification (JSONL): the column of token lists.
        tags_column: Token classification (JSONL): the column of BIO tag lists.
        question_column: Question answering: the question column.
        context_column: Question answering: the context column.
        answers_column: Question answering: the SQuAD `answers` column
            (`{"text": [...], "answer_start": [...]}`).
        doc_stride: Question answering: tokens of overlap between windows of a long context.
        max_answer_length: Question answering: longest answer span, in tokens.
        version_2_with_negative: Question answering: some questions have no answer (SQuAD v2).
        source_column: Seq2seq: the source-text column.
        target_column: Seq2seq: the target-text column.
        source_prefix: Seq2seq: text put before every source (T5: "translate English to
            German: ", "summarize: ").
        max_target_length: Seq2seq: target tokens for training and the generation limit.
        num_beams: Seq2seq: beams for generation (1 = greedy), in validation and export.
    """

    train: str
    output_dir: str
    model: str = DEFAULT_MODEL
    validation: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    max_length: int | None = None
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    schedule: str = "linear"
    poly_power: float = 1.0
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    precision: str = "float32"
    save_steps: int | None = None
    save_minutes: float = 10.0
    strategy: str = "auto"
    overwrite_output_dir: bool = False
    freeze_backbone: bool = False
    freeze_layers: int = 0
    classifier_dropout: float | None = None
    problem_type: str = "single-label"
    threshold: float = 0.5
    label_delimiter: str = ","
    task: str = "text-classification"
    head_hidden_sizes: tuple[int, ...] = ()
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"
    doc_stride: int = 128
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    source_column: str = "source"
    target_column: str = "target"
    source_prefix: str = ""
    max_target_length: int = 128
    num_beams: int = 1

    def __post_init__(self):
        if self.task not in TASKS:
            raise ConfigError(
                f"Unsupported task. Expected one of {list(TASKS)}. Received: task={self.task!r}"
            )
        if self.max_length is None:
            object.__setattr__(self, "max_length", DEFAULT_MAX_LENGTH[self.task])
        object.__setattr__(self, "head_hidden_sizes", _parse_sizes(self.head_hidden_sizes))
        for name in ("tokens_column", "tags_column", "question_column", "context_column",
                     "answers_column", "source_column", "target_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"Option '{name}' must be a non-empty string. Received: {name}={value!r}")
        if not isinstance(self.source_prefix, str):
            raise ConfigError("Option 'source_prefix' must be a string. "
                              f"Received: source_prefix={self.source_prefix!r}")
        _check_number(self, "doc_stride", int, minimum=1)
        _check_number(self, "max_answer_length", int, minimum=1)
        _check_number(self, "max_target_length", int, minimum=1)
        _check_number(self, "num_beams", int, minimum=1)
        if not isinstance(self.version_2_with_negative, bool):
            raise ConfigError("Option 'version_2_with_negative' must be true or false. "
                              f"Received: version_2_with_negative={self.version_2_with_negative!r}")
        if self.task == "question-answering" and self.doc_stride >= self.max_length:
            raise ConfigError(
                "Option 'doc_stride' must be smaller than 'max_length' (windows overlap by "
                f"doc_stride tokens). Received: doc_stride={self.doc_stride}, "
                f"max_length={self.max_length}")
        for name in ("model", "train", "output_dir", "text_column", "label_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"Option '{name}' must be a non-empty string. Received: {name}={value!r}"
                )
        _check_number(self, "max_length", int, minimum=2)
        _check_number(self, "epochs", int, minimum=1)
        _check_number(self, "batch_size", int, minimum=1)
        _check_number(self, "eval_batch_size", int, minimum=1)
        _check_number(self, "learning_rate", float, minimum=0.0, exclusive=True)
        _check_number(self, "warmup_ratio", float, minimum=0.0)
        if self.warmup_ratio >= 1.0:
            raise ConfigError(
                "Option 'warmup_ratio' must be in [0, 1): the fraction of training spent "
                f"warming up. Received: warmup_ratio={self.warmup_ratio!r}"
            )
        if self.warmup_steps is not None:
            _check_number(self, "warmup_steps", int, minimum=0)
        _check_number(self, "poly_power", float, minimum=0.0, exclusive=True)
        _check_number(self, "weight_decay", float, minimum=0.0)
        _check_number(self, "max_grad_norm", float, minimum=0.0)
        _check_number(self, "seed", int, minimum=0)
        if self.save_steps is not None:
            _check_number(self, "save_steps", int, minimum=1)
        _check_number(self, "save_minutes", float, minimum=0.0)
        _check_number(self, "freeze_layers", int, minimum=0)
        if self.classifier_dropout is not None:
            _check_number(self, "classifier_dropout", float, minimum=0.0)
            if self.classifier_dropout >= 1.0:
                raise ConfigError("Option 'classifier_dropout' must be in [0, 1). "
                                  f"Received: classifier_dropout={self.classifier_dropout!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(
                f"Unknown problem type. Expected one of {list(PROBLEM_TYPES)}. "
                f"Received: problem_type={self.problem_type!r}")
        _check_number(self, "threshold", float, minimum=0.0, exclusive=True)
        if self.threshold >= 1.0:
            raise ConfigError("Option 'threshold' must be in (0, 1). "
                              f"Received: threshold={self.threshold!r}")
        if not isinstance(self.label_delimiter, str) or not self.label_delimiter:
            raise ConfigError("Option 'label_delimiter' must be a non-empty string. "
                              f"Received: label_delimiter={self.label_delimiter!r}")
        if self.freeze_backbone and self.freeze_layers:
            raise ConfigError(
                "Use either freeze_backbone (freeze the whole encoder) or freeze_layers N "
                f"(freeze the embeddings and the first N layers). Received: "
                f"freeze_backbone=True, freeze_layers={self.freeze_layers}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"Unknown precision. Expected one of {list(PRECISIONS)}. "
                f"Received: precision={self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"Unknown strategy. Expected one of {list(STRATEGIES)}. "
                f"Received: strategy={self.strategy!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"Unknown learning-rate schedule. Expected one of {list(SCHEDULES)}. "
                f"Received: schedule={self.schedule!r}"
            )
        if self.task != "text-classification":
            classification_only = {
                "head_hidden_sizes": (bool(self.head_hidden_sizes),
                                      list(self.head_hidden_sizes)),
                "problem_type": (self.problem_type != "single-label", self.problem_type),
                "freeze_backbone": (self.freeze_backbone, self.freeze_backbone),
                "freeze_layers": (bool(self.freeze_layers), self.freeze_layers),
                "classifier_dropout": (self.classifier_dropout is not None,
                                       self.classifier_dropout),
            }
            if self.task == "token-classification":
                # The token classifier has a head and an encoder like a sequence classifier.
                for name in ("freeze_backbone", "freeze_layers", "classifier_dropout"):
                    classification_only.pop(name)
            for name, (given, value) in classification_only.items():
                if given:
                    raise ConfigError(
                        f"Option '{name}' applies to text classification only. Received: "
                        f"{name}={value!r} with task={self.task!r}")
        if self.task != "text-classification":
            return
        columns = [self.text_column, self.label_column]
        if self.text_pair_column is not None:
            columns.append(self.text_pair_column)
        if len(set(columns)) != len(columns):
            raise ConfigError(
                "The text, text-pair and label columns must be different columns. "
                f"Received: text_column={self.text_column!r}, "
                f"text_pair_column={self.text_pair_column!r}, label_column={self.label_column!r}"
            )

    # === Construction ===

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], config_file: str | Path | None = None
    ) -> "FitConfig":
        """Builds a config from a config file (optional) overridden by explicit options.

        Options whose value is `None` count as "not given". The config file is YAML (our option
        names, dashes or underscores) or a Hugging Face `TrainingArguments`-style JSON.
        """
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(load_config_file(config_file))
        values.update({k: v for k, v in normalise_keys(options, source="option").items()
                       if v is not None})
        missing = [name for name in ("train", "output_dir") if not values.get(name)]
        if missing:
            flags = ", ".join("--" + name.replace("_", "-") for name in missing)
            raise ConfigError(
                f"Missing required option(s) {flags}: give them on the command line or in "
                f"--config. Received: {', '.join(f'{m}=None' for m in missing)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["head_hidden_sizes"] = list(self.head_hidden_sizes)
        return values

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "FitConfig":
        return cls(**load_config_file(path))

    def training_differences(self, other: "FitConfig") -> dict[str, tuple[Any, Any]]:
        """Fields that change what is trained (everything but bookkeeping options). The
        strategy is not one: a run may resume under another strategy with the same number of
        replicas (`fit` checks that)."""
        ignored = {"overwrite_output_dir", "save_steps", "save_minutes", "strategy"}
        return {
            field.name: (getattr(self, field.name), getattr(other, field.name))
            for field in dataclasses.fields(self)
            if field.name not in ignored and getattr(self, field.name) != getattr(other, field.name)
        }


def _parse_sizes(value: Any) -> tuple[int, ...]:
    """`head_hidden_sizes` from "256,128", [256, 128] or () → (256, 128)."""
    items = value
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(items, int) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise ConfigError("Option 'head_hidden_sizes' must be a list of positive integers "
                          f"(e.g. 256,128). Received: head_hidden_sizes={value!r}")
    sizes = []
    for item in items:
        try:
            size = int(item)
        except (TypeError, ValueError):
            size = None
        if size is None or isinstance(item, bool) or size < 1 or (
                isinstance(item, float) and not item.is_integer()):
            raise ConfigError("Option 'head_hidden_sizes' must be a list of positive integers "
                              f"(e.g. 256,128). Received: head_hidden_sizes={value!r}")
        sizes.append(size)
    return tuple(sizes)


def _check_number(config: FitConfig, name: str, kind: type, minimum: float,
                  exclusive: bool = False) -> None:
    value = getattr(config, name)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
        object.__setattr__(config, name, value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
        object.__setattr__(config, name, value)
    expected = "an integer" if kind is int else "a number"
    bound = f"> {minimum}" if exclusive else f">= {minimum}"
    if isinstance(value, bool) or not isinstance(value, kind) or (
        kind is float and not math.isfinite(value)
    ):
        raise ConfigError(f"Option '{name}' must be {expected} {bound}. Received: {name}={value!r}")
    if value < minimum or (exclusive and value == minimum):
        raise ConfigError(f"Option '{name}' must be {bound}. Received: {name}={value!r}")


def normalise_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Maps dashed and Hugging Face names onto FitConfig field names."""
    fields = {field.name for field in dataclasses.fields(FitConfig)}
    result: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in fields:
            raise ConfigError(
                f"Unknown option in {source}. Expected one of {sorted(fields)} "
                f"(or a Hugging Face TrainingArguments name). Received: {key!r}"
            )
        if name == "schedule" and isinstance(value, str):
            value = SCHEDULE_ALIASES.get(value, value)
        if name in result and result[name] != value:
            raise ConfigError(
                f"Option '{name}' is given twice with different values in {source}. "
                f"Received: {result[name]!r} and {value!r} (as {key!r})"
            )
        result[name] = value
    return result


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Reads a YAML config (our option names) or a `TrainingArguments`-style JSON."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found. Received: --config {path}")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError(
                "Unsupported config file type. Expected .yaml, .yml or .json. "
                f"Received: {path.name}"
            )
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"Cannot parse config file {path}: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of option names to values. "
            f"Received: a {type(data).__name__}"
        )
    if suffix == ".json":
        data = _from_training_arguments(data, path)
    return normalise_keys(data, source=str(path))


def _from_training_arguments(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Keeps the `TrainingArguments` keys that mean something here; logs the ones ignored."""
    ours = {field.name for field in dataclasses.fields(FitConfig)}
    known_here = ours | set(ALIASES)
    unknown = [key for key in data if key.replace("-", "_") not in known_here]
    if not unknown:
        return data
    from tfinetune import _environment  # noqa: F401
    from transformers import TrainingArguments

    hf_fields = {field.name for field in dataclasses.fields(TrainingArguments)}
    ignored = [key for key in unknown if key in hf_fields]
    rejected = [key for key in unknown if key not in hf_fields]
    if rejected:
        raise ConfigError(
            f"Unknown option(s) in {path}: neither tfinetune options nor TrainingArguments "
            f"fields. Expected one of {sorted(ours)}. Received: {rejected}"
        )
    result = {key: value for key, value in data.items() if key not in ignored}
    # TrainingArguments dumps warmup_steps=0 to mean "use warmup_ratio".
    if result.get("warmup_steps") == 0:
        result.pop("warmup_steps")
    logger.info("Ignoring TrainingArguments fields tfinetune does not use: %s", ", ".join(ignored))
    return result
