"""`tfinetune deploy-config`: options to files on disk, and early, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from serving.batching_parameters import BatchingParameters
from serving.model_config_list import ModelConfigList
from tfinetune.cli.main import cli


def fake_base(root: Path, name: str) -> Path:
    (root / name / "3").mkdir(parents=True)
    (root / name / "3" / "saved_model.pb").write_bytes(b"")
    return root / name


def deploy_config(*arguments: str):
    return CliRunner().invoke(cli, ["deploy-config", *map(str, arguments)])


def test_listed_in_the_command_group():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "deploy-config" in result.output


def test_writes_every_file_for_several_models(tmp_path):
    one, two = fake_base(tmp_path, "one"), fake_base(tmp_path / "elsewhere", "two")
    out = tmp_path / "out"

    result = deploy_config("--model", f"sentiment={one}", "--model", f"topics={two}",
                           "--container-model-root", "/models", "-o", out,
                           "--max-batch-size", "64", "--num-batch-threads", "2",
                           "--batch-timeout-micros", "0", "--max-enqueued-batches", "5",
                           "--configmap-name", "prod-models")

    assert result.exit_code == 0, result.output
    assert sorted(Path(line).name for line in result.stdout.split()) == sorted(
        ["models.config", "batching.config", "monitoring.config", "configmap.yaml",
         "docker-compose.override.yml"])
    models = ModelConfigList.read(out / "models.config")
    assert [(m.name, str(m.base_path)) for m in models] == [
        ("sentiment", "/models/sentiment"), ("topics", "/models/topics")]
    batching = BatchingParameters.from_file(out / "batching.config")
    assert (batching.max_batch_size, batching.num_batch_threads, batching.batch_timeout_micros,
            batching.max_enqueued_batches) == (64, 2, 0, 5)
    configmap = yaml.safe_load((out / "configmap.yaml").read_text())
    assert configmap["metadata"]["name"] == "prod-models"
    assert configmap["data"]["models.config"] == (out / "models.config").read_text()


def test_defaults_keep_host_paths(tmp_path):
    base = fake_base(tmp_path, "one")
    result = deploy_config("--model", f"one={base}", "-o", tmp_path / "out")

    assert result.exit_code == 0, result.output
    models = ModelConfigList.read(tmp_path / "out" / "models.config")
    assert [str(m.base_path) for m in models] == [str(base)]
    batching = BatchingParameters.from_file(tmp_path / "out" / "batching.config")
    assert (batching.max_batch_size, batching.batch_timeout_micros, batching.num_batch_threads,
            batching.max_enqueued_batches, batching.pad_variable_length_inputs) == (
        32, 1000, 4, 100, False)


@pytest.mark.parametrize("models, message", [
    (["sentiment"], "expected NAME=BASE_PATH, e.g. sentiment=exports/sentiment. "
                    "Received: 'sentiment'"),
    (["=x"], "expected NAME=BASE_PATH"),
    (["a b={base}"], "Invalid model name 'a b'"),
    (["one={base}", "one={base}"], "Model name 'one' is given twice"),
    (["one={missing}"], "Base path of model 'one' is not a directory: {missing}"),
    (["one={base}/3"], "Base path of model 'one' holds no version: no {base}/3/<N>/"
                       "saved_model.pb"),
])
def test_bad_models_fail_before_anything_is_written(tmp_path, models, message):
    paths = {"base": fake_base(tmp_path, "one"), "missing": tmp_path / "missing"}
    arguments = [argument for model in models for argument in ("--model", model.format(**paths))]

    result = deploy_config(*arguments, "-o", tmp_path / "out")

    assert result.exit_code == 2
    assert message.format(**paths) in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_a_model_is_required(tmp_path):
    result = deploy_config("-o", tmp_path / "out")
    assert result.exit_code == 2 and "Missing option '--model'" in result.output


def test_a_relative_container_root_is_refused(tmp_path):
    result = deploy_config("--model", f"one={fake_base(tmp_path, 'one')}",
                           "--container-model-root", "models", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "container_model_root must be an absolute path" in result.output
