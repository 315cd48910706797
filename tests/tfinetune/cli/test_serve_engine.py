"""`tfinetune serve --engine tensorflow-model-server`: a real subprocess execs the first
`tensorflow_model_server` on PATH (here a script recording its argv) with TF Serving's flags, or
fails clearly (exit code 127) when there is none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ENGINE = ("--engine", "tensorflow-model-server")


def serve(*flags: str, path: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", "from tfinetune.cli.main import cli; cli()", "serve", *flags],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture()
def fake_binary(tmp_path):
    """A directory holding a fake `tensorflow_model_server` that writes its argv (one per line)
    to argv.txt and its pid to pid.txt, and the path of argv.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.txt"
    script = bin_dir / "tensorflow_model_server"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > {record}\n"
                      f"echo $$ > {tmp_path / 'pid.txt'}\nexit 3\n")
    script.chmod(0o755)
    return bin_dir, record


def path_with(bin_dir: Path) -> str:
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def test_the_binary_gets_tf_servings_flags_exactly(fake_binary, tmp_path):
    bin_dir, record = fake_binary
    result = serve(*ENGINE, "--model-name", "sentiment", "--model-base-path", "exports/sentiment",
                   "--port", "9000", "--rest_api_port=9001", "--enable-batching",
                   "--batching-parameters-file", "/etc/tfserving/batching.config",
                   "--file-system-poll-wait-seconds", "5", "--enable_model_warmup=false",
                   "--saved_model_tags=serve,gpu", "--monitoring_config_file=/m.config",
                   "--enable_profiler=false", "--tensorflow_intra_op_parallelism=2",
                   path=path_with(bin_dir), cwd=tmp_path)

    # The fake binary's exit code and pid show the process was replaced, not forked.
    assert result.returncode == 3, result.stderr
    assert record.read_text().splitlines() == [
        str(bin_dir / "tensorflow_model_server"),
        "--model_name=sentiment",
        f"--model_base_path={tmp_path / 'exports' / 'sentiment'}",  # made absolute
        "--port=9000",
        "--rest_api_port=9001",
        "--enable_batching=true",
        "--batching_parameters_file=/etc/tfserving/batching.config",
        "--file_system_poll_wait_seconds=5",
        "--enable_model_warmup=false",
        "--saved_model_tags=serve,gpu",
        "--monitoring_config_file=/m.config",
        "--enable_profiler=false",
        "--tensorflow_intra_op_parallelism=2",
    ]
    assert "listens on all interfaces" in result.stderr


def test_the_process_is_replaced_not_forked(fake_binary, tmp_path):
    bin_dir, record = fake_binary
    process = subprocess.Popen(
        [sys.executable, "-c", "from tfinetune.cli.main import cli; cli()", "serve", *ENGINE,
         "--model_config_file=/etc/tfserving/models.config", "--host", "0.0.0.0"],
        cwd=REPO, env={**os.environ, "PATH": path_with(bin_dir), "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 3, stderr
    assert int((tmp_path / "pid.txt").read_text()) == process.pid
    # Defaults are not spelled out (TF Serving's are the same), --host 0.0.0.0 is its behaviour.
    assert record.read_text().splitlines()[1:] == [
        "--model_config_file=/etc/tfserving/models.config"]
    assert "listens on all interfaces" not in stderr


def test_no_binary_on_path_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = serve(*ENGINE, "--model-base-path", "/models/sentiment", path=str(empty))

    assert result.returncode == 127
    assert f"tensorflow_model_server is not on PATH ({empty})" in result.stderr
    assert "tensorflow-model-server apt package" in result.stderr
    assert "tensorflow/serving Docker image" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flags, message", [
    (("--grace-seconds", "3"), "--grace-seconds is a tfinetune serve option"),
    (("--max_in_flight_requests=10",), "--max-in-flight-requests is a tfinetune serve option"),
    (("--rest-api-max-body-bytes", "100"), "--rest-api-max-body-bytes is a tfinetune serve"),
    (("--grpc-max-message-bytes", "100"), "--grpc-max-message-bytes is a tfinetune serve"),
    (("--rest_api_ssl_config_file=/ssl.config",), "--rest-api-ssl-config-file is a tfinetune"),
    (("--model-version-policy", "all"), "write model_version_policy { ... } in a "
                                        "--model_config_file"),
    (("--host", "10.0.0.1"), "--host 10.0.0.1: tensorflow_model_server has no --host"),
    (("--file_system_poll_wait_seconds=0.5",),
     "--file_system_poll_wait_seconds must be whole seconds for tensorflow_model_server. "
     "Received: 0.5"),
])
def test_tfinetune_only_options_are_refused(fake_binary, flags, message):
    bin_dir, record = fake_binary
    result = serve(*ENGINE, "--model-base-path", "/models/sentiment", *flags,
                   path=path_with(bin_dir))

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not record.exists()


def test_latest_version_policy_is_tf_servings_default_and_accepted(fake_binary):
    bin_dir, record = fake_binary
    result = serve(*ENGINE, "--model-base-path", "/models/s", "--model-version-policy", "latest",
                   path=path_with(bin_dir))

    assert result.returncode == 3, result.stderr
    assert record.read_text().splitlines()[1:] == ["--model_base_path=/models/s"]


def test_a_model_is_required(fake_binary):
    bin_dir, record = fake_binary
    result = serve(*ENGINE, "--port", "9000", path=path_with(bin_dir))

    assert result.returncode == 2
    assert "Missing --model-base-path (or --model-config-file)" in result.stderr
    assert not record.exists()
