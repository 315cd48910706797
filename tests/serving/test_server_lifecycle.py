"""Server start-up errors, version polling and swaps, graceful stop."""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving import ServingError
from tests.serving.models import copy_version
from tests.serving.models import predict_request

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def wait_for(condition, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def statuses(stub, name):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return stub.GetModelStatus(request, timeout=30).model_version_status


@pytest.fixture(scope="module")
def spin_base(model_bases):
    return model_bases["spin"]


def test_missing_base_path_fails_start_naming_it(tmp_path):
    with pytest.raises(ServingError) as raised:
        Server({"m": tmp_path / "absent"}, port=0).start()

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.message == f"Could not find base path {tmp_path / 'absent'} for servable m"


def test_base_path_without_integer_versions_fails_start(tmp_path):
    (tmp_path / "latest").mkdir()

    with pytest.raises(ServingError) as raised:
        Server({"m": tmp_path}, port=0).start()

    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.message.startswith(f"No versions of servable m found under base path "
                                           f"{tmp_path}. Did you forget to name your leaf")


def test_a_version_that_fails_to_load_fails_start(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")

    with pytest.raises(ServingError) as raised:
        Server({"m": tmp_path}, port=0).start()

    assert raised.value.message.startswith(
        f"Failed to load version 1 of model 'm' from {tmp_path / '1'}: ")


def test_a_port_in_use_fails_start(server, model_bases):
    with pytest.raises(ServingError) as raised:
        Server({"half": model_bases["half"]}, port=server.port).start()

    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.message.startswith(f"Failed to bind the gRPC port 127.0.0.1:{server.port}")


def test_polling_swaps_versions_without_failing_a_request(tmp_path, model_bases):
    base = tmp_path / "m"
    base.mkdir()
    copy_version(model_bases["tf2"] / "1", base, 1)  # y = 1 * x
    server = Server({"m": base}, port=0, file_system_poll_wait_seconds=0.1).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    answers, failures, stop = set(), [], threading.Event()

    def keep_predicting():
        request = predict_request("m", {"x": np.array([1.0], np.float32)})
        while not stop.is_set():
            try:
                response = predictions.Predict(request, timeout=30)
                answers.add((response.model_spec.version.value, response.outputs["y"].float_val[0]))
            except grpc.RpcError as error:
                failures.append(error)

    threads = [threading.Thread(target=keep_predicting) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: answers)
        copy_version(model_bases["tf2"] / "2", base, 2)  # y = 2 * x
        wait_for(lambda: [(s.version, s.state) for s in statuses(models, "m")] == [
            (2, AVAILABLE), (1, END)])
        time.sleep(0.3)

        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
        wait_for(lambda: statuses(models, "m")[0].state == END)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        channel.close()
        server.stop(grace=5)

    assert failures == []
    assert answers == {(1, 1.0), (2, 2.0)}
    final = server.model_manager.version_statuses("m")
    assert [(s.version, s.state.name) for s in final] == [
        (3, "END"), (2, "END"), (1, "END")]  # all unloaded by stop()
    assert final[0].error is not None and final[0].error.message


def test_failed_new_version_is_reported_and_the_old_one_keeps_serving(tmp_path, model_bases):
    base = tmp_path / "m"
    base.mkdir()
    copy_version(model_bases["tf2"] / "1", base, 1)
    server = Server({"m": base}, port=0, file_system_poll_wait_seconds=-1).start()
    try:
        (base / "5").mkdir()
        (base / "5" / "saved_model.pb").write_bytes(b"garbage")
        server.model_manager.poll()

        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            found = statuses(model_service_pb2_grpc.ModelServiceStub(channel), "m")
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict_request("m", {"x": np.array([3.0], np.float32)}), timeout=30)
    finally:
        server.stop(grace=5)

    assert [(s.version, s.state) for s in found] == [(5, END), (1, AVAILABLE)]
    assert found[0].status.error_code != 0 and found[0].status.error_message
    assert response.model_spec.version.value == 1


def states(server, name="m"):
    return [(s.version, s.state.name) for s in server.model_manager.version_statuses(name)]


def test_a_failed_version_is_retried_once_its_files_are_fixed(tmp_path, model_bases):
    base = tmp_path / "m"
    base.mkdir()
    copy_version(model_bases["tf2"] / "1", base, 1)
    server = Server({"m": base}, port=0, file_system_poll_wait_seconds=-1,
                    load_retry_interval_micros=0).start()
    try:
        broken = base / "2"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"half-copied")
        server.model_manager.poll()
        assert states(server) == [(2, "END"), (1, "AVAILABLE")]

        (broken / "saved_model.pb").unlink()
        shutil.copytree(model_bases["tf2"] / "2", broken, dirs_exist_ok=True)
        server.model_manager.poll()
        assert states(server) == [(2, "AVAILABLE"), (1, "END")]
        assert server.model_manager.version_statuses("m")[0].error is None
    finally:
        server.stop(grace=5)


def test_failed_loads_are_retried_at_most_max_num_load_retries_times(tmp_path, model_bases,
                                                                     caplog):
    base = tmp_path / "m"
    base.mkdir()
    copy_version(model_bases["tf2"] / "1", base, 1)
    server = Server({"m": base}, port=0, file_system_poll_wait_seconds=-1,
                    max_num_load_retries=2, load_retry_interval_micros=0).start()
    caplog.set_level(logging.INFO, logger="serving.model_manager")
    try:
        (base / "2").mkdir()
        (base / "2" / "saved_model.pb").write_bytes(b"garbage")
        for _ in range(5):
            server.model_manager.poll()
    finally:
        server.stop(grace=5)

    attempts = [r for r in caplog.records if r.getMessage().startswith("Loading version 2 ")]
    assert len(attempts) == 3  # the first load and 2 retries


def test_removing_every_version_unloads_the_model_and_health_says_not_serving(tmp_path,
                                                                             model_bases):
    base = tmp_path / "m"
    base.mkdir()
    copy_version(model_bases["tf2"] / "1", base, 1)
    server = Server({"m": base}, port=0, file_system_poll_wait_seconds=-1).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            before = health.Check(health_pb2.HealthCheckRequest(), timeout=30).status
            (base / "1").rename(tmp_path / "moved-away")
            server.model_manager.poll()
            after = health.Check(health_pb2.HealthCheckRequest(), timeout=30).status
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(predict_request("m", {"x": np.array([3.0], np.float32)}), timeout=30)
    finally:
        server.stop(grace=5)

    assert (before, after) == (health_pb2.HealthCheckResponse.SERVING,
                               health_pb2.HealthCheckResponse.NOT_SERVING)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "Servable not found for request: Latest(m)"


def test_stop_finishes_in_flight_requests_and_then_refuses_new_ones(spin_base):
    server = Server({"spin": spin_base}, port=0, file_system_poll_wait_seconds=0).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request("spin", {"iterations": np.int64(200_000)})
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(stub.Predict, request, timeout=120)
            wait_for(lambda: server.model_manager.requests_in_flight("spin") == 1)
            server.stop(grace=60)
            response = in_flight.result()
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=5)
    finally:
        channel.close()
        server.stop()

    assert list(response.outputs["count"].int64_val) == [200_000]
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
