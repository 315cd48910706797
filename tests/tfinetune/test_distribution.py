"""`fit --strategy`: choosing the strategy, TF_CONFIG checks, the option in configs, and resume
refused with another number of replicas. (Training under strategies, in subprocesses:
`test_distribution_training.py`.)"""

import json

import pytest
import yaml
from click.testing import CliRunner

import tfinetune
from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tfinetune.cli.main import cli
from tfinetune.distribution_strategy import DistributionStrategy
from tfinetune.distribution_strategy import cluster_tasks
from tfinetune.errors import ConfigError
from tfinetune.errors import RunDirError
from tfinetune.fit_config import FitConfig


def tf_config(cluster, task):
    return json.dumps({"cluster": cluster, "task": task})


TWO_WORKERS = {"worker": ["host1:2222", "host2:2222"]}


@pytest.mark.parametrize("text, message", [
    (None, r"TF_CONFIG environment variable.*e\.g\. TF_CONFIG='\{\"cluster\".*"
           r"Received: TF_CONFIG unset"),
    ("  ", r"Received: TF_CONFIG empty"),
    ("{cluster: 1", r"TF_CONFIG is not valid JSON \(.*\)\. Expected e\.g\..*"
                    r"Received: TF_CONFIG='\{cluster: 1'"),
    ("[1, 2]", r"TF_CONFIG must be a JSON object with 'cluster' and 'task'"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), r"TF_CONFIG has no 'cluster'"),
    (json.dumps({"cluster": {"worker": "host1:2222"}, "task": {"type": "worker", "index": 0}}),
     r"TF_CONFIG cluster\['worker'\] must be a non-empty list of host:port addresses\. "
     r"Received: 'host1:2222'"),
    (json.dumps({"cluster": {"worker": ["host1"]}, "task": {"type": "worker", "index": 0}}),
     r"host:port"),
    (json.dumps({"cluster": TWO_WORKERS}), r"TF_CONFIG has no 'task'"),
    (tf_config(TWO_WORKERS, {"type": "worker", "index": 2}),
     r"TF_CONFIG task \{\"type\": \"worker\", \"index\": 2\} is not in its cluster "
     r"\(2 'worker' task\(s\); indices start at 0\)"),
    (tf_config(TWO_WORKERS, {"type": "chief", "index": 0}), r"is not in its cluster"),
    (tf_config(TWO_WORKERS, {"type": "worker", "index": "1"}), r"is not in its cluster"),
    (tf_config({**TWO_WORKERS, "ps": ["host3:2222"]}, {"type": "worker", "index": 0}),
     r"without parameter servers or evaluators\. Received task types: \['ps'\]"),
])
def test_multi_worker_refuses_a_missing_or_invalid_tf_config(text, message):
    environ = {} if text is None else {"TF_CONFIG": text}
    with pytest.raises(ConfigError, match=message):
        DistributionStrategy.resolve("multi-worker", environ)


def test_the_chief_is_worker_0_and_a_chief_task_comes_before_the_workers():
    assert cluster_tasks(tf_config(TWO_WORKERS, {"type": "worker", "index": 0})) == (0, 2)
    assert cluster_tasks(tf_config(TWO_WORKERS, {"type": "worker", "index": 1})) == (1, 2)
    with_chief = {"chief": ["host0:2222"], **TWO_WORKERS}
    assert cluster_tasks(tf_config(with_chief, {"type": "chief", "index": 0})) == (0, 3)
    assert cluster_tasks(tf_config(with_chief, {"type": "worker", "index": 0})) == (1, 3)
    assert cluster_tasks(tf_config(with_chief, {"type": "worker", "index": 1})) == (2, 3)


def test_auto_is_multi_worker_when_tf_config_names_several_tasks_else_one_device():
    # (This machine has no GPU: "mirrored" would need more than one.)
    resolve = DistributionStrategy.resolve
    assert resolve("auto", {"TF_CONFIG": tf_config(TWO_WORKERS,
                                                   {"type": "worker", "index": 1})}) \
        == "multi-worker"
    one = {"worker": ["host1:2222"]}
    assert resolve("auto", {"TF_CONFIG": tf_config(one, {"type": "worker", "index": 0})}) \
        == "one-device"
    assert resolve("auto", {}) == "one-device"
    assert resolve("mirrored", {}) == "mirrored"
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        resolve("auto", {"TF_CONFIG": "nope"})
    with pytest.raises(ConfigError, match=r"Unknown strategy.*Received: strategy='tpu'"):
        resolve("tpu", {})


def test_one_device_is_tensorflows_default_strategy():
    import tensorflow as tf

    strategy = DistributionStrategy.create("one-device", {})
    assert strategy.strategy is tf.distribute.get_strategy()
    assert (strategy.num_replicas, strategy.is_chief, strategy.num_workers) == (1, True, 1)
    assert strategy.broadcast_from_chief([3, -1]) == [3, -1]
    assert strategy.any_worker(True) and not strategy.any_worker(False)


@pytest.fixture()
def data(tmp_path):
    return {"train": write_csv(tmp_path / "train.csv", synthetic_sentiment_rows(32, seed=5))}


def test_fit_refuses_a_bad_tf_config_before_reading_data_or_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(TWO_WORKERS, {"type": "worker", "index": 5}))
    run = tmp_path / "run"
    config = FitConfig(train=str(tmp_path / "missing.csv"), output_dir=str(run),
                       strategy="multi-worker")
    with pytest.raises(ConfigError, match="is not in its cluster"):
        tfinetune.fit(config)
    assert not run.exists()


def test_cli_strategy_option_and_tf_config_error(tmp_path, data, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["fit", "--train", str(data["train"]), "--output-dir",
                                      str(run), "--strategy", "multi-worker"])
    assert result.exit_code == 1
    assert "TF_CONFIG environment variable" in result.output
    assert "Received: TF_CONFIG unset" in result.output
    assert not run.exists()
    result = CliRunner().invoke(cli, ["fit", "--train", str(data["train"]), "--output-dir",
                                      str(run), "--strategy", "parameter-server"])
    assert result.exit_code == 2 and "'one-device', 'mirrored', 'multi-worker'" in result.output
    assert "--strategy" in CliRunner().invoke(cli, ["fit", "--help"]).output


def test_strategy_in_a_config_file_is_saved_and_is_not_a_training_difference(tmp_path):
    assert FitConfig(train="t.csv", output_dir="run").strategy == "auto"
    config_file = tmp_path / "fit.yaml"
    config_file.write_text("train: t.csv\noutput_dir: run\nstrategy: multi-worker\n")
    config = FitConfig.from_options({}, config_file)
    assert config.strategy == "multi-worker"
    assert FitConfig.from_options({"strategy": "mirrored"}, config_file).strategy == "mirrored"
    config.save(tmp_path / "saved.yaml")
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text())["strategy"] == "multi-worker"
    assert FitConfig.load(tmp_path / "saved.yaml") == config
    # A run may resume under another strategy (with as many replicas: see below).
    assert config.training_differences(FitConfig(train="t.csv", output_dir="run")) == {}
    config_file.write_text("train: t.csv\noutput_dir: run\nstrategy: horovod\n")
    with pytest.raises(ConfigError, match=r"Unknown strategy\. Expected one of \['auto', "
                                          r"'one-device', 'mirrored', 'multi-worker'\]\. "
                                          r"Received: strategy='horovod'"):
        FitConfig.from_options({}, config_file)


def test_resuming_with_another_number_of_replicas_is_refused_and_the_backup_kept(tmp_path, data):
    run = tmp_path / "run"
    config = FitConfig(train=str(data["train"]), output_dir=str(run), batch_size=8,
                       strategy="one-device")
    backup = run / "checkpoints" / "backup" / "chief"
    backup.mkdir(parents=True)
    (backup / "checkpoint").write_text("")
    config.save(run / "checkpoints" / "fit_config.yaml")
    (run / "checkpoints" / "distribution.json").write_text('{"replicas": 2}\n')
    before = sorted(path.relative_to(run) for path in run.rglob("*"))
    with pytest.raises(RunDirError,
                       match=r"unfinished run trained with 2 replica\(s\) \(global batch 16\); "
                             r"this run has 1 \(global batch 8\).*Resume with as many replicas "
                             r"\(devices x workers\), or pass --overwrite-output-dir"):
        tfinetune.fit(config)
    assert sorted(path.relative_to(run) for path in run.rglob("*")) == before
    assert (run / "checkpoints" / "distribution.json").read_text() == '{"replicas": 2}\n'


def test_errors_of_a_lost_worker_are_told_apart_from_other_tensorflow_errors():
    import tensorflow as tf

    from tfinetune.trainer import _lost_worker

    assert _lost_worker(tf.errors.UnavailableError(None, None, "task 1 unreachable"))
    assert _lost_worker(tf.errors.InternalError(
        None, None, "Collective ops is aborted by: The following tasks are unhealthy"))
    assert not _lost_worker(tf.errors.InvalidArgumentError(None, None, "Incompatible shapes"))
    assert not _lost_worker(tf.errors.ResourceExhaustedError(None, None, "OOM"))
