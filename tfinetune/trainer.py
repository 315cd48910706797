"""`fit`: fine-tune a Hugging Face TF model for any `--task` with Keras `fit`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Sequence

from tfinetune import _environment  # noqa: F401
from tfinetune.errors import RunDirError
from tfinetune.fit_config import FitConfig

logger = logging.getLogger(__name__)
# transformers' TF models touch a deprecated TF API on every fit; nothing a user can act on.
warnings.filterwarnings("ignore", message="`seed_generator` is deprecated", category=UserWarning)

CHECKPOINT_DIR = "checkpoints"
STAGING_DIR = ".staging"
# Files of a finished run (besides the model and tokenizer files save_pretrained writes).
RUN_FILES = ("fit_config.yaml", "metrics.json", "training_curves.png", "README.md")
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
    """Fine-tunes `config.model` for `config.task` on `config.train` and writes the run to
    `config.output_dir`.

    Data and options are checked before anything is loaded or written. Re-running the same
    command after a crash resumes from the last backup in `output_dir/checkpoints`. What is
    task-specific (data, model head, datasets, metrics) comes from the task's
    `FineTuningTask` (see `tfinetune.tasks`).

    Args:
        config: The run's options.
        callbacks: Extra Keras callbacks, run after tfinetune's own.

    Raises:
        ConfigError, DataError, ModelError, RunDirError: with a message naming the problem.
    """
    from tfinetune.tasks import task_for

    task = task_for(config)
    task.read_data()
    output_dir = Path(config.output_dir)
    resuming = _check_output_dir(config, output_dir)
    labels = task.label_names
    logger.info("Training %s on %d rows%s", config.task, task.train_rows,
                f", {len(labels)} labels: {labels}" if labels else "")

    from tfinetune.precision_policy import precision_policy

    with precision_policy(config.precision):
        return _train(config, task, output_dir, resuming, callbacks)


def _train(config: FitConfig, task, output_dir: Path, resuming: bool,
           callbacks: Sequence) -> FitResult:
    """Loads the model and trains it (inside `fit`'s precision policy)."""
    labels = task.label_names
    import tensorflow as tf
    import tf_keras

    with _checkpointable_dropout():
        tokenizer, model = task.load_model()

    from tfinetune.lean_adamw import LeanAdamW
    from tfinetune.resumable_backup import ResumableBackup
    from tfinetune.training_recorder import TrainingRecorder
    from tfinetune.validation_metrics_callback import ValidationMetricsCallback
    from tfinetune.warmup_decay_schedule import WarmupDecaySchedule

    train_dataset, steps_per_epoch = task.train_dataset(tokenizer)
    task.prepare_validation(tokenizer)

    total_steps = steps_per_epoch * config.epochs
    warmup_steps = (config.warmup_steps if config.warmup_steps is not None
                    else int(total_steps * config.warmup_ratio))
    warmup_steps = min(warmup_steps, total_steps)
    schedule = WarmupDecaySchedule(config.learning_rate, total_steps=total_steps,
                                   warmup_steps=warmup_steps, decay=config.schedule,
                                   power=config.poly_power)
    optimizer = LeanAdamW(
        learning_rate=schedule, weight_decay=config.weight_decay, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8, global_clipnorm=config.max_grad_norm or None)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    model.compile(optimizer=optimizer, metrics=task.compile_metrics())
    logger.info("%d steps (%d per epoch), %d warmup, %s decay", total_steps, steps_per_epoch,
                warmup_steps, config.schedule)

    checkpoint_dir = output_dir / CHECKPOINT_DIR
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        _save_atomically(config, checkpoint_dir / "fit_config.yaml")
    backup_dir = checkpoint_dir / "backup"
    position = ResumableBackup.saved_position(backup_dir) if resuming else None
    steps_done = ResumableBackup.steps_done(position, steps_per_epoch)
    if position is not None and steps_done >= total_steps:
        logger.info("Resuming after step %d: training had finished; writing the run's outputs",
                    steps_done)
    elif position is not None:
        epoch, batch = divmod(steps_done, steps_per_epoch)
        logger.info("Resuming from step %d (epoch %d, batch %d) of the backup in %s",
                    steps_done, epoch + 1, batch + 1, backup_dir)
    elif resuming:
        logger.info("No backup in %s yet: training from the start", backup_dir)
    fit_options = {}
    if int(train_dataset.cardinality()) == tf.data.INFINITE_CARDINALITY:
        # Every epoch in one stream whose order depends on (seed, epoch) only: skipping the
        # steps done gives the batches the interrupted run was about to train on.
        train_dataset = train_dataset.skip(steps_done)
        fit_options["steps_per_epoch"] = steps_per_epoch
    elif position is not None:
        logger.warning("The %s training data is reshuffled by iteration, not by epoch: the "
                       "resumed run sees other batches than an uninterrupted one would",
                       config.task)
    recorder = TrainingRecorder(checkpoint_dir, monitor=task.monitor)
    all_callbacks = [
        ValidationMetricsCallback(task),
        recorder,
        tf_keras.callbacks.TensorBoard(log_dir=str(output_dir / "logs")),
        ResumableBackup(str(backup_dir), save_steps=config.save_steps,
                        save_minutes=config.save_minutes),
        *callbacks,
    ]
    # Keras writes its progress bar to stdout; stdout is for results, so it goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        model.fit(train_dataset, epochs=config.epochs, callbacks=all_callbacks,
                  verbose=1 if sys.stderr.isatty() else 2, **fit_options)

    best_weights = recorder.best_weights_path
    if best_weights is not None and best_weights.is_file():
        model.load_weights(str(best_weights))
        logger.info("Keeping the weights of epoch %d", recorder.best_epoch)
    elif best_weights is not None:
        logger.warning("Best-epoch weights %s are missing; keeping the last epoch", best_weights)
    validation_metrics = None
    validated = task.validate(model)
    if validated is not None:
        loss, validation_metrics = validated
        if loss is not None:
            validation_metrics = {"loss": loss, **validation_metrics}

    _write_outputs(config, output_dir, model, tokenizer, task, recorder, validation_metrics)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    logger.info("Wrote the fine-tuned model to %s", output_dir)
    return FitResult(output_dir, labels, recorder.history, recorder.best_epoch,
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
        if config.overwrite_output_dir:
            _clear_run(output_dir)
            return False
        previous = FitConfig.load(saved_config)
        differences = config.training_differences(previous)
        if not differences:
            return (output_dir / CHECKPOINT_DIR / "backup").is_dir()
        changed = ", ".join(f"{name}: {old!r} -> {new!r}"
                            for name, (new, old) in sorted(differences.items()))
        raise RunDirError(
            f"{output_dir} holds an unfinished run started with other options ({changed}). "
            "Re-run with the same options to resume it, or pass --overwrite-output-dir to start "
            "over.")
    finished = (output_dir / "fit_config.yaml").is_file()
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


@contextlib.contextmanager
def _checkpointable_dropout():
    """Models built inside draw dropout masks from `tf.random.Generator`s: their state is a
    variable, saved in the backups with the weights, so that a resumed run drops the same units
    as an uninterrupted one (Keras' default random ops keep their state in the kernel; see
    `ResumableBackup`)."""
    from tf_keras.backend import experimental

    enabled = experimental.is_tf_random_generator_enabled()
    experimental.enable_tf_random_generator()
    try:
        yield
    finally:
        if not enabled:
            experimental.disable_tf_random_generator()


def _save_atomically(config: FitConfig, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    config.save(temporary)
    os.replace(temporary, path)


def _clear_run(output_dir: Path) -> None:
    for name in (CHECKPOINT_DIR, STAGING_DIR, "logs"):
        shutil.rmtree(output_dir / name, ignore_errors=True)


def _write_outputs(config, output_dir, model, tokenizer, task, recorder,
                   validation_metrics) -> None:
    """Writes the run's files into a staging directory, then moves them into place."""
    from tfinetune.model_card import model_card
    from tfinetune.training_curves import plot_training_curves

    staging = output_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    task.save_files(staging)
    config.save(staging / "fit_config.yaml")
    metrics = {
        "task": config.task,
        "best_epoch": recorder.best_epoch,
        "validation": validation_metrics,
        "history": recorder.history,
        "train_rows": task.train_rows,
        "validation_rows": task.validation_rows,
        "labels": task.label_names,
    }
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if recorder.history:
        plot_training_curves(recorder.history, staging / "training_curves.png")
    (staging / "README.md").write_text(
        model_card(config, task, validation_metrics, recorder.best_epoch), encoding="utf-8")
    # fit_config.yaml last: its presence at the top level marks a finished run.
    for path in sorted(staging.iterdir(), key=lambda path: path.name == "fit_config.yaml"):
        os.replace(path, output_dir / path.name)
    staging.rmdir()
