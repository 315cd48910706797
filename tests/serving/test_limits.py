"""gRPC limits and options: --grpc_socket_path, --grpc_max_message_bytes, --grpc_max_threads,
request deadlines (the session run is cancelled), --enable_serialization_as_tensor_content and
--enable_signature_method_name_check. Real servers on free ports."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from serving import Client
from serving import Server
from serving import ServingError
from serving import tensor_codec
from tests.serving.gate_model import build_gate_model
from tests.serving.gate_model import release_request
from tests.serving.models import predict_request
from tests.serving.models import rpc_error

TIMEOUT = 20


@pytest.fixture(scope="module")
def bases(model_bases, tmp_path_factory):
    root = tmp_path_factory.mktemp("limits-models")
    build_gate_model(root / "gate" / "1")
    return {**model_bases, "gate": root / "gate"}


@contextlib.contextmanager
def serving(models: dict, **options):
    """A started server and a channel to its TCP port."""
    server = Server(models, port=0, file_system_poll_wait_seconds=0, **options).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, channel
    finally:
        channel.close()
        server.stop(grace=2)


def prediction_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def half_y(channel, x=((2.0,),)) -> list[float]:
    request = predict_request("half", {"x": np.asarray(x, np.float32)})
    response = prediction_stub(channel).Predict(request, timeout=TIMEOUT)
    return tf.make_ndarray(response.outputs["y"]).ravel().tolist()


def socket_path() -> Path:
    # Short and unique: a UNIX socket path must fit in 108 bytes, so not under pytest's tmp.
    return Path("/tmp") / f"tfinetune-test-{uuid.uuid4().hex[:12]}.sock"


def wait_until(condition, what: str, seconds: float = TIMEOUT) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"Timed out waiting until {what}")
        time.sleep(0.01)
    return time.monotonic() - start


# -- --grpc_socket_path --------------------------------------------------------------------------


def test_grpc_socket_path_serves_on_a_unix_socket_too(bases):
    path = socket_path()
    with serving({"half": bases["half"]}, grpc_socket_path=str(path)) as (_, tcp):
        with grpc.insecure_channel(f"unix:{path}") as unix:
            assert half_y(unix) == [3.0]
        assert half_y(tcp) == [3.0]
        assert path.is_socket()
    assert not path.exists()  # removed when the server stops


def test_a_stale_socket_is_replaced(bases):
    path = socket_path()
    stale = socket.socket(socket.AF_UNIX)  # a socket file left by a server that crashed
    stale.bind(str(path))
    stale.close()
    try:
        with serving({"half": bases["half"]}, grpc_socket_path=str(path)):
            with grpc.insecure_channel(f"unix:{path}") as unix:
                assert half_y(unix) == [3.0]
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("kind", ["missing-directory", "regular-file"])
def test_unusable_socket_path_is_a_startup_error(bases, tmp_path, kind):
    path = tmp_path / "missing-directory" / "s.sock"
    if kind == "regular-file":  # never deleted to make room for the socket
        path = tmp_path / "data.txt"
        path.write_text("not a socket")
    server = Server({"half": bases["half"]}, port=0, grpc_socket_path=str(path))

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.message.startswith(f"Failed to bind the gRPC UNIX socket {path}")
    assert server.model_manager.available_versions("half") == []  # unloaded again
    assert kind != "regular-file" or path.read_text() == "not a socket"


# -- --grpc_max_message_bytes --------------------------------------------------------------------


def test_requests_over_grpc_max_message_bytes_are_refused(bases):
    with serving({"half": bases["half"]}, grpc_max_message_bytes=1024) as (_, channel):
        assert half_y(channel, np.ones((10, 1))) == [2.5] * 10
        code, message = rpc_error(prediction_stub(channel).Predict, predict_request(
            "half", {"x": np.ones((1000, 1), np.float32)}))

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in message and "1024" in message


def test_responses_over_grpc_max_message_bytes_are_refused(bases):
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half"  # a request of a few bytes, a response of ~900
    with serving({"half": bases["half"]}, grpc_max_message_bytes=600) as (_, channel):
        code, _ = rpc_error(prediction_stub(channel).GetModelMetadata, request)

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_client_raises_its_own_receive_limit(bases):
    texts = [f"good film {i}" for i in range(150_000)]  # a response of ~6 MB
    with serving({"text": bases["text"]}) as (server, channel):
        code, message = rpc_error(prediction_stub(channel).Predict, predict_request(
            "text", {"text": np.array([t.encode() for t in texts], dtype=object)}))
        with Client(f"127.0.0.1:{server.port}", "text", timeout=60) as client:
            predictions = client.predict(texts)

    # A default gRPC channel stops at 4 MB (tensorflow/serving#1382); serving.Client does not.
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "4194304" in message
    assert len(predictions) == len(texts) and predictions[-1].label == "positive"


# -- deadlines -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model, inputs", [
    ("spin", {"iterations": np.array(10**12, np.int64)}),  # busy for hours, unless cancelled
    ("gate", {"x": np.array([1.0], np.float32)}),  # waits for a token that never comes
], ids=["busy", "blocked"])
def test_an_expired_request_stops_its_session_run(bases, model, inputs):
    with serving({model: bases[model]}) as (server, channel):
        with pytest.raises(grpc.RpcError) as raised:
            prediction_stub(channel).Predict(predict_request(model, inputs), timeout=0.5)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The run is cancelled at the deadline instead of running on.
        wait_until(lambda: server.model_manager.requests_in_flight(model) == 0,
                   "the expired run stops", seconds=10)


def test_the_deadline_is_the_session_run_timeout(bases):
    from serving.request_deadline import RequestDeadline

    with serving({"gate": bases["gate"]}) as (server, _):
        spec = predict_request("gate").model_spec
        with server.model_manager.servable(spec) as servable, RequestDeadline.scope(0.2):
            start = time.monotonic()
            with pytest.raises(ServingError) as raised:
                servable.predict(predict_request("gate", {"x": np.array([1.0], np.float32)}))
            elapsed = time.monotonic() - start

    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert raised.value.message.startswith("Timed out waiting for notification")
    assert 0.15 < elapsed < 5


def test_a_request_past_its_deadline_does_not_run(bases):
    from serving.request_deadline import RequestDeadline

    with serving({"half": bases["half"]}) as (server, _):
        spec = predict_request("half").model_spec
        with server.model_manager.servable(spec) as servable, RequestDeadline.scope(0):
            with pytest.raises(ServingError) as raised:
                servable.predict(predict_request("half", {"x": np.array([[1.0]], np.float32)}))

    assert (raised.value.code, raised.value.message) == (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                         "Deadline Exceeded")


# -- --grpc_max_threads --------------------------------------------------------------------------


@pytest.mark.parametrize("max_threads, status_served", [(1, False), (None, True)])
def test_grpc_max_threads_bounds_concurrent_rpcs(bases, max_threads, status_served):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "gate"
    with serving({"gate": bases["gate"]}, grpc_max_threads=max_threads) as (server, channel), \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        stub = prediction_stub(channel)
        blocked = pool.submit(stub.Predict, predict_request(
            "gate", {"x": np.array([1.0], np.float32)}), timeout=1.5)
        wait_until(lambda: server.model_manager.requests_in_flight("gate") == 1,
                   "the blocked Predict holds its worker thread")
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
        if status_served:
            assert status(request, timeout=1).model_version_status[0].version == 1
            stub.Predict(release_request("gate", [1.0]), timeout=TIMEOUT)
            blocked.result()
        else:
            with pytest.raises(grpc.RpcError) as raised:
                status(request, timeout=0.5)
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(grpc.RpcError):
                blocked.result()  # its own deadline frees the thread
            assert status(request, timeout=TIMEOUT).model_version_status[0].version == 1


# -- --enable_serialization_as_tensor_content ----------------------------------------------------


def test_outputs_as_tensor_content(bases):
    with serving({"half": bases["half"], "tf2": bases["tf2"]},
                 enable_serialization_as_tensor_content=True) as (_, channel):
        stub = prediction_stub(channel)
        y = stub.Predict(predict_request("half", {"x": np.array([[2.0], [4.0]], np.float32)}),
                         timeout=TIMEOUT).outputs["y"]
        greet = stub.Predict(predict_request(
            "tf2", {"name": np.array([b"ann", "zoë".encode()], dtype=object)},
            signature="greet"), timeout=TIMEOUT).outputs

    assert y.tensor_content and not y.float_val
    assert tf.make_ndarray(y).tolist() == [[3.0], [4.0]]
    greeting = greet["greeting"]
    assert greeting.tensor_content and not greeting.string_val
    # TF's own decoder reads it (TF Serving encodes strings with EncodeStringList).
    assert tf.io.parse_tensor(greeting.SerializeToString(), tf.string).numpy().tolist() == [
        b"hello ann", "hello zoë".encode()]
    assert tensor_codec.to_ndarray(greeting).tolist() == [b"hello ann", "hello zoë".encode()]
    assert tf.make_ndarray(greet["length"]).tolist() == [3, 4]


def test_outputs_use_typed_fields_by_default(bases):
    with serving({"half": bases["half"]}) as (_, channel):
        y = prediction_stub(channel).Predict(predict_request(
            "half", {"x": np.array([[2.0]], np.float32)}), timeout=TIMEOUT).outputs["y"]

    assert list(y.float_val) == [3.0] and not y.tensor_content


# -- --enable_signature_method_name_check --------------------------------------------------------


def _example_input(request) -> None:
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(2.0)


def test_signature_method_name_check(bases):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half"
    _example_input(classify)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half"
    _example_input(regress)
    odd = predict_request("gate", {"x": np.array([1.0], np.float32)}, signature="odd_method")
    with serving({"half": bases["half"], "gate": bases["gate"]},
                 enable_signature_method_name_check=True) as (_, channel):
        stub = prediction_stub(channel)
        odd_error = rpc_error(stub.Predict, odd)
        classify_error = rpc_error(stub.Classify, classify)
        regress_error = rpc_error(stub.Regress, regress)
        classify.model_spec.signature_name = "classify_x_to_y"
        scores = stub.Classify(classify, timeout=TIMEOUT).result.classifications[0].classes
        regress.model_spec.signature_name = "regress_x_to_y"
        value = stub.Regress(regress, timeout=TIMEOUT).result.regressions[0].value

    assert odd_error == (grpc.StatusCode.INTERNAL,
                         "Expected prediction signature method_name to be one of "
                         "{tensorflow/serving/predict, tensorflow/serving/classify, "
                         "tensorflow/serving/regress}. Was: custom/method")
    assert classify_error == (grpc.StatusCode.INVALID_ARGUMENT,
                              "Expected classification signature method_name to be "
                              "tensorflow/serving/classify. Was: tensorflow/serving/predict")
    assert regress_error == (grpc.StatusCode.INVALID_ARGUMENT,
                             "Expected regression signature method_name to be "
                             "tensorflow/serving/regress. Was: tensorflow/serving/predict")
    assert [c.score for c in scores] == [3.0, 6.0] and value == 3.0


def test_without_the_check_any_method_name_predicts(bases):
    with serving({"gate": bases["gate"]}) as (_, channel):
        response = prediction_stub(channel).Predict(predict_request(
            "gate", {"x": np.array([1.0], np.float32)}, signature="odd_method"), timeout=TIMEOUT)

    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.0]
