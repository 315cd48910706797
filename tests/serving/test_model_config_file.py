"""`--model_config_file`: per-model version policies and labels, start-up errors with TF Serving's
texts (also through `tfinetune serve`), and `--model_config_file_poll_wait_seconds` reloads."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving import ServingError
from tests.serving.lifecycle_models import versions_by_state
from tests.serving.lifecycle_models import write_model_config
from tests.serving.models import TESTDATA
from tests.serving.models import predict_request
from tests.serving.models import rpc_error
from tests.serving.models import tfserving_testdata
from tests.serving.serve_process import ServeProcess
from tfinetune.cli.serve import command

X = np.array([3.0], np.float32)


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def start(config: Path, **options) -> Server:
    return Server(port=0, model_config_file=str(config), file_system_poll_wait_seconds=0,
                  **options).start()


class Stubs:
    def __init__(self, server: Server):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel).Predict
        self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def version(self, name, **spec) -> int:
        return self.predict(predict_request(name, {"x": X}, **spec),
                            timeout=30).model_spec.version.value

    def serving(self) -> bool:
        return self.health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == (
            health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def policies(tmp_path_factory, model_bases):
    """A server of one config file: the tf2 model (versions 1 and 2) under five policies, and
    `labelled` (both versions, labels stable -> 1 and canary -> 2)."""
    tf2 = model_bases["tf2"]
    config = write_model_config(tmp_path_factory.mktemp("config") / "models.config", [
        {"name": "default_policy", "base_path": tf2},
        {"name": "latest_2", "base_path": tf2, "policy": ("latest", 2)},
        {"name": "all", "base_path": tf2, "policy": "all"},
        {"name": "only_1", "base_path": tf2, "policy": ("specific", [1])},
        {"name": "half", "base_path": model_bases["half"]},
        {"name": "labelled", "base_path": tf2, "policy": ("specific", [1, 2]),
         "labels": {"stable": 1, "canary": 2}},
    ])
    server = start(config)
    stubs = Stubs(server)
    yield server, stubs
    stubs.channel.close()
    server.stop(grace=5)


@pytest.mark.parametrize("name, expected", [
    ("default_policy", [(2, "AVAILABLE")]),
    ("latest_2", [(2, "AVAILABLE"), (1, "AVAILABLE")]),
    ("all", [(2, "AVAILABLE"), (1, "AVAILABLE")]),
    ("only_1", [(1, "AVAILABLE")]),
])
def test_each_model_has_its_own_version_policy(policies, name, expected):
    _, stubs = policies

    assert versions_by_state(stubs.model, name) == expected
    assert stubs.version(name) == expected[0][0]


def test_version_labels_pick_the_version(policies):
    _, stubs = policies

    assert stubs.version("labelled", version_label="stable") == 1
    assert stubs.version("labelled", version_label="canary") == 2
    assert stubs.version("labelled") == 2
    y = stubs.predict(predict_request("labelled", {"x": X}, version_label="stable"), timeout=30)
    assert list(y.outputs["y"].float_val) == [3.0]  # version 1: y = 1 * x


def test_unknown_label_is_tf_servings_invalid_argument(policies):
    _, stubs = policies

    assert rpc_error(stubs.predict, predict_request("labelled", {"x": X},
                                                    version_label="nope")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope")
    assert rpc_error(stubs.predict, predict_request("half", {"x": X},
                                                    version_label="stable")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: stable")


def test_get_model_status_ignores_the_version_label(policies):
    from tensorflow_serving.apis import get_model_status_pb2

    _, stubs = policies
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "labelled"
    request.model_spec.version_label = "stable"

    response = stubs.model.GetModelStatus(request, timeout=30)

    assert [s.version for s in response.model_version_status] == [2, 1]


def test_labels_are_queryable_on_the_manager(policies):
    server, _ = policies

    assert server.model_manager.version_labels("labelled") == {"stable": 1, "canary": 2}
    assert server.model_manager.model_names == [
        "default_policy", "latest_2", "all", "only_1", "half", "labelled"]


# -- start-up errors -------------------------------------------------------------------------


def start_error(config: Path, **options) -> ServingError:
    with pytest.raises(ServingError) as raised:
        start(config, **options)
    return raised.value


def test_a_label_on_a_version_the_policy_does_not_serve_fails_start(tmp_path, model_bases):
    config = write_model_config(tmp_path / "models.config", [
        {"name": "m", "base_path": model_bases["tf2"], "policy": ("specific", [1]),
         "labels": {"stable": 1, "canary": 2}}])

    error = start_error(config)

    assert (error.code, error.message) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "Request to assign label to version 2 of model m, which is not currently available "
        "for inference")


def test_allow_version_labels_for_unavailable_models_lets_it_start(tmp_path, model_bases):
    config = write_model_config(tmp_path / "models.config", [
        {"name": "m", "base_path": model_bases["tf2"], "policy": ("specific", [1]),
         "labels": {"stable": 1, "canary": 2}}])
    server = start(config, allow_version_labels_for_unavailable_models=True)
    stubs = Stubs(server)
    try:
        assert stubs.version("m", version_label="stable") == 1
        assert rpc_error(stubs.predict, predict_request("m", {"x": X},
                                                        version_label="canary")) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(m, 2)")
    finally:
        stubs.channel.close()
        server.stop(grace=5)


@pytest.mark.parametrize("models, code, message", [
    ([{"name": "m", "base_path": "BASE", "platform": "pytorch"}],
     grpc.StatusCode.INVALID_ARGUMENT, "Model m requests unsupported platform pytorch"),
    ([{"name": "m", "base_path": "BASE"}, {"name": "m", "base_path": "BASE"}],
     grpc.StatusCode.INVALID_ARGUMENT, "Illegal to list model m multiple times in config list"),
    ([{"name": "m", "base_path": "relative/m"}],
     grpc.StatusCode.INVALID_ARGUMENT,
     "Expected model m to have an absolute path or URI; got base_path()=relative/m"),
], ids=["platform", "duplicate", "relative"])
def test_invalid_configs_fail_start(tmp_path, model_bases, models, code, message):
    models = [{**m, "base_path": str(model_bases["half"]) if m["base_path"] == "BASE"
               else m["base_path"]} for m in models]
    config = write_model_config(tmp_path / "models.config", models)

    error = start_error(config)

    assert (error.code, error.message) == (code, message)


def test_a_bad_config_file_is_a_clear_cli_error(tmp_path):
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'm' base_path: '/m' ")

    result = CliRunner().invoke(command, [f"--model_config_file={config}"])

    assert result.exit_code == 1
    assert (f"Error: Cannot serve models of {config}: Invalid protobuf file: '{config}'"
            in result.output)


def test_tf_servings_bad_model_config_through_the_cli():
    config = TESTDATA / "bad_model_config.txt"
    if not config.is_file():
        pytest.skip(f"TF Serving testdata {config} is absent")

    result = CliRunner().invoke(command, ["--model-config-file", str(config), "--port=0"])

    assert result.exit_code == 1
    assert f"Invalid protobuf file: '{config}'" in result.output


def test_cli_refuses_a_label_on_an_unavailable_version(tmp_path, model_bases):
    config = write_model_config(tmp_path / "models.config", [
        {"name": "m", "base_path": model_bases["tf2"], "policy": ("specific", [2]),
         "labels": {"old": 1}}])

    result = CliRunner().invoke(command, [f"--model_config_file={config}", "--port=0",
                                          "--file_system_poll_wait_seconds=0"])

    assert result.exit_code == 1
    assert ("Request to assign label to version 1 of model m, which is not currently available "
            "for inference") in result.output


def test_serve_command_serves_every_model_of_the_config_file(tmp_path, model_bases):
    config = write_model_config(tmp_path / "models.config", [
        {"name": "half", "base_path": model_bases["half"]},
        {"name": "tf2", "base_path": model_bases["tf2"], "policy": "all"}])
    with ServeProcess("--port=0", f"--model_config_file={config}",
                      "--file_system_poll_wait_seconds=0",
                      "--model_config_file_poll_wait_seconds=30") as serve:
        served = [serve.wait_for(r"Serving model '(\w+)' versions? ([\d, ]+) on").groups()
                  for _ in range(2)]
        assert served == [("half", "1"), ("tf2", "2, 1")]
        assert serve.stop() == 0


# -- --model_config_file_poll_wait_seconds ----------------------------------------------------


def test_polling_the_config_file_adds_removes_and_relabels_models(tmp_path, model_bases, caplog):
    config = write_model_config(tmp_path / "models.config", [
        {"name": "half", "base_path": model_bases["half"]}])
    server = start(config, model_config_file_poll_wait_seconds=0.1)
    stubs = Stubs(server)
    try:
        write_model_config(config, [
            {"name": "half", "base_path": model_bases["half"]},
            {"name": "tf2", "base_path": model_bases["tf2"], "policy": "all"}])
        wait_for(lambda: versions_by_state(stubs.model, "tf2") == [
            (2, "AVAILABLE"), (1, "AVAILABLE")])

        write_model_config(config, [
            {"name": "tf2", "base_path": model_bases["tf2"], "policy": "all",
             "labels": {"stable": 1}}])
        wait_for(lambda: versions_by_state(stubs.model, "half") == [(1, "END")])
        assert rpc_error(stubs.predict, predict_request("half", {"x": X})) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(half)")
        assert stubs.version("tf2", version_label="stable") == 1
        assert server.model_manager.model_names == ["tf2"]
        assert stubs.serving()

        config.write_text("model_config_list { not valid")
        wait_for(lambda: any("Failed to read ModelServerConfig file: Invalid protobuf file"
                             in r.getMessage() for r in caplog.records))
        assert stubs.version("tf2", version_label="stable") == 1

        write_model_config(config, [
            {"name": "tf2", "base_path": model_bases["tf2"], "policy": "all",
             "labels": {"stable": 2}}])
        wait_for(lambda: server.model_manager.version_labels("tf2") == {"stable": 2})
        assert stubs.version("tf2", version_label="stable") == 2
    finally:
        stubs.channel.close()
        server.stop(grace=5)


def test_a_polled_config_that_is_refused_leaves_the_models_as_they_were(tmp_path, model_bases,
                                                                        caplog):
    config = write_model_config(tmp_path / "models.config", [
        {"name": "tf2", "base_path": model_bases["tf2"], "policy": ("specific", [1])}])
    server = start(config, model_config_file_poll_wait_seconds=0.1)
    try:
        # Version 2 is not loaded yet: TF Serving refuses to label it in the same change.
        write_model_config(config, [
            {"name": "tf2", "base_path": model_bases["tf2"], "policy": ("specific", [1, 2]),
             "labels": {"canary": 2}}])
        wait_for(lambda: any("PollFilesystemAndReloadConfig failed to ReloadConfig: Request to "
                             "assign label to version 2 of model tf2" in r.getMessage()
                             for r in caplog.records))
        assert server.available_versions("tf2") == [1]
        assert server.model_manager.version_labels("tf2") == {}
    finally:
        server.stop(grace=5)


# -- TF Serving's own testdata ----------------------------------------------------------------


def test_tf_servings_good_model_config_serves_half_plus_two_and_half_plus_three(tmp_path):
    template = TESTDATA / "good_model_config.txt"
    if not template.is_file():
        pytest.skip(f"TF Serving testdata {template} is absent")
    config = tmp_path / "good_model_config.txt"
    config.write_text(template.read_text()
                      .replace("${TEST_HALF_PLUS_TWO_DIR}",
                               str(tfserving_testdata("saved_model_half_plus_two_cpu")))
                      .replace("${TEST_HALF_PLUS_THREE_DIR}",
                               str(tfserving_testdata("saved_model_half_plus_three"))))
    server = start(config)
    stubs = Stubs(server)
    try:
        two = stubs.predict(predict_request("half_plus_two", {"x": np.array([2.0], np.float32)}),
                            timeout=30)
        three = stubs.predict(predict_request("half_plus_three",
                                              {"x": np.array([2.0], np.float32)}), timeout=30)
    finally:
        stubs.channel.close()
        server.stop(grace=5)

    assert (list(two.outputs["y"].float_val), list(three.outputs["y"].float_val)) == (
        [3.0], [4.0])
    assert two.model_spec.version.value == three.model_spec.version.value == 123


def test_tf_servings_two_versions_under_each_policy_and_labels(tmp_path):
    base = tfserving_testdata("saved_model_half_plus_two_2_versions")
    config = write_model_config(tmp_path / "models.config", [
        {"name": "latest", "base_path": base},
        {"name": "latest_2", "base_path": base, "policy": ("latest", 2)},
        {"name": "all", "base_path": base, "policy": "all"},
        {"name": "specific", "base_path": base, "policy": ("specific", [123]),
         "labels": {"stable": 123}},
        {"name": "labelled", "base_path": base, "policy": "all",
         "labels": {"stable": 123, "canary": 124}}])
    server = start(config)
    stubs = Stubs(server)
    try:
        served = {name: [v for v, _ in versions_by_state(stubs.model, name)]
                  for name in ("latest", "latest_2", "all", "specific")}
        labelled = (stubs.version("labelled", version_label="stable"),
                    stubs.version("labelled", version_label="canary"),
                    stubs.version("specific", version_label="stable"))
    finally:
        stubs.channel.close()
        server.stop(grace=5)

    assert served == {"latest": [124], "latest_2": [124, 123], "all": [124, 123],
                      "specific": [123]}
    assert labelled == (123, 124, 123)
