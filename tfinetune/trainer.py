"""`fit`: fine-tune a Hugging Face TF model for text classification with Keras `fit`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Sequence

from tfinetune import _environment  # noqa: F401
from tfinetune.errors import ModelError
from tfinetune.errors import RunDirError
from tfinetune.fit_config import FitConfig
from tfinetune.label_set import LabelSet
from tfinetune.model_source import resolve_model
from tfinetune.problem_type import ProblemType
from tfinetune.text_classification_examples import TextClassificationExamples

logger = logging.getLogger(__name__)
# transformers' TF models touch a deprecated TF API on every fit; nothing a user can act on.
warnings.filterwarnings("ignore", message="`seed_generator` is deprecated", category=UserWarning)

CHECKPOINT_DIR = "checkpoints"
STAGING_DIR = ".staging"
# Files of a finished run (besides the model and tokenizer files save_pretrained writes).
RUN_FILES = ("labels.json", "fit_config.yaml", "metrics.json", "training_curves.png", "README.md")
# Variables that get no weight decay (matched by substring, as in BERT and transformers).
NO_DECAY = ("bias", "LayerNorm", "layer_norm")


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What `fit` produced.

    Attributes:
        output_dir: The run directory (model, tokenizer, labels, metrics, curves, card, logs).
        labels: Label names in class-id order.
        history: One dict of logs per epoch (`loss`, `accuracy`, `learning_rate`, `val_*`).
        best_epoch: The epoch whose weights were kept (1-based).
        validation_metrics: Validation metrics of the kept weights, or None without validation.
        resumed: True when training continued from a backup in `output_dir/checkpoints`.
    """

    output_dir: Path
    labels: list[str]
    history: list[dict]
    best_epoch: int | None
    validation_metrics: dict | None
    resumed: bool


def fit(config: FitConfig, *, callbacks: Sequence = ()) -> FitResult:
    """Fine-tunes `config.model` on `config.train` and writes the run to `config.output_dir`.

    Data and options are checked before anything is loaded or written. Re-running the same
    command after a crash resumes from the last backup in `output_dir/checkpoints`.

    Args:
        config: The run's options.
        callbacks: Extra Keras callbacks, run after tfinetune's own.

    Raises:
        ConfigError, DataError, ModelError, RunDirError: with a message naming the problem.
    """
    problem_type = ProblemType(config.problem_type, threshold=config.threshold)
    columns = {"text_column": config.text_column, "label_column": config.label_column,
               "text_pair_column": config.text_pair_column,
               "problem_type": config.problem_type, "label_delimiter": config.label_delimiter}
    train = TextClassificationExamples.read(config.train, role="training", **columns)
    labels = train.labels or LabelSet.for_regression(config.label_column)
    validation = None
    if config.validation:
        validation = TextClassificationExamples.read(
            config.validation, labels=train.labels, role="validation", **columns)
    output_dir = Path(config.output_dir)
    resuming = _check_output_dir(config, output_dir)
    logger.info("Training on %d rows, %d labels: %s", len(train), len(labels), list(labels.names))

    tokenizer, model = _load(config, labels, problem_type)

    import tf_keras

    from tfinetune.resumable_backup import ResumableBackup
    from tfinetune.tokenized_dataset import make_dataset
    from tfinetune.tokenized_dataset import tokenize
    from tfinetune.training_recorder import TrainingRecorder
    from tfinetune.validation_metrics_callback import ValidationMetricsCallback
    from tfinetune.validation_metrics_callback import evaluate
    from tfinetune.warmup_decay_schedule import WarmupDecaySchedule

    pad_id = tokenizer.pad_token_id or 0
    train_features = tokenize(tokenizer, train.texts, train.text_pairs, config.max_length)
    train_dataset = make_dataset(train_features, train.targets, batch_size=config.batch_size,
                                 pad_token_id=pad_id, shuffle=True, seed=config.seed)
    validation_dataset = None
    if validation is not None:
        validation_dataset = make_dataset(
            tokenize(tokenizer, validation.texts, validation.text_pairs, config.max_length),
            validation.targets, batch_size=config.eval_batch_size, pad_token_id=pad_id)

    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = (config.warmup_steps if config.warmup_steps is not None
                    else int(total_steps * config.warmup_ratio))
    warmup_steps = min(warmup_steps, total_steps)
    schedule = WarmupDecaySchedule(config.learning_rate, total_steps=total_steps,
                                   warmup_steps=warmup_steps, decay=config.schedule,
                                   power=config.poly_power)
    optimizer = tf_keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=config.weight_decay, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8, global_clipnorm=config.max_grad_norm or None)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    model.compile(optimizer=optimizer, metrics=problem_type.compile_metrics)
    logger.info("%d steps (%d per epoch), %d warmup, %s decay", total_steps, steps_per_epoch,
                warmup_steps, config.schedule)

    checkpoint_dir = output_dir / CHECKPOINT_DIR
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        config.save(checkpoint_dir / "fit_config.yaml")
    recorder = TrainingRecorder(checkpoint_dir, monitor=problem_type.monitor)
    all_callbacks = [
        ValidationMetricsCallback(validation_dataset,
                                  validation.targets if validation else None, labels.names,
                                  problem_type),
        recorder,
        tf_keras.callbacks.TensorBoard(log_dir=str(output_dir / "logs")),
        ResumableBackup(str(checkpoint_dir / "backup"), save_steps=config.save_steps),
        *callbacks,
    ]
    # Keras writes its progress bar to stdout; stdout is for results, so it goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        model.fit(train_dataset, epochs=config.epochs, callbacks=all_callbacks,
                  verbose=1 if sys.stderr.isatty() else 2)

    best_weights = recorder.best_weights_path
    if best_weights is not None and best_weights.is_file():
        model.load_weights(str(best_weights))
        logger.info("Keeping the weights of epoch %d", recorder.best_epoch)
    elif best_weights is not None:
        logger.warning("Best-epoch weights %s are missing; keeping the last epoch", best_weights)
    validation_metrics = None
    if validation is not None:
        _, metrics = evaluate(model, validation_dataset, validation.targets, labels.names,
                              problem_type)
        validation_metrics = metrics.as_dict()

    _write_outputs(config, output_dir, model, tokenizer, labels, recorder, train, validation,
                   validation_metrics)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    logger.info("Wrote the fine-tuned model to %s", output_dir)
    return FitResult(output_dir, list(labels.names), recorder.history, recorder.best_epoch,
                     validation_metrics, resuming)


def _check_output_dir(config: FitConfig, output_dir: Path) -> bool:
    """Decides between a new run and a resume, or refuses; returns True when resuming."""
    if not output_dir.exists():
        return False
    if not output_dir.is_dir():
        raise RunDirError(
            f"--output-dir must be a directory. Received: {output_dir} (an existing file)")
    saved_config = output_dir / CHECKPOINT_DIR / "fit_config.yaml"
    if saved_config.is_file():
        previous = FitConfig.load(saved_config)
        differences = config.training_differences(previous)
        if not differences:
            return (output_dir / CHECKPOINT_DIR / "backup").is_dir()
        if config.overwrite_output_dir:
            _clear_run(output_dir)
            return False
        changed = ", ".join(f"{name}: {old!r} -> {new!r}"
                            for name, (new, old) in sorted(differences.items()))
        raise RunDirError(
            f"{output_dir} holds an unfinished run started with other options ({changed}). "
            "Re-run with the same options to resume it, or pass --overwrite-output-dir to start "
            "over.")
    finished = (output_dir / "labels.json").is_file()
    leftovers = [path.name for path in output_dir.iterdir() if path.name != STAGING_DIR]
    if not leftovers:
        return False
    if config.overwrite_output_dir:
        _clear_run(output_dir)
        return False
    what = "a finished run" if finished else f"other files ({', '.join(sorted(leftovers)[:5])})"
    raise RunDirError(
        f"--output-dir {output_dir} already holds {what}. Expected a new or empty directory. "
        "Pass --overwrite-output-dir to replace it, or choose another directory.")


def _clear_run(output_dir: Path) -> None:
    for name in (CHECKPOINT_DIR, STAGING_DIR, "logs"):
        shutil.rmtree(output_dir / name, ignore_errors=True)


def _load(config: FitConfig, labels, problem_type):
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSequenceClassification

    source = resolve_model(config.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"Cannot load a tokenizer for --model {config.model!r}. Expected a Hugging Face model "
            f"name or a directory with tokenizer files. Received: {error}") from error
    try:
        import tf_keras
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(
            source, num_labels=problem_type.num_labels(labels.names), id2label=labels.id2label,
            label2id=labels.label2id, problem_type=problem_type.hf_problem_type)
        if config.classifier_dropout is not None:
            _set_classifier_dropout(model_config, config.classifier_dropout)
        tf_keras.utils.set_random_seed(config.seed)
        model = TFAutoModelForSequenceClassification.from_pretrained(
            source, config=model_config, ignore_mismatched_sizes=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"Cannot load --model {config.model!r} as a TensorFlow sequence classifier. Expected "
            "a Hugging Face model name or directory of a model type with a TF class (BERT, "
            f"DistilBERT, RoBERTa, ...). Received: {error}") from error
    if problem_type.training_loss() is not None:
        # transformers' TF classifiers know only cross-entropy and MSE: give this model the
        # problem type's loss (its call passes `labels` and `logits` here).
        model.hf_compute_loss = problem_type.training_loss()
    if config.freeze_backbone or config.freeze_layers:
        from tfinetune.backbone_freezer import BackboneFreezer

        freezer = BackboneFreezer(model)
        if config.freeze_backbone:
            freezer.freeze_backbone()
        else:
            freezer.freeze_layers(config.freeze_layers)
    return tokenizer, model


def _set_classifier_dropout(model_config, rate: float) -> None:
    """Sets the head's dropout under the name the architecture uses (saved in config.json)."""
    for name in ("classifier_dropout", "seq_classif_dropout"):
        if hasattr(model_config, name):
            setattr(model_config, name, rate)
            return
    raise ModelError(
        f"--classifier-dropout is not supported for model type {model_config.model_type!r}: "
        "its config has no classifier dropout setting.")


def _write_outputs(config, output_dir, model, tokenizer, labels, recorder, train, validation,
                   validation_metrics) -> None:
    """Writes the run's files into a staging directory, then moves them into place."""
    from tfinetune.model_card import model_card
    from tfinetune.training_curves import plot_training_curves

    staging = output_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    labels.save(staging)
    config.save(staging / "fit_config.yaml")
    metrics = {
        "best_epoch": recorder.best_epoch,
        "validation": validation_metrics,
        "history": recorder.history,
        "train_rows": len(train),
        "validation_rows": len(validation) if validation is not None else None,
        "labels": list(labels.names),
    }
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if recorder.history:
        plot_training_curves(recorder.history, staging / "training_curves.png")
    (staging / "README.md").write_text(
        model_card(config, labels.names, validation_metrics, recorder.best_epoch, len(train),
                   len(validation) if validation is not None else None),
        encoding="utf-8")
    for path in staging.iterdir():
        os.replace(path, output_dir / path.name)
    staging.rmdir()
