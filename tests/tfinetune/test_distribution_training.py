"""`fit --strategy` training for real, in subprocesses (TensorFlow's devices and cluster are
fixed when its runtime starts): mirrored over two logical CPUs, two multi-worker processes on
127.0.0.1, and a multi-worker run killed and restarted.

The tiny BERT here has dropout off, so that runs with the same global batch must end with the
same weights whatever the number of replicas: mirrored 2 x 8 and multi-worker 2 x 8 equal
one-device 16 (up to float noise), which holds only if the loss is scaled per replica
correctly and every replica trains on its own half of each global batch.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tests.tfinetune.test_crash_resume import final_weights as saved_weights

REPO_ROOT = Path(__file__).resolve().parents[2]
# 64 rows: 4 steps of a global batch of 16 per epoch, 12 in all.
OPTIONS = {"epochs": 3, "max_length": 32, "learning_rate": 3e-3, "seed": 3}
STEPS = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    """The dropout-free tiny model and the data."""
    directory = tmp_path_factory.mktemp("distribution")
    model = directory / "tiny-no-dropout"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    return {"dir": directory, "model": str(model),
            "train": str(write_csv(directory / "train.csv", synthetic_sentiment_rows(64, 1))),
            "validation": str(write_csv(directory / "dev.csv", synthetic_sentiment_rows(16, 2)))}


def fit_options(setup, output_dir, **options):
    return {"model": setup["model"], "train": setup["train"], "validation": setup["validation"],
            "output_dir": str(output_dir), **OPTIONS, **options}


def environment(**extra):
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run_worker_script(spec, directory, name, env=None):
    """Starts `distribution_worker` with `spec`; returns (process, stderr path)."""
    spec_path = directory / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    log = directory / f"{name}.stderr"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.tfinetune.distribution_worker", str(spec_path)],
            stdout=subprocess.PIPE, stderr=stderr, env=env or environment(), cwd=REPO_ROOT)
    return process, log


def finish(processes, timeout=240):
    for process, log in processes:
        try:
            process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, Path(log).read_text()[-5000:]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for item in sockets:
        item.bind(("127.0.0.1", 0))
    ports = [item.getsockname()[1] for item in sockets]
    for item in sockets:
        item.close()
    return ports


def tf_configs(count):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(count)]


def assert_same_weights(got, expected, atol):
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=atol, rtol=0, err_msg=name)


@pytest.fixture(scope="module")
def reference(setup, ner_base_model_dir, ner_data):
    """One process with two logical CPUs: one-device with batch 16, then mirrored with 8 per
    replica (LeanAdamW fusing every variable of >= 1,000 values, so its XLA path runs), then
    one epoch of token classification, mirrored, and one in mixed_bfloat16, mirrored."""
    directory = setup["dir"] / "reference"
    directory.mkdir()
    spec = {"logical_cpus": 2, "fuse_min_elements": 1000, "runs": [
        {"config": fit_options(setup, directory / "one", batch_size=16,
                               strategy="one-device"),
         "weights": str(directory / "one.npz")},
        {"config": fit_options(setup, directory / "mirrored", batch_size=8,
                               strategy="mirrored"),
         "weights": str(directory / "mirrored.npz")},
        {"config": {"task": "token-classification", "model": str(ner_base_model_dir),
                    "train": str(ner_data["train"]), "output_dir": str(directory / "ner"),
                    "epochs": 1, "batch_size": 8, "max_length": 32, "strategy": "mirrored"},
         "weights": str(directory / "ner.npz")},
        {"config": fit_options(setup, directory / "bf16", batch_size=8, strategy="mirrored",
                               precision="mixed_bfloat16", epochs=1),
         "weights": str(directory / "bf16.npz")},
    ]}
    process = run_worker_script(spec, directory, "reference")
    finish([process])
    return {"one": dict(np.load(directory / "one.npz")),
            "mirrored": dict(np.load(directory / "mirrored.npz")),
            "ner": dict(np.load(directory / "ner.npz")),
            "bf16": dict(np.load(directory / "bf16.npz")),
            "log": process[1].read_text(), "dir": directory, "model": setup["model"]}


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_equals_one_device_with_the_global_batch(reference):
    log = reference["log"]
    assert "Strategy mirrored: 2 replica(s)" in log
    assert "Global batch 16: 8 per replica x 2 replicas" in log
    assert f"{STEPS} steps (4 per epoch)" in log
    one, mirrored = dict(reference["one"]), dict(reference["mirrored"])
    assert int(one.pop("optimizer_iterations")) == int(mirrored.pop("optimizer_iterations")) \
        == STEPS
    assert_same_weights(mirrored, one, atol=2e-5)
    # ... and training moved the pretrained weights (not a comparison of untrained models).
    pretrained = next(value for name, value in saved_weights(Path(reference["model"])).items()
                      if name.endswith("embeddings/word_embeddings/weight:0"))
    assert np.abs(one["bert/embeddings/word_embeddings/weight:0"] - pretrained).max() > 1e-3
    assert (reference["dir"] / "mirrored" / "fit_config.yaml").is_file()
    assert not (reference["dir"] / "mirrored" / "checkpoints").exists()


@pytest.mark.slow
def test_token_classification_trains_mirrored_with_the_global_batch(reference):
    # 160 training sentences (one window each at 32 tokens), 16 per step over 2 replicas.
    assert "token-classification on 160 rows" in reference["log"]
    assert "10 steps (10 per epoch)" in reference["log"]
    assert int(reference["ner"]["optimizer_iterations"]) == 10
    assert (reference["dir"] / "ner" / "labels.json").is_file()


@pytest.mark.slow
def test_mixed_bfloat16_trains_mirrored_and_keeps_float32_weights(reference):
    weights = dict(reference["bf16"])
    assert int(weights.pop("optimizer_iterations")) == 4
    for name, value in weights.items():
        assert value.dtype == np.float32 and np.isfinite(value).all(), name
    assert sorted(weights) == sorted(name for name in reference["one"]
                                     if name != "optimizer_iterations")
    assert any(np.abs(value - reference["mirrored"][name]).max() > 0
               for name, value in weights.items())


@pytest.fixture(scope="module")
def two_workers(setup):
    """Two `fit --strategy multi-worker` processes on 127.0.0.1, 8 examples per replica, each
    with its own --output-dir and TMPDIR, and its own --save-steps (bookkeeping: the workers
    back up whenever one of them is due)."""
    directory = setup["dir"] / "two-workers"
    directory.mkdir()
    processes = []
    for index, tf_config in enumerate(tf_configs(2)):
        temporary = directory / f"tmp-{index}"
        temporary.mkdir()
        spec = {"runs": [{"config": fit_options(setup, directory / f"run-{index}", batch_size=8,
                                                strategy="multi-worker", save_steps=2 + index),
                          "weights": str(directory / f"weights-{index}.npz")}]}
        processes.append(run_worker_script(
            spec, directory, f"worker-{index}",
            env=environment(TF_CONFIG=tf_config, TMPDIR=str(temporary))))
    finish(processes)
    return directory


@pytest.mark.slow
def test_two_workers_end_with_identical_weights_and_only_the_chief_writes(two_workers,
                                                                          reference):
    chief = dict(np.load(two_workers / "weights-0.npz"))
    other = dict(np.load(two_workers / "weights-1.npz"))
    assert int(chief.pop("optimizer_iterations")) == int(other.pop("optimizer_iterations")) \
        == STEPS
    assert_same_weights(other, chief, atol=0)
    # Each replica trained on its own half of every global batch of 16.
    one = dict(reference["one"])
    one.pop("optimizer_iterations", None)
    assert_same_weights(chief, one, atol=2e-5)
    logs = [(two_workers / f"worker-{index}.stderr").read_text() for index in range(2)]
    assert "Strategy multi-worker: 2 replica(s), worker 0 of 2 (chief)" in logs[0]
    assert "Strategy multi-worker: 2 replica(s), worker 1 of 2" in logs[1]
    assert "Global batch 16: 8 per replica x 2 replicas" in logs[1]
    # The chief wrote a complete run directory; the other worker wrote nothing anywhere.
    run = two_workers / "run-0"
    for name in ("fit_config.yaml", "metrics.json", "README.md", "tf_model.h5", "labels.json",
                 "config.json", "tokenizer.json", "logs"):
        assert (run / name).exists(), name
    assert not (run / "checkpoints").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 3 and "val_f1" in metrics["history"][0]
    assert not (two_workers / "run-1").exists()
    assert list((two_workers / "tmp-1").iterdir()) == []
    assert list((two_workers / "tmp-0").iterdir()) == []


def cli_worker(setup, output_dir, tf_config, log_path, temporary=None):
    command = [sys.executable, "-m", "tfinetune.cli.main", "fit", "--model", setup["model"],
               "--train", setup["train"], "--validation", setup["validation"],
               "--output-dir", str(output_dir), "--batch-size", "8", "--strategy",
               "multi-worker", "--save-steps", "2",
               *[item for name, value in OPTIONS.items()
                 for item in (f"--{name.replace('_', '-')}", str(value))]]
    with open(log_path, "wb") as stderr:
        extra = {"TMPDIR": str(temporary)} if temporary is not None else {}
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                env=environment(TF_CONFIG=tf_config, **extra), cwd=REPO_ROOT)


@pytest.mark.slow
def test_a_worker_killed_stops_the_run_and_a_restart_resumes_as_if_uninterrupted(
        setup, two_workers, tmp_path):
    runs = [tmp_path / "run-0", tmp_path / "run-1"]
    temporary = tmp_path / "tmp-1"  # worker 1's TMPDIR
    temporary.mkdir()
    backup = runs[0] / "checkpoints" / "backup" / "chief" / "checkpoint"

    # 1. Worker 1 is killed once the chief has written its first backup: the chief stops too,
    #    saying what happened and what to do.
    logs = [tmp_path / f"first-{index}.stderr" for index in range(2)]
    workers = [cli_worker(setup, run, config, log, temporary)
               for run, config, log in zip(runs, tf_configs(2), logs)]
    deadline = time.monotonic() + 240
    while not backup.is_file():
        assert all(worker.poll() is None for worker in workers), logs[0].read_text()[-3000:]
        assert time.monotonic() < deadline, "no backup in time"
        time.sleep(0.01)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait(timeout=60)
    try:
        workers[0].communicate(timeout=90)
    finally:
        if workers[0].poll() is None:
            workers[0].kill()
    chief_log = logs[0].read_text()
    assert workers[0].returncode == 1, chief_log[-3000:]
    assert ("Worker 0 lost the multi-worker cluster: a worker stopped or cannot be reached"
            in chief_log), chief_log[-3000:]
    assert "Restart every worker with the same command" in chief_log
    assert not (runs[0] / "fit_config.yaml").exists()  # not finished
    # The killed worker's working directory (and TensorFlow's autograph files) stay behind.
    assert len(list(temporary.glob("tfinetune-worker-1-*"))) == 1

    # 2. The cluster restarts: both run the same command again and finish.
    logs = [tmp_path / f"second-{index}.stderr" for index in range(2)]
    workers = [cli_worker(setup, run, config, log, temporary)
               for run, config, log in zip(runs, tf_configs(2), logs)]
    outputs = []
    for worker, log in zip(workers, logs):
        try:
            stdout, _ = worker.communicate(timeout=240)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, log.read_text()[-5000:]
        outputs.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    assert outputs[0]["output_dir"] == str(runs[0]) and outputs[1] == {
        "output_dir": None, "task": "text-classification", "chief": False}
    steps = []
    for log in logs:
        found = re.search(r"Resuming (?:from|after) step (\d+)", log.read_text())
        assert found, log.read_text()[-5000:]
        steps.append(int(found.group(1)))
    assert steps[0] == steps[1] and 2 <= steps[0] <= STEPS
    assert "the chief's run directory" in logs[1].read_text()

    # 3. The result is the uninterrupted run's.
    assert_same_weights(saved_weights(runs[0]), saved_weights(two_workers / "run-0"),
                        atol=1e-5)
    resumed = json.loads((runs[0] / "metrics.json").read_text())
    uninterrupted = json.loads((two_workers / "run-0" / "metrics.json").read_text())
    assert resumed["best_epoch"] == uninterrupted["best_epoch"]
    assert resumed["validation"]["loss"] == pytest.approx(uninterrupted["validation"]["loss"],
                                                          abs=1e-6)
    # Every epoch's validation loss, including the epochs after the restart (so the last
    # epoch's weights too, whichever epoch's weights were kept).
    for got, expected in zip(resumed["history"], uninterrupted["history"], strict=True):
        for name in ("val_loss", "val_f1", "learning_rate"):
            assert got[name] == pytest.approx(expected[name], abs=1e-6), (got, name)
    assert not (runs[0] / "checkpoints").exists()
    assert not runs[1].exists()
    # The restarted worker replaced it, then deleted it.
    assert list(temporary.glob("tfinetune-worker-*")) == []


@pytest.mark.slow
def test_when_the_chief_refuses_the_run_directory_every_worker_stops(setup, tmp_path):
    # The chief's --output-dir holds another file: it refuses, and says so to worker 1, which
    # would otherwise wait for it in the first collective operation.
    runs = [tmp_path / "run-0", tmp_path / "run-1"]
    runs[0].mkdir()
    (runs[0] / "notes.txt").write_text("not a run\n")
    logs = [tmp_path / f"worker-{index}.stderr" for index in range(2)]
    workers = [cli_worker(setup, run, config, log)
               for run, config, log in zip(runs, tf_configs(2), logs)]
    for worker in workers:
        try:
            worker.communicate(timeout=120)
        finally:
            if worker.poll() is None:
                worker.kill()
    assert [worker.returncode for worker in workers] == [1, 1]
    assert "already holds other files (notes.txt)" in logs[0].read_text()
    assert "The chief (worker 0) refused --output-dir" in logs[1].read_text()
    assert "Worker 1 stops too" in logs[1].read_text()
    assert sorted(path.name for path in runs[0].iterdir()) == ["notes.txt"]
    assert not runs[1].exists()
