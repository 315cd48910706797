"""`tfinetune fit` survives crashes: a killed run, re-run, ends where an uninterrupted one does.

The in-process tests crash `fit` from a callback at a chosen step (and again while it writes
the run's outputs); the slow subprocess test SIGKILLs a real `tfinetune fit` at a random moment
after its first backup and re-runs the same command. The backup mechanics (triggers, restored
state) are tested on a one-layer Keras model, and every task's batch order on hand-made rows.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfinetune
from tfinetune import resumable_backup
from tfinetune.fit_config import FitConfig

# 160 training rows, batch 16: 10 steps per epoch. The tiny BERT has dropout 0.1.
OPTIONS = {"epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "max_length": 32, "seed": 7}
STEPS_PER_EPOCH = 10
REPO_ROOT = Path(__file__).resolve().parents[2]


class CrashAt(tf_keras.callbacks.Callback):
    """Raises after training batch `batch` of epoch `epoch` (0-based)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("simulated crash")


class FirstBatch(tf_keras.callbacks.Callback):
    """Records the (epoch, batch) training starts at."""

    def __init__(self):
        super().__init__()
        self.first, self.epoch = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.first is None:
            self.first = (self.epoch, batch)


def config_for(data, tiny_model_dir, output_dir, **options):
    return FitConfig(model=str(tiny_model_dir), train=str(data["train"]),
                     validation=str(data["validation"]), output_dir=str(output_dir),
                     **{**OPTIONS, **options})


def final_weights(run_dir):
    """The run's saved model weights, by name (without the Keras model instance's name, which
    differs between models built in one process)."""
    import h5py

    weights = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            weights[re.sub(r"^([^/]+)/[^/]+/", r"\1/", name)] = item[()]

    with h5py.File(run_dir / "tf_model.h5", "r") as file:
        file.visititems(visit)
    return weights


def assert_same_run(resumed_dir, reference_dir, tolerance=1e-5):
    resumed = json.loads((resumed_dir / "metrics.json").read_text())
    reference = json.loads((reference_dir / "metrics.json").read_text())
    assert resumed["best_epoch"] == reference["best_epoch"]
    for name, value in reference["validation"].items():
        if isinstance(value, float):
            assert resumed["validation"][name] == pytest.approx(value, abs=tolerance), name
    # Every epoch's validation metrics, including the epochs trained across the crash.
    for got, expected in zip(resumed["history"], reference["history"], strict=True):
        names = [name for name in expected if name.startswith("val_")] + ["learning_rate"]
        assert len(names) > 2
        for name in names:
            assert got[name] == pytest.approx(expected[name], abs=tolerance), (got, name)
    weights, expected_weights = final_weights(resumed_dir), final_weights(reference_dir)
    assert weights.keys() == expected_weights.keys()
    for name, value in expected_weights.items():
        np.testing.assert_allclose(weights[name], value, atol=tolerance, err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, sentiment_data):
    """A run trained in one go, to compare resumed runs with."""
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    tfinetune.fit(config_for(sentiment_data, tiny_model_dir, run, save_steps=4))
    return run


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_ends_with_the_uninterrupted_runs_metrics_and_weights(
        tmp_path, tiny_model_dir, sentiment_data, uninterrupted, caplog, monkeypatch):
    from tfinetune import trainer

    config = config_for(sentiment_data, tiny_model_dir, tmp_path / "run", save_steps=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tfinetune.fit(config, callbacks=[CrashAt(epoch=1, batch=8)])
    # The backup holds the dropout generators' state besides weights and optimizer.
    backup = tmp_path / "run" / "checkpoints" / "backup" / "chief"
    names = [name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(backup))]
    assert any(name.startswith("random_generators/") for name in names)
    assert any(name.startswith("model/optimizer/_iterations/") for name in names)
    # The resumed run crashes again once trained, while writing the run's outputs.
    write_outputs = trainer._write_outputs

    def crash_writing(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the outputs")

    monkeypatch.setattr(trainer, "_write_outputs", crash_writing)
    first = FirstBatch()
    with (caplog.at_level("INFO", logger="tfinetune.trainer"),
          pytest.raises(RuntimeError, match="simulated crash while writing")):
        tfinetune.fit(config, callbacks=[first])
    # Backups after batches 4 and 8 of epoch 2 (the count restarts at each epoch end): the
    # crash after batch 9 loses one step, training resumes after step 10 + 8.
    assert first.first == (1, 8)
    assert "Resuming from step 18 (epoch 2, batch 9)" in caplog.text
    assert not (tmp_path / "run" / "fit_config.yaml").exists()

    monkeypatch.setattr(trainer, "_write_outputs", write_outputs)
    first = FirstBatch()
    with caplog.at_level("INFO", logger="tfinetune.trainer"):
        result = tfinetune.fit(config, callbacks=[first])
    assert result.resumed and first.first is None  # not one step trained again
    assert "Resuming after step 30: training had finished" in caplog.text
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert_same_run(tmp_path / "run", uninterrupted)


# ------------------------------------------------------- backups on a tiny Keras model


def keras_fit(backup_dir, *callbacks, epochs=2, dropout=False, **backup_options):
    """Fits a one-layer Keras model (10 steps per epoch) with a `ResumableBackup`."""
    from tf_keras.backend import experimental

    enabled = experimental.is_tf_random_generator_enabled()
    experimental.enable_tf_random_generator()
    try:
        tf_keras.utils.set_random_seed(0)
        layers = [tf_keras.layers.Dropout(0.5)] if dropout else []
        model = tf_keras.Sequential([tf_keras.Input((2,)), *layers, tf_keras.layers.Dense(1)])
    finally:
        if not enabled:
            experimental.disable_tf_random_generator()
    model.compile(optimizer="sgd", loss="mse")
    x = np.arange(80, dtype="float32").reshape(40, 2)
    backup = resumable_backup.ResumableBackup(str(backup_dir), **backup_options)
    model.fit(x, x[:, :1], batch_size=4, epochs=epochs, callbacks=[backup, *callbacks],
              verbose=0)
    return model


def crashed_at(tmp_path, epoch, batch, **backup_options):
    """Where the backup of a run crashed after (epoch, batch) says training is."""
    with pytest.raises(RuntimeError, match="simulated crash"):
        keras_fit(tmp_path / "backup", CrashAt(epoch, batch), **backup_options)
    return resumable_backup.ResumableBackup.saved_position(tmp_path / "backup")


def advancing_clock(monkeypatch, seconds_per_reading):
    clock = {"now": 0.0}

    def now():
        clock["now"] += seconds_per_reading
        return clock["now"]

    monkeypatch.setattr(resumable_backup, "_now", now)


def test_by_default_backups_are_taken_at_each_epoch_end(tmp_path, monkeypatch):
    assert (FitConfig(train="t.csv", output_dir="run").save_steps,
            FitConfig(train="t.csv", output_dir="run").save_minutes) == (None, 10)
    advancing_clock(monkeypatch, 6.0)  # ~6 s per step: 10 minutes are never reached
    assert crashed_at(tmp_path, 1, 7, save_minutes=10) == (0, 9)


def test_a_backup_is_taken_when_save_minutes_have_passed(tmp_path, monkeypatch):
    advancing_clock(monkeypatch, 660.0)  # 11 minutes per step: a backup after every step
    assert crashed_at(tmp_path, 0, 5, save_minutes=10) == (0, 5)


def test_save_minutes_zero_disables_the_time_trigger(tmp_path, monkeypatch):
    advancing_clock(monkeypatch, 660.0)
    assert crashed_at(tmp_path, 0, 5, save_minutes=0) is None


def test_save_steps_backs_up_every_n_steps_counting_from_each_epoch_start(tmp_path):
    assert crashed_at(tmp_path / "a", 0, 7, save_steps=3) == (0, 5)
    # The epoch-end backup restarts the count: epoch 2 backs up after its 3rd and 6th steps.
    assert crashed_at(tmp_path / "b", 1, 4, save_steps=3) == (1, 2)


def test_resume_position_counts_the_steps_done():
    steps_done = resumable_backup.ResumableBackup.steps_done
    assert steps_done(None, 10) == 0
    assert steps_done((0, 5), 10) == 6
    assert steps_done((1, 9), 10) == 20  # an epoch-end backup: the next epoch starts afresh
    assert resumable_backup.ResumableBackup.saved_position("/nonexistent/backup") is None


def test_a_restored_backup_brings_back_weights_step_and_dropout_generator_state(tmp_path):
    saved = {}

    class Snapshot(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 5:
                saved["weights"] = [w.numpy() for w in self.model.weights]
                saved["states"] = [g.state.numpy() for g in
                                   resumable_backup.random_generators(self.model)]

    with pytest.raises(RuntimeError, match="simulated crash"):
        keras_fit(tmp_path / "backup", Snapshot(), CrashAt(0, 6), save_steps=6, dropout=True)
    assert len(saved["states"]) == 1

    class Restored(tf_keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if "restored" not in saved:
                saved["restored"] = (batch, [w.numpy() for w in self.model.weights],
                                     [g.state.numpy() for g in
                                      resumable_backup.random_generators(self.model)],
                                     int(self.model.optimizer.iterations.numpy()))

    keras_fit(tmp_path / "backup", Restored(), save_steps=6, dropout=True)
    batch, weights, states, iterations = saved["restored"]
    assert (batch, iterations) == (6, 6)
    for got, expected in zip(weights, saved["weights"], strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(states[0], saved["states"][0])


# ----------------------------------------------------------------- run directory rules


def test_overwrite_output_dir_discards_an_unfinished_run_even_with_the_same_options(tmp_path):
    from tfinetune.trainer import _check_output_dir

    run = tmp_path / "run"
    (run / "checkpoints" / "backup").mkdir(parents=True)
    config = FitConfig(train="train.csv", output_dir=str(run))
    config.save(run / "checkpoints" / "fit_config.yaml")
    assert _check_output_dir(config, run) is True  # the same options resume
    assert (run / "checkpoints" / "backup").is_dir()
    again = FitConfig(train="train.csv", output_dir=str(run), overwrite_output_dir=True)
    assert _check_output_dir(again, run) is False
    assert not (run / "checkpoints").exists()


def test_an_unfinished_run_with_other_options_is_refused_and_kept(tmp_path):
    from tfinetune.trainer import _check_output_dir

    run = tmp_path / "run"
    (run / "checkpoints" / "backup").mkdir(parents=True)
    FitConfig(train="train.csv", output_dir=str(run), learning_rate=3e-3).save(
        run / "checkpoints" / "fit_config.yaml")
    other = FitConfig(train="train.csv", output_dir=str(run), learning_rate=1e-3,
                      save_steps=5, save_minutes=1)
    with pytest.raises(tfinetune.errors.RunDirError,
                       match=r"unfinished run started with other options \(learning_rate: "
                             r"0\.003 -> 0\.001\)\..*--overwrite-output-dir"):
        _check_output_dir(other, run)
    assert (run / "checkpoints" / "backup").is_dir()
    # Bookkeeping options may change between attempts.
    same = FitConfig(train="train.csv", output_dir=str(run), learning_rate=3e-3, save_steps=5,
                     save_minutes=1)
    assert _check_output_dir(same, run) is True


# --------------------------------------------------- every task's batches resume by skipping


def rows(count, lengths=(3, 9)):
    """Token rows whose first id names the row (100 + i)."""
    return [[100 + i] + [1] * (lengths[i % len(lengths)] - 1) for i in range(count)]


def training_dataset(task):
    from tfinetune import tokenized_dataset

    ids = rows(30)
    mask = [[1] * len(row) for row in ids]
    if task == "text-classification":
        return tokenized_dataset.make_dataset(
            {"input_ids": ids, "attention_mask": mask}, [i % 2 for i in range(30)],
            batch_size=4, shuffle=True, seed=5, repeat=True, length_window=2)
    if task == "token-classification":
        from tfinetune.token_classification_task import _Encoding

        encoding = _Encoding({"input_ids": ids, "attention_mask": mask}, mask, list(range(30)),
                             [[] for _ in ids], 0)
        return encoding.dataset(4, shuffle=True, seed=5)
    if task == "question-answering":
        from tfinetune.question_answering_features import QuestionAnsweringFeatures

        features = QuestionAnsweringFeatures({"input_ids": ids, "attention_mask": mask},
                                             list(range(30)), [[None] * len(row) for row in ids],
                                             [0] * 30, [0] * 30)
        return features.dataset(batch_size=4, shuffle=True, seed=5)
    from tfinetune.seq2seq_task import make_seq2seq_dataset

    return make_seq2seq_dataset({"input_ids": ids, "attention_mask": mask, "labels": ids},
                                batch_size=4, pad_token_id=0, shuffle=True, seed=5)


@pytest.mark.parametrize("task", ["text-classification", "token-classification",
                                  "question-answering", "seq2seq"])
def test_training_batches_of_every_task_depend_on_seed_and_epoch_only(task):
    steps = 8  # 30 rows in batches of 4

    def names(batches, count):
        return [sorted((batch[0]["input_ids"][:, 0].numpy() - 100).tolist())
                for batch in (next(batches) for _ in range(count))]

    assert int(training_dataset(task).cardinality()) == tf.data.INFINITE_CARDINALITY
    epochs = names(iter(training_dataset(task)), 3 * steps)
    for epoch in range(3):
        seen = [name for batch in epochs[epoch * steps:(epoch + 1) * steps] for name in batch]
        assert sorted(seen) == list(range(30))
    assert epochs[:steps] != epochs[steps:2 * steps]
    # A new process that skips the 11 steps done continues with the same batches.
    assert names(iter(training_dataset(task).skip(steps + 3)), 2 * steps - 3) == \
        epochs[steps + 3:]


# ------------------------------------------------------------------------- real SIGKILLs


def fit_command(data, tiny_model_dir, output_dir):
    return [sys.executable, "-m", "tfinetune.cli.main", "fit", "--model", str(tiny_model_dir),
            "--train", str(data["train"]), "--validation", str(data["validation"]),
            "--output-dir", str(output_dir), "--epochs", "3", "--batch-size", "16",
            "--learning-rate", "3e-3", "--max-length", "32", "--seed", "7", "--save-steps", "3"]


def start(command, log):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO_ROOT)


def wait_for(predicate, process, timeout=240.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, "fit ended before it could be killed"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkilled_fit_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_model_dir,
                                                                sentiment_data, uninterrupted):
    # The same options as `uninterrupted` but backups every 3 steps (bookkeeping only).
    run = tmp_path / "killed"
    command = fit_command(sentiment_data, tiny_model_dir, run)
    state_file = run / "checkpoints" / "backup" / "chief" / "checkpoint"
    logs = [tmp_path / f"stderr-{n}.txt" for n in range(2)]

    # 1. Killed at a random moment after its first backup: while training, or while writing
    #    a later backup.
    delay = random.Random(os.getpid()).uniform(0.0, 0.4)
    with open(logs[0], "wb") as log:
        process = start(command, log)
        wait_for(state_file.is_file, process)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, logs[0].read_text()

    # 2. The same command resumes from the last backup and finishes.
    with open(logs[1], "wb") as log:
        finished = start(command, log)
        stdout, _ = finished.communicate(timeout=300)
    stderr = logs[1].read_text()
    assert finished.returncode == 0, stderr
    resumed = re.search(r"Resuming from step (\d+) \(epoch (\d+), batch (\d+)\)", stderr)
    assert resumed, stderr
    step = int(resumed.group(1))
    assert 3 <= step < 3 * STEPS_PER_EPOCH, f"killed {delay:.2f} s after the first backup"
    assert (int(resumed.group(2)), int(resumed.group(3))) == (
        step // STEPS_PER_EPOCH + 1, step % STEPS_PER_EPOCH + 1)
    assert json.loads(stdout)["output_dir"] == str(run)
    assert not (run / "checkpoints").exists()
    assert_same_run(run, uninterrupted)


def test_backup_options_are_checked_and_reach_the_config(tmp_path):
    from click.testing import CliRunner

    from tfinetune.cli.main import cli
    from tfinetune.errors import ConfigError

    config = FitConfig.from_options({"train": "t.csv", "output_dir": "run", "save_minutes": 0.5,
                                     "save_steps": 7})
    assert (config.save_minutes, config.save_steps) == (0.5, 7)
    with pytest.raises(ConfigError, match=r"'save_minutes' must be >= 0.0\. Received: "
                                          r"save_minutes=-1\.0"):
        FitConfig(train="t.csv", output_dir="run", save_minutes=-1)
    with pytest.raises(ConfigError, match=r"'save_steps' must be >= 1\. Received: save_steps=0"):
        FitConfig(train="t.csv", output_dir="run", save_steps=0)
    result = CliRunner().invoke(cli, ["fit", "--train", "t.csv", "--output-dir",
                                      str(tmp_path / "run"), "--save-minutes", "-2"])
    assert result.exit_code == 1 and "save_minutes=-2.0" in result.output
