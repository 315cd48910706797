"""Serving keeps serving (issue 6): version swaps under load and corrupt versions.

A real server on a free port polls its base path; new versions arrive the way `export` writes
them (a staging directory renamed into place), and clients talk to it over real gRPC channels.
The versions are tiny TF2 SavedModels computing y = factor * x, so every answer tells which
version computed it (`model_spec.version` and the factor must agree).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from tests.serving.models import build_times_model
from tests.serving.models import copy_version
from tests.serving.models import predict_request

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
CLIENTS = 16
LOAD_SECONDS = 20.0
X = np.array([1.0, 2.0], np.float32)


@pytest.fixture(scope="module")
def factors(model_bases, tmp_path_factory) -> dict[int, Path]:
    """Factor -> a version directory whose model computes y = factor * x."""
    root = tmp_path_factory.mktemp("reliability-swap")
    return {1: model_bases["tf2"] / "1", 2: model_bases["tf2"] / "2",
            3: build_times_model(root / "3", 3.0)}


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting until {what}")
        time.sleep(0.05)


def statuses(stub, name: str = "m") -> list[tuple[int, int, int, str]]:
    """(version, state, error code number, error message) of every version, highest first."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    response = stub.GetModelStatus(request, timeout=30)
    return [(s.version, s.state, s.status.error_code, s.status.error_message)
            for s in response.model_version_status]


def answer(stub) -> tuple[int, list[float]]:
    """(version that answered, y) of one Predict on the latest version."""
    response = stub.Predict(predict_request("m", {"x": X}), timeout=30)
    return response.model_spec.version.value, list(response.outputs["y"].float_val)


class LoadClient(threading.Thread):
    """One client on its own channel, sending Predicts back to back until `stop` is set."""

    def __init__(self, address: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._address = address
        self._halt = stop
        self.answers: list[tuple[int, list[float]]] = []
        self.failures: list[grpc.RpcError] = []

    def run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self._halt.is_set():
                try:
                    self.answers.append(answer(stub))
                except grpc.RpcError as error:
                    self.failures.append(error)


@pytest.mark.slow
def test_versions_swap_under_load_without_a_failed_request(tmp_path, factors):
    """16 clients send for 20 s while versions 2 and 3 are exported into the base path: no
    request fails, every answer comes from the version it names, and each client moves from
    version 1 to 2 to 3 without going back."""
    base = tmp_path / "m"
    base.mkdir()
    copy_version(factors[1], base, 1)
    server = Server({"m": base}, port=0, file_system_poll_wait_seconds=0.2).start()
    stop = threading.Event()
    clients = [LoadClient(f"127.0.0.1:{server.port}", stop) for _ in range(CLIENTS)]
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    start = time.monotonic()
    try:
        for client in clients:
            client.start()
        wait_for(lambda: all(client.answers for client in clients), "every client is answered")
        for version, at in ((2, 0.25), (3, 0.6)):
            time.sleep(max(0.0, start + at * LOAD_SECONDS - time.monotonic()))
            copy_version(factors[version], base, version)  # staging dir, then rename
            wait_for(lambda version=version: statuses(models)[0][:2] == (version, AVAILABLE),
                     f"version {version} is AVAILABLE")
        time.sleep(max(0.0, start + LOAD_SECONDS - time.monotonic()))
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
        final = statuses(models)
        channel.close()
        server.stop(grace=5)

    assert [failure.code() for client in clients for failure in client.failures] == []
    assert [(version, state) for version, state, _, _ in final] == [
        (3, AVAILABLE), (2, END), (1, END)]
    total = sum(len(client.answers) for client in clients)
    assert total > CLIENTS * LOAD_SECONDS  # the clients kept the server busy
    for client in clients:
        versions = [version for version, _ in client.answers]
        assert all(y == [version * 1.0, version * 2.0] for version, y in client.answers)
        assert versions == sorted(versions)  # never back to an older version
        assert set(versions) == {1, 2, 3}
        assert versions[-1] == 3


def truncate_saved_model(version_dir: Path) -> str:
    pb = version_dir / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    return "saved_model.pb"


def remove_variables(version_dir: Path) -> str:
    shutil.rmtree(version_dir / "variables")
    return "variables"


@pytest.mark.parametrize("corrupt, code", [
    (truncate_saved_model, grpc.StatusCode.DATA_LOSS),
    (remove_variables, grpc.StatusCode.NOT_FOUND),
], ids=["truncated_saved_model_pb", "missing_variables"])
def test_a_corrupt_version_is_reported_the_previous_keeps_answering_and_a_good_one_loads(
        tmp_path, factors, corrupt, code):
    base = tmp_path / "m"
    base.mkdir()
    copy_version(factors[1], base, 1)
    server = Server({"m": base}, port=0, file_system_poll_wait_seconds=0.1).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            models = model_service_pb2_grpc.ModelServiceStub(channel)
            predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            staging = tmp_path / "staging"
            shutil.copytree(factors[2], staging)
            broken_part = corrupt(staging)
            staging.rename(base / "2")
            wait_for(lambda: statuses(models)[0][:2] == (2, END), "version 2 failed to load")
            time.sleep(0.3)  # a few more polls: nothing changes
            failed = statuses(models)
            during = answer(predictions)

            copy_version(factors[3], base, 3)
            wait_for(lambda: statuses(models)[0][:2] == (3, AVAILABLE), "version 3 loaded")
            wait_for(lambda: statuses(models)[-1][:2] == (1, END), "version 1 unloaded")
            after = statuses(models)
            latest = answer(predictions)
    finally:
        server.stop(grace=5)

    (version, state, error_code, message), previous = failed
    assert (version, state) == (2, END)
    assert error_code == code.value[0]
    assert broken_part in message and str(base / "2") in message
    assert previous == (1, AVAILABLE, 0, "")
    assert during == (1, [1.0, 2.0])
    assert [(v, s) for v, s, _, _ in after] == [(3, AVAILABLE), (2, END), (1, END)]
    assert after[0][2:] == (0, "") and after[1][2] == error_code  # 2 keeps its error
    assert latest == (3, [3.0, 6.0])
