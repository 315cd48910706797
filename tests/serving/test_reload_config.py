"""`ModelService.HandleReloadConfigRequest`: replaces the model list (models left out unloaded,
new ones loaded before the call returns), updates policies and labels, and refuses bad configs
with TF Serving's texts, both as the RPC status and in `response.status`."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving.model_servicer import ModelServicer
from tests.serving.lifecycle_models import reload_request
from tests.serving.lifecycle_models import versions_by_state
from tests.serving.models import predict_request
from tests.serving.models import rpc_error

X = np.array([3.0], np.float32)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


class Running:
    """A server plus stubs over a real channel."""

    def __init__(self, server: Server):
        self.server = server
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel).Predict

    def reload(self, models):
        return self.model.HandleReloadConfigRequest(reload_request(models), timeout=120)

    def reload_error(self, models) -> tuple[grpc.StatusCode, str]:
        return rpc_error(self.model.HandleReloadConfigRequest, reload_request(models))

    def version(self, name, **spec) -> int:
        return self.predict(predict_request(name, {"x": X}, **spec),
                            timeout=30).model_spec.version.value

    def states(self, name):
        return versions_by_state(self.model, name)


@pytest.fixture
def running(model_bases):
    """A server started with `half`, on the command-line path (no config file)."""
    server = Server({"half": model_bases["half"]}, port=0,
                    file_system_poll_wait_seconds=0).start()
    running = Running(server)
    yield running
    running.channel.close()
    server.stop(grace=5)


def test_reload_replaces_the_model_list_and_returns_once_new_models_are_available(
        running, model_bases):
    response = running.reload([{"name": "tf2", "base_path": model_bases["tf2"],
                                "policy": "all"}])

    assert response.status.error_code == 0 and not response.status.error_message
    assert running.states("tf2") == [(2, "AVAILABLE"), (1, "AVAILABLE")]  # no waiting
    assert running.states("half") == [(1, "END")]
    assert rpc_error(running.predict, predict_request("half", {"x": X})) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(half)")
    assert running.server.model_manager.model_names == ["tf2"]


def test_a_removed_model_can_come_back(running, model_bases):
    running.reload([{"name": "tf2", "base_path": model_bases["tf2"]}])
    running.reload([{"name": "half", "base_path": model_bases["half"]}])

    assert running.states("half") == [(1, "AVAILABLE")]
    assert running.version("half") == 1


def test_reload_changes_policies_and_moves_labels(running, model_bases):
    tf2 = model_bases["tf2"]
    running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [1]),
                     "labels": {"stable": 1}}])
    assert running.states("tf2") == [(1, "AVAILABLE")]
    assert running.version("tf2", version_label="stable") == 1

    running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [1, 2]),
                     "labels": {"stable": 1}}])
    assert running.states("tf2") == [(2, "AVAILABLE"), (1, "AVAILABLE")]

    running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [1, 2]),
                     "labels": {"stable": 2, "previous": 1}}])
    assert running.version("tf2", version_label="stable") == 2
    assert running.version("tf2", version_label="previous") == 1

    running.reload([{"name": "tf2", "base_path": tf2, "policy": ("latest", 1),
                     "labels": {"stable": 2}}])
    assert running.states("tf2") == [(2, "AVAILABLE"), (1, "END")]
    assert rpc_error(running.predict, predict_request("tf2", {"x": X},
                                                      version_label="previous")) == (
        INVALID, "Unrecognized servable version label: previous")


def test_labelling_a_version_that_is_not_available_is_refused(running, model_bases):
    tf2 = model_bases["tf2"]
    running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [1])}])

    # Loading version 2 and labelling it in the same change: TF Serving refuses it.
    error = running.reload_error([{"name": "tf2", "base_path": tf2,
                                   "policy": ("specific", [1, 2]), "labels": {"canary": 2}}])

    assert error == (grpc.StatusCode.FAILED_PRECONDITION,
                     "Request to assign label to version 2 of model tf2, which is not currently "
                     "available for inference")
    assert running.states("tf2") == [(1, "AVAILABLE")]  # nothing changed


def test_a_new_model_may_be_labelled_with_a_version_it_loads(running, model_bases):
    running.reload([{"name": "tf2", "base_path": model_bases["tf2"], "policy": "all",
                     "labels": {"stable": 1, "canary": 2}}])

    assert running.version("tf2", version_label="stable") == 1
    assert running.version("tf2", version_label="canary") == 2


def test_allow_flag_covers_new_labels_but_not_moving_one(model_bases):
    tf2 = model_bases["tf2"]
    server = Server({"half": model_bases["half"]}, port=0, file_system_poll_wait_seconds=0,
                    allow_version_labels_for_unavailable_models=True).start()
    running = Running(server)
    try:
        running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [1]),
                         "labels": {"stable": 1}}])
        running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [1]),
                         "labels": {"stable": 1, "next": 2}}])
        assert rpc_error(running.predict, predict_request("tf2", {"x": X},
                                                          version_label="next")) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(tf2, 2)")

        moved = running.reload_error([{"name": "tf2", "base_path": tf2,
                                       "policy": ("specific", [1]), "labels": {"stable": 2}}])
    finally:
        running.channel.close()
        server.stop(grace=5)

    assert moved == (grpc.StatusCode.FAILED_PRECONDITION,
                     "Request to assign label to version 2 of model tf2, which is not currently "
                     "available for inference")


@pytest.mark.parametrize("models, expected", [
    ([{"name": "m", "base_path": "TF2"}, {"name": "m", "base_path": "TF2"}],
     "Illegal to list model m multiple times in config list"),
    ([{"name": "m", "base_path": "models/m"}],
     "Expected model m to have an absolute path or URI; got base_path()=models/m"),
    ([{"name": "half", "base_path": "HALF", "platform": "other"}],
     "Illegal to change a model's platform. For model half platform was tensorflow and new "
     "platform requested is other"),
    ([{"name": "new", "base_path": "TF2", "platform": "other"}],
     "Model new requests unsupported platform other"),
    ([{"name": "m", "base_path": "TF2", "platform": None}],
     "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
     "ModelServerConfig::model_platform."),
], ids=["duplicate", "relative", "platform-change", "unsupported-platform", "no-platform"])
def test_invalid_configs_are_refused_and_change_nothing(running, model_bases, models, expected):
    paths = {"TF2": str(model_bases["tf2"]), "HALF": str(model_bases["half"])}
    models = [{**m, "base_path": paths.get(m["base_path"], m["base_path"])} for m in models]

    assert running.reload_error(models) == (INVALID, expected)
    assert running.server.model_manager.model_names == ["half"]
    assert running.version("half") == 1


def test_a_new_model_that_fails_to_load_is_unknown_and_stays_configured(running, tmp_path):
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")

    code, message = running.reload_error([{"name": "bad", "base_path": tmp_path / "bad"}])

    assert code == grpc.StatusCode.UNKNOWN
    assert message.startswith("1 model(s) did not become available: {{{name: bad version: 1} "
                              "due to error: ")
    assert message.endswith("}, }")
    assert running.states("bad") == [(1, "END")]
    assert running.server.model_manager.model_names == ["bad"]


def test_a_new_model_without_its_base_path_is_unknown(running, tmp_path):
    code, message = running.reload_error([{"name": "gone", "base_path": tmp_path / "gone"}])

    assert (code, message) == (
        grpc.StatusCode.UNKNOWN,
        f"1 model(s) did not become available: {{{{{{name: gone}} due to error: "
        f"INVALID_ARGUMENT: Could not find base path {tmp_path / 'gone'} for servable gone}}, }}")


class FakeContext:
    code = details = None

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


def test_errors_are_also_in_response_status(server):
    """gRPC sends only the status of a failed call; the servicer fills `response.status` too,
    as TF Serving's ModelServiceImpl does."""
    from tensorflow_serving.apis import model_management_pb2

    context = FakeContext()

    response = ModelServicer(server.model_manager).HandleReloadConfigRequest(
        model_management_pb2.ReloadConfigRequest(), context)

    message = ("ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
               "ModelConfigList is currently supported")
    assert (context.code, context.details) == (INVALID, message)
    assert (response.status.error_code, response.status.error_message) == (3, message)


def test_requests_keep_succeeding_while_a_reload_swaps_versions(running, model_bases):
    import concurrent.futures
    import threading

    tf2 = model_bases["tf2"]
    running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [1])}])
    stop = threading.Event()

    def send_requests() -> set[int]:
        seen = set()
        while not stop.is_set():
            seen.add(running.version("tf2"))
        return seen

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        clients = [pool.submit(send_requests) for _ in range(2)]
        try:
            running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [2])}])
            running.reload([{"name": "tf2", "base_path": tf2, "policy": ("specific", [1])}])
        finally:
            stop.set()
        seen = set().union(*(client.result() for client in clients))  # raises if one failed

    assert seen <= {1, 2}
    assert running.states("tf2") == [(2, "END"), (1, "AVAILABLE")]


def test_an_empty_config_file_starts_without_models_and_a_reload_adds_them(tmp_path,
                                                                           model_bases):
    config = tmp_path / "models.config"
    config.write_text("")
    server = Server(port=0, model_config_file=str(config), file_system_poll_wait_seconds=0)
    server.start()
    running = Running(server)
    try:
        assert server.model_manager.model_names == []
        running.reload([{"name": "half", "base_path": model_bases["half"]}])
        assert running.version("half") == 1
    finally:
        running.channel.close()
        server.stop(grace=5)
