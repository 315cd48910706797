"""`fit`: fine-tune a Hugging Face TF model for any `--task` with Keras `fit`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

from tfinetune import _environment  # noqa: F401
from tfinetune.errors import ClusterError
from tfinetune.errors import RunDirError
from tfinetune.fit_config import FitConfig

logger = logging.getLogger(__name__)
# transformers' TF models touch a deprecated TF API on every fit; nothing a user can act on.
warnings.filterwarnings("ignore", message="`seed_generator` is deprecated", category=UserWarning)

CHECKPOINT_DIR = "checkpoints"
#: In `checkpoints/`: the replicas an unfinished run trains with (a resume must use as many).
DISTRIBUTION_FILE = "distribution.json"
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
        chief: False on the workers of a multi-worker run other than the chief: they wrote
            nothing (`output_dir` is the chief's; `best_epoch` and `validation_metrics` None).
    """

    output_dir: Path
    labels: list[str]
    history: list[dict]
    best_epoch: int | None
    validation_metrics: dict | None
    resumed: bool
    chief: bool = True


def fit(config: FitConfig, *, callbacks: Sequence = ()) -> FitResult:
    """Fine-tunes `config.model` for `config.task` on `config.train` and writes the run to
    `config.output_dir`.

    Data and options are checked before anything is loaded or written. Re-running the same
    command after a crash resumes from the last backup in `output_dir/checkpoints`.

    `config.strategy` spreads training over devices or machines (see `DistributionStrategy`);
    `config.batch_size` is per replica. With `multi-worker` every worker runs `fit` with the same
    config and `TF_CONFIG` names its task; only the chief (worker 0) reads and writes
    `output_dir` (the others keep their backups in a temporary directory they delete, and take
    the resume point and the restored state from the chief). What is
    task-specific (data, model head, datasets, metrics) comes from the task's
    `FineTuningTask` (see `tfinetune.tasks`).

    Args:
        config: The run's options.
        callbacks: Extra Keras callbacks, run after tfinetune's own.

    Raises:
        ConfigError, DataError, ModelError, RunDirError: with a message naming the problem.
    """
    from tfinetune.distribution_strategy import DistributionStrategy
    from tfinetune.tasks import task_for

    DistributionStrategy.resolve(config.strategy)  # TF_CONFIG is checked before the data
    task = task_for(config)
    task.read_data()
    # Before any other TensorFlow operation: MultiWorkerMirroredStrategy sets up the runtime.
    distribution = DistributionStrategy.create(config.strategy)
    output_dir = Path(config.output_dir)
    resuming, position = _agree_on_run_dir(config, output_dir, distribution)
    labels = task.label_names
    logger.info("Training %s on %d rows%s", config.task, task.train_rows,
                f", {len(labels)} labels: {labels}" if labels else "")

    from tfinetune.precision_policy import precision_policy

    # The chief works in the run directory; the other workers in a temporary directory.
    work_dir = output_dir if distribution.is_chief else _worker_dir(output_dir, distribution)
    try:
        with precision_policy(config.precision):
            return _train(config, task, output_dir, work_dir, resuming, position, callbacks,
                          distribution)
    finally:
        if not distribution.is_chief:
            shutil.rmtree(work_dir, ignore_errors=True)


def _worker_dir(output_dir: Path, distribution) -> Path:
    """A non-chief worker's working directory, in the system's temporary directory: named after
    the run and the worker, so that a worker restarted after being killed replaces the one its
    killed process left behind."""
    import hashlib

    run = hashlib.sha256(str(output_dir.resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"tfinetune-worker-{distribution.worker_index}-{run}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _agree_on_run_dir(config: FitConfig, output_dir: Path, distribution
                      ) -> tuple[bool, tuple[int, int] | None]:
    """`(resuming, backup position)`, decided by the chief from the run directory and sent to
    the other workers (which never look at `output_dir`). A refusal stops every worker."""
    from tfinetune.resumable_backup import ResumableBackup

    resuming, position, refused = False, None, None
    if distribution.is_chief:
        try:
            resuming = _check_output_dir(config, output_dir)
            if resuming:
                _check_replicas(output_dir / CHECKPOINT_DIR, config, distribution.num_replicas)
                position = ResumableBackup.saved_position(
                    output_dir / CHECKPOINT_DIR / "backup")
        except RunDirError as error:
            refused = error
    epoch, batch = position if position is not None else (-1, -1)
    agreed = distribution.broadcast_from_chief(
        [refused is not None, resuming, epoch, batch])
    if refused is not None:
        raise refused
    if agreed[0]:
        raise RunDirError(
            f"The chief (worker 0) refused --output-dir {output_dir}: see its log. Worker "
            f"{distribution.worker_index} stops too.")
    resuming = bool(agreed[1])
    position = (agreed[2], agreed[3]) if agreed[2] >= 0 else None
    return resuming, position


def _check_replicas(checkpoint_dir: Path, config: FitConfig, replicas: int) -> None:
    """Refuses to resume a run that trained with another number of replicas: its backups'
    steps are of another global batch, so the data order and learning rate would not match."""
    path = checkpoint_dir / DISTRIBUTION_FILE
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"replicas": 1}
    if saved["replicas"] != replicas:
        raise RunDirError(
            f"{config.output_dir} holds an unfinished run trained with {saved['replicas']} "
            f"replica(s) (global batch {saved['replicas'] * config.batch_size}); this run has "
            f"{replicas} (global batch {replicas * config.batch_size}), so its backups' steps "
            "would not match. Resume with as many replicas (devices x workers), or pass "
            "--overwrite-output-dir to start over.")


def _train(config: FitConfig, task, output_dir: Path, work_dir: Path, resuming: bool,
           position: tuple[int, int] | None, callbacks: Sequence,
           distribution) -> FitResult:
    """Loads the model and trains it (inside `fit`'s precision policy)."""
    labels = task.label_names
    import tensorflow as tf
    import tf_keras

    chief = distribution.is_chief
    with distribution.scope(), _checkpointable_dropout():
        tokenizer, model = task.load_model()

    from tfinetune.lean_adamw import LeanAdamW
    from tfinetune.resumable_backup import ResumableBackup
    from tfinetune.training_recorder import TrainingRecorder
    from tfinetune.validation_metrics_callback import ValidationMetricsCallback
    from tfinetune.warmup_decay_schedule import WarmupDecaySchedule

    global_batch = config.batch_size * distribution.num_replicas
    if distribution.num_replicas > 1:
        logger.info("Global batch %d: %d per replica x %d replicas", global_batch,
                    config.batch_size, distribution.num_replicas)
    train_dataset, steps_per_epoch = task.train_dataset(tokenizer, global_batch)
    if chief:
        task.prepare_validation(tokenizer)

    total_steps = steps_per_epoch * config.epochs
    warmup_steps = (config.warmup_steps if config.warmup_steps is not None
                    else int(total_steps * config.warmup_ratio))
    warmup_steps = min(warmup_steps, total_steps)
    schedule = WarmupDecaySchedule(config.learning_rate, total_steps=total_steps,
                                   warmup_steps=warmup_steps, decay=config.schedule,
                                   power=config.poly_power)
    with distribution.scope():
        optimizer = LeanAdamW(
            learning_rate=schedule, weight_decay=config.weight_decay, beta_1=0.9,
            beta_2=0.999, epsilon=1e-8, global_clipnorm=config.max_grad_norm or None)
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
        model.compile(optimizer=optimizer, metrics=task.compile_metrics())
    logger.info("%d steps (%d per epoch), %d warmup, %s decay", total_steps, steps_per_epoch,
                warmup_steps, config.schedule)

    checkpoint_dir = work_dir / CHECKPOINT_DIR
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if chief and not resuming:
        _save_atomically(config, checkpoint_dir / "fit_config.yaml")
    if chief:
        _write_atomically(checkpoint_dir / DISTRIBUTION_FILE,
                          json.dumps({"replicas": distribution.num_replicas}) + "\n")
    backup_dir = checkpoint_dir / "backup"
    steps_done = ResumableBackup.steps_done(position, steps_per_epoch)
    if position is not None and steps_done >= total_steps:
        logger.info("Resuming after step %d: training had finished; writing the run's outputs",
                    steps_done)
    elif position is not None:
        epoch, batch = divmod(steps_done, steps_per_epoch)
        logger.info("Resuming from step %d (epoch %d, batch %d) of the backup in %s",
                    steps_done, epoch + 1, batch + 1,
                    backup_dir if chief else "the chief's run directory")
    elif resuming:
        logger.info("No backup in %s yet: training from the start", backup_dir)
    if distribution.is_multi_worker:
        # Each worker builds the same global batches and keeps its replicas' slices of each
        # (every worker trains the same number of steps, in the (seed, epoch) order).
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        train_dataset = train_dataset.with_options(options)
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
    # Validation and TensorBoard on the chief only: they involve no other worker.
    all_callbacks = [
        *([ValidationMetricsCallback(task)] if chief else []),
        recorder,
        *([tf_keras.callbacks.TensorBoard(log_dir=str(output_dir / "logs"))] if chief else []),
        ResumableBackup(str(backup_dir), save_steps=config.save_steps,
                        save_minutes=config.save_minutes, distribution=distribution),
        *callbacks,
    ]
    # Keras writes its progress bar to stdout; stdout is for results, so it goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            model.fit(train_dataset, epochs=config.epochs, callbacks=all_callbacks,
                      verbose=1 if sys.stderr.isatty() else 2, **fit_options)
        except tf.errors.OpError as error:
            if not distribution.is_multi_worker or not _lost_worker(error):
                raise
            reason = str(error.message).strip().splitlines()[0][:400]
            raise ClusterError(
                f"Worker {distribution.worker_index} lost the multi-worker cluster: a worker "
                f"stopped or cannot be reached ({reason}). Restart every worker with the same "
                "command: training resumes from the chief's last backup.") from error

    if not chief:
        logger.info("Worker %d done; the chief writes the run directory",
                    distribution.worker_index)
        return FitResult(output_dir, labels, recorder.history, None, None, resuming,
                         chief=False)
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


def _lost_worker(error) -> bool:
    """Whether a TensorFlow error of a multi-worker step means a worker is gone (its collective
    operations were aborted, or it stopped sending heartbeats)."""
    import tensorflow as tf

    kinds = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
             tf.errors.AbortedError, tf.errors.CancelledError)
    message = str(error.message)
    return isinstance(error, kinds) or "Collective ops is aborted" in message \
        or "unhealthy" in message


def _save_atomically(config: FitConfig, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    config.save(temporary)
    os.replace(temporary, path)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
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
