"""`tfinetune serve`: start-up errors through CliRunner; a real process for serving and SIGTERM."""

from __future__ import annotations


from click.testing import CliRunner

from tests.serving.serve_process import ServeProcess
from tfinetune.cli.serve import command


def test_help_shows_tf_serving_flags_with_dashes_only():
    result = CliRunner().invoke(command, ["--help"])

    assert result.exit_code == 0
    for flag in ("--port", "--host", "--model-name", "--model-base-path",
                 "--file-system-poll-wait-seconds"):
        assert flag in result.output
    option_lines = [line for line in result.output.splitlines() if line.startswith("  --")]
    assert option_lines and not any("_" in line.split()[0] for line in option_lines)


def test_missing_base_path_is_a_clear_error(tmp_path):
    base = tmp_path / "absent"

    result = CliRunner().invoke(command, ["--model_name=m", f"--model_base_path={base}"])

    assert result.exit_code == 1
    assert (f"Error: Cannot serve model 'm' from {base}: Could not find base path {base} for "
            f"servable m") in result.output


def test_base_path_without_versions_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(command, ["--model-base-path", str(tmp_path)])

    assert result.exit_code == 1
    assert f"Cannot serve model 'default' from {tmp_path}: No versions of servable default" in (
        result.output)


def test_model_base_path_is_required():
    result = CliRunner().invoke(command, [])

    assert result.exit_code == 2
    assert "--model-base-path" in result.output


def test_serves_until_sigterm_then_exits_cleanly(model_bases):
    """A real `serve` process, launched with TF Serving's underscore flags."""
    from serving import Client

    with ServeProcess("--port=0", "--model_name=text", f"--model_base_path={model_bases['text']}",
                      "--file_system_poll_wait_seconds=0") as serve:
        address = serve.wait_for(r"Serving model 'text' version 1 on (\S+)").group(1)
        with Client(address, "text") as client:
            assert client.predict(["good"])[0].label == "positive"
        assert serve.stop() == 0
        assert "Server stopped." in serve.rest_of_output()


def test_model_version_policy_all_serves_every_version_directory(model_bases):
    with ServeProcess("--port=0", "--model-name=tf2", f"--model-base-path={model_bases['tf2']}",
                      "--model-version-policy=all",
                      "--file-system-poll-wait-seconds=0") as serve:
        serve.wait_for(r"Serving model 'tf2' versions 2, 1 on")
        assert serve.stop() == 0


def test_bad_model_version_policy_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(command, ["--model-base-path", str(tmp_path),
                                          "--model-version-policy", "newest"])
    assert result.exit_code == 2
    assert "--model-version-policy" in result.output and "'newest'" in result.output


def test_tf_serving_boolean_and_ignored_flags_are_accepted(tmp_path):
    """`--enable_batching=false`, `--enable_model_warmup=true` and flags that mean nothing
    here (profiler, GPU memory) parse; the run then stops at the missing base path."""
    base = tmp_path / "absent"
    result = CliRunner().invoke(command, [
        "--model_name=m", f"--model_base_path={base}", "--enable_batching=false",
        "--enable_model_warmup=true", "--enable_profiler=true",
        "--per_process_gpu_memory_fraction=0.5", "--rest_api_timeout_in_ms=5000"])
    assert result.exit_code == 1, result.output
    assert "Could not find base path" in result.output


def test_server_option_conflicts_are_usage_errors(tmp_path):
    result = CliRunner().invoke(command, [f"--model-base-path={tmp_path}", "--port=8600",
                                          "--rest-api-port=8600"])
    assert result.exit_code == 2
    assert "rest_api_port must differ from the gRPC port" in result.output
    result = CliRunner().invoke(command, [f"--model-base-path={tmp_path}",
                                          "--batching_parameters_file=b.txt"])
    assert result.exit_code == 2
    assert ("server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.") in result.output
