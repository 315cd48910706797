"""Warm-up: `assets.extra/tf_serving_warmup_requests` is replayed (`--enable_model_warmup`,
`--num_request_iterations_for_warmup` times) before a version becomes AVAILABLE, with TF
Serving's limits and texts. The counter model makes the replay visible as state."""

from __future__ import annotations

import logging
import shutil

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving import ServingError
from serving.model_warmup import ModelWarmup
from tests.serving.lifecycle_models import build_counter_model
from tests.serving.lifecycle_models import build_half_plus_two_heads
from tests.serving.lifecycle_models import predict_log
from tests.serving.lifecycle_models import write_warmup_requests
from tests.serving.models import predict_request
from tests.serving.models import tfserving_testdata

INCR = predict_log(signature="incr_counter")


@pytest.fixture(scope="module")
def counter_source(tmp_path_factory):
    return build_counter_model(tmp_path_factory.mktemp("counter") / "1")


@pytest.fixture
def counter_base(tmp_path, counter_source):
    """A fresh copy of the counter model as version 1 of a base path."""
    base = tmp_path / "counter"
    shutil.copytree(counter_source, base / "1")
    return base


def counter_value(server, name="counter", version=None) -> float:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            predict_request(name, {}, signature="get_counter", version=version), timeout=30)
    return float(np.ravel(response.outputs["output"].float_val)[0])


def serve(base, name="counter", **options) -> Server:
    return Server({name: base}, port=0, file_system_poll_wait_seconds=0, **options).start()


def start_error(base, **options) -> ServingError:
    with pytest.raises(ServingError) as raised:
        serve(base, **options)
    return raised.value


def test_warmup_requests_are_replayed_before_the_first_request(counter_base):
    write_warmup_requests(counter_base / "1", [INCR, INCR, INCR])
    server = serve(counter_base)
    try:
        assert counter_value(server) == 3.0
    finally:
        server.stop(grace=5)


def test_each_record_is_replayed_num_request_iterations_times(counter_base):
    write_warmup_requests(counter_base / "1", [
        INCR, predict_log(signature="incr_counter_by", inputs={"delta": np.float32(10)})])
    server = serve(counter_base, num_request_iterations_for_warmup=3)
    try:
        assert counter_value(server) == 33.0
    finally:
        server.stop(grace=5)


def test_disabled_warmup_replays_nothing(counter_base):
    write_warmup_requests(counter_base / "1", [INCR])
    server = serve(counter_base, enable_model_warmup=False)
    try:
        assert counter_value(server) == 0.0
    finally:
        server.stop(grace=5)


def test_a_version_without_warmup_file_loads(counter_base, caplog):
    caplog.set_level(logging.INFO, logger="serving.model_warmup")
    server = serve(counter_base)
    server.stop(grace=5)

    assert (f"No warmup data file found at {counter_base / '1' / 'assets.extra'}"
            f"/tf_serving_warmup_requests") in caplog.text


def test_the_version_is_loading_while_it_warms_up(counter_base, monkeypatch):
    write_warmup_requests(counter_base / "1", [INCR])
    seen = []
    original = ModelWarmup.run

    def spy(self, servable):
        seen.append([(s.version, s.state.name)
                     for s in server.model_manager.version_statuses("counter")])
        return original(self, servable)

    monkeypatch.setattr(ModelWarmup, "run", spy)
    server = Server({"counter": counter_base}, port=0, file_system_poll_wait_seconds=-1)
    server.start()
    try:
        copied = shutil.copytree(counter_base / "1", counter_base / "2")
        assert copied.is_dir()
        server.model_manager.poll()
        assert counter_value(server) == 1.0  # version 2, warmed up once
    finally:
        server.stop(grace=5)

    assert seen == [[(1, "LOADING")], [(2, "LOADING"), (1, "AVAILABLE")]]


def test_classify_regress_and_multi_inference_logs_are_replayed(tmp_path, caplog):
    base = tmp_path / "heads"
    build_half_plus_two_heads(base / "1")
    logs = [prediction_log_pb2.PredictionLog() for _ in range(3)]
    for log, (kind, signature) in zip(logs, [("classify_log", "classify_x_to_y"),
                                             ("regress_log", "regress_x_to_y")]):
        request = getattr(log, kind).request
        request.model_spec.signature_name = signature
        request.input.example_list.examples.add().features.feature[
            "x"].float_list.value.append(2.0)
    multi = logs[2].multi_inference_log.request
    multi.tasks.add(method_name="tensorflow/serving/regress").model_spec.signature_name = (
        "regress_x_to_y2")
    multi.tasks[0].model_spec.name = "anything"
    multi.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    path = write_warmup_requests(base / "1", [*logs, prediction_log_pb2.PredictionLog()])
    caplog.set_level(logging.INFO, logger="serving.model_warmup")

    serve(base, name="heads").stop(grace=5)

    assert (f"Finished reading warmup data for model at {path}. Number of warmup records "
            f"read: 4.") in caplog.text


@pytest.mark.parametrize("log_type, number", [("session_run_log", 5),
                                              ("predict_streamed_log", 7)])
def test_unsupported_log_types_fail_the_load(counter_base, log_type, number):
    log = prediction_log_pb2.PredictionLog()
    getattr(log, log_type).SetInParent()
    write_warmup_requests(counter_base / "1", [log])

    error = start_error(counter_base)

    assert error.code == grpc.StatusCode.UNIMPLEMENTED
    assert error.message.endswith(f": Unsupported log_type for warmup: {number}")


def test_at_most_1000_records(counter_base):
    path = write_warmup_requests(counter_base / "1", [], raw=[b""] * 1001)

    error = start_error(counter_base)

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.endswith(
        f": Number of warmup records exceeds the maximum (1000) at {path}")


def test_1000_records_are_fine(counter_base):
    write_warmup_requests(counter_base / "1", [INCR] * 1000)
    server = serve(counter_base)
    try:
        assert counter_value(server) == 1000.0
    finally:
        server.stop(grace=5)


def test_a_file_that_is_not_a_tfrecord_is_data_loss(counter_base):
    path = counter_base / "1" / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir()
    path.write_bytes(b"this is not a TFRecord file at all")

    error = start_error(counter_base)

    assert error.code == grpc.StatusCode.DATA_LOSS
    assert error.message.endswith(". Please verify your warmup data is in TFRecord format.")


def test_a_record_that_is_not_a_prediction_log(counter_base):
    record = b"\xff\xff\xff"
    path = write_warmup_requests(counter_base / "1", [], raw=[record])

    error = start_error(counter_base)

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.endswith(f": Failed to parse warmup record: {record!r} from {path}")


def test_a_failing_warmup_request_fails_the_load_with_its_error(counter_base):
    write_warmup_requests(counter_base / "1", [predict_log(signature="nope")])

    error = start_error(counter_base)

    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.message == (f"Failed to load version 1 of model 'counter' from "
                             f"{counter_base / '1'}: Serving signature key \"nope\" not found.")


def test_a_new_version_that_fails_warmup_leaves_the_old_one_serving(counter_base):
    server = Server({"counter": counter_base}, port=0, file_system_poll_wait_seconds=-1).start()
    try:
        shutil.copytree(counter_base / "1", counter_base / "2")
        multi = prediction_log_pb2.PredictionLog()
        multi.multi_inference_log.request.CopyFrom(inference_pb2.MultiInferenceRequest())
        write_warmup_requests(counter_base / "2", [multi])
        server.model_manager.poll()
        statuses = server.model_manager.version_statuses("counter")
        value = counter_value(server)
    finally:
        server.stop(grace=5)

    assert [(s.version, s.state.name) for s in statuses] == [(2, "END"), (1, "AVAILABLE")]
    assert (statuses[0].error.code, statuses[0].error.message) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
    assert value == 0.0


def test_tf_servings_counter_model_is_warmed_up(tmp_path):
    base = tmp_path / "counter"
    shutil.copytree(tfserving_testdata("saved_model_counter"), base)
    write_warmup_requests(base / "00000123", [INCR] * 2)
    server = serve(base, num_request_iterations_for_warmup=2)
    try:
        assert counter_value(server) == 4.0
    finally:
        server.stop(grace=5)
