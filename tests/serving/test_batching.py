"""--enable_batching: concurrent runs merged into one session run, split back per request, with
TF Serving's BatchingParameters, limits and texts. Real gRPC servers on free ports.

Most tests use the `gate` model (gate_model.py): its runs wait for a token the test releases,
so "the batch thread is busy while these requests queue up" is a state the test sets up rather
than a race it hopes to win, and the token/batch_size outputs show which run computed each row.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving import ServingError
from serving.batching_parameters import BatchingParameters
from serving.server_options import ServerOptions
from tests.serving.gate_model import build_gate_model
from tests.serving.gate_model import release_request
from tests.serving.models import TESTDATA
from tests.serving.models import build_half_plus_two
from tests.serving.models import build_spin_model
from tests.serving.models import build_text_classifier
from tests.serving.models import expected_probabilities
from tests.serving.models import predict_request
from tests.serving.models import rpc_error
from tests.serving.models import tfserving_testdata

WAIT_SECONDS = 20  # upper bound of every wait; the waits normally end in milliseconds


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching-models")
    build_gate_model(root / "gate" / "1")
    build_text_classifier(root / "text" / "1")
    build_spin_model(root / "spin" / "1")
    build_half_plus_two(root / "half" / "1")
    return {name: root / name for name in ("gate", "text", "spin", "half")}


@contextlib.contextmanager
def batching_server(models: dict, tmp_path, parameters: str | None = None, **options):
    """A server with --enable_batching (and `parameters` as its parameters file) and a stub."""
    if parameters is not None:
        path = tmp_path / "batching_parameters.txt"
        path.write_text(parameters)
        options["batching_parameters_file"] = str(path)
    server = Server(models, port=0, file_system_poll_wait_seconds=0, enable_batching=True,
                    **options).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, prediction_service_pb2_grpc.PredictionServiceStub(channel)
    finally:
        channel.close()
        server.stop(grace=2)


def batching_session(server, model: str = "gate"):
    with server.model_manager.servable(predict_request(model).model_spec) as servable:
        return servable.batching_session


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting until {what}")
        time.sleep(0.01)


def outputs(response) -> dict[str, np.ndarray]:
    return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}


def gate_request(x, signature: str | None = None):
    return predict_request("gate", {"x": np.asarray(x, np.float32)}, signature=signature)


def release(stub, *tokens: float) -> None:
    stub.Predict(release_request("gate", list(tokens)), timeout=WAIT_SECONDS)


# -- BatchingParameters ------------------------------------------------------------------------


def test_tf_serving_batching_config_file_parses():
    path = TESTDATA / "batching_config.txt"
    if not path.is_file():
        pytest.skip(f"TF Serving testdata {path} is absent")

    parameters = BatchingParameters.from_file(path)

    assert (parameters.max_batch_size, parameters.batch_timeout_micros,
            parameters.max_enqueued_batches, parameters.num_batch_threads) == (128, 0, 1000000, 8)
    assert parameters.allowed_batch_sizes == () and not parameters.pad_variable_length_inputs


def test_unset_fields_take_tf_scheduler_defaults():
    parameters = BatchingParameters.from_text("allowed_batch_sizes: [10, 1000]")

    assert (parameters.max_batch_size, parameters.batch_timeout_micros,
            parameters.max_enqueued_batches, parameters.thread_pool_name) == (
        1000, 0, 10, "batch_threads")
    assert parameters.num_batch_threads >= 1
    assert BatchingParameters.for_model_server().thread_pool_name == "model_server_batch_threads"


@pytest.mark.parametrize("text, message", [
    ("max_batch_size { value: 4 } allowed_batch_sizes: [2, 3]",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 3; "
     "expected 4"),
    ("allowed_batch_sizes: 8", "Last entry in allowed_batch_sizes must match max_batch_size; "
     "last entry was 8; expected 1000"),
    ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
    ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative; was -1"),
    ("max_batch_size: 4", "not a text BatchingParameters proto"),
    ("max_batch_sise { value: 4 }", "not a text BatchingParameters proto"),
])
def test_bad_batching_parameters_file_is_a_startup_error(bases, tmp_path, text, message):
    path = tmp_path / "batching.txt"
    path.write_text(text)
    server = Server({"gate": bases["gate"]}, port=0, enable_batching=True,
                    batching_parameters_file=str(path))

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.message.startswith(f"Invalid batching parameters file {path}: ")
    assert message in raised.value.message
    assert server.model_manager.available_versions("gate") == []  # nothing was loaded


def test_missing_batching_parameters_file_is_a_startup_error(bases, tmp_path):
    server = Server({"gate": bases["gate"]}, port=0, enable_batching=True,
                    batching_parameters_file=str(tmp_path / "nope.txt"))

    with pytest.raises(ServingError, match="Could not read the batching parameters file"):
        server.start()


def test_parameters_file_without_enable_batching_is_refused(tmp_path):
    with pytest.raises(ValueError, match="server_options.batching_parameters_file is set without "
                                         "setting server_options.enable_batching to true."):
        ServerOptions(batching_parameters_file=str(tmp_path / "b.txt"))


# -- merging and splitting -----------------------------------------------------------------------


def test_concurrent_requests_merge_into_one_run_and_each_gets_its_own_rows(bases, tmp_path):
    parameters = "max_batch_size { value: 16 } num_batch_threads { value: 1 }"
    with batching_server({"gate": bases["gate"]}, tmp_path, parameters) as (server, stub), \
            concurrent.futures.ThreadPoolExecutor(8) as pool:
        session = batching_session(server)
        first = pool.submit(stub.Predict, gate_request([100.0]), timeout=WAIT_SECONDS)
        wait_until(lambda: session.num_batches_in_progress == 1,
                   "the first request holds the batch thread")
        sizes = [1, 2, 3, 4, 5]
        inputs = [np.arange(n, dtype=np.float32) + 10 * i for i, n in enumerate(sizes)]
        queued = [pool.submit(stub.Predict, gate_request(x), timeout=WAIT_SECONDS)
                  for x in inputs]
        wait_until(lambda: session.num_enqueued_tasks == len(sizes), "all requests are queued")

        release(stub, 1.0, 2.0)
        results = [outputs(future.result()) for future in queued]

        assert outputs(first.result())["token"].tolist() == [1.0]
        for x, result in zip(inputs, results):
            np.testing.assert_array_equal(result["y"], 2 * x)  # its own rows, in order
            assert result["token"].tolist() == [2.0] * len(x)  # all from the second run
            assert result["batch_size"].tolist() == [sum(sizes)] * len(x)
        assert session.wrapped_run_count == 2  # 6 requests, 2 session runs


def test_full_queue_answers_resource_exhausted(bases, tmp_path):
    parameters = ("max_batch_size { value: 2 } max_enqueued_batches { value: 1 } "
                  "num_batch_threads { value: 1 }")
    with batching_server({"gate": bases["gate"]}, tmp_path, parameters) as (server, stub), \
            concurrent.futures.ThreadPoolExecutor(4) as pool:
        session = batching_session(server)
        running = pool.submit(stub.Predict, gate_request([1.0]), timeout=WAIT_SECONDS)
        wait_until(lambda: session.num_batches_in_progress == 1,
                   "the first request holds the batch thread")
        queued = pool.submit(stub.Predict, gate_request([2.0, 3.0]), timeout=WAIT_SECONDS)
        wait_until(lambda: session.num_enqueued_tasks == 1, "the open batch is full")

        code, message = rpc_error(stub.Predict, gate_request([4.0]))

        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert message == ("The batch scheduling queue to which this task was submitted is "
                           "full; currently 1 batches enqueued and max_enqueued_batches is 1")
        release(stub, 1.0, 2.0)
        assert outputs(running.result())["y"].tolist() == [2.0]
        assert outputs(queued.result())["y"].tolist() == [4.0, 6.0]


def test_request_larger_than_max_batch_size_is_refused(bases, tmp_path):
    with batching_server({"gate": bases["gate"]}, tmp_path,
                         "max_batch_size { value: 4 }") as (_, stub):
        code, message = rpc_error(stub.Predict, gate_request(np.zeros(5)))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "Task size 5 is larger than maximum input batch size 4"


def test_large_request_is_split_across_runs_with_large_batch_splitting(bases, tmp_path):
    parameters = ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
                  "max_execution_batch_size { value: 2 } num_batch_threads { value: 1 }")
    with batching_server({"gate": bases["gate"]}, tmp_path, parameters) as (server, stub):
        release(stub, 1.0, 2.0, 3.0)

        result = outputs(stub.Predict(gate_request([0.0, 1.0, 2.0, 3.0, 4.0]),
                                      timeout=WAIT_SECONDS))

        assert result["y"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
        assert result["batch_size"].tolist() == [2, 2, 2, 2, 1]  # runs of at most 2 rows
        assert sorted(set(result["token"].tolist())) == [1.0, 2.0, 3.0]  # three runs
        assert batching_session(server).wrapped_run_count == 3


def test_batches_are_padded_up_to_an_allowed_batch_size(bases, tmp_path):
    parameters = "max_batch_size { value: 4 } allowed_batch_sizes: [2, 4]"
    with batching_server({"gate": bases["gate"]}, tmp_path, parameters) as (_, stub):
        release(stub, 1.0, 2.0)

        three = outputs(stub.Predict(gate_request([1.0, 2.0, 3.0]), timeout=WAIT_SECONDS))
        one = outputs(stub.Predict(gate_request([5.0]), timeout=WAIT_SECONDS))

    assert three["y"].tolist() == [2.0, 4.0, 6.0]  # the padding row is not returned
    assert three["batch_size"].tolist() == [4, 4, 4]  # the run saw 4 rows
    assert one["y"].tolist() == [10.0] and one["batch_size"].tolist() == [2]


def test_requests_without_rows_run_unpadded(bases, tmp_path):
    parameters = "max_batch_size { value: 4 } allowed_batch_sizes: [2, 4]"
    with batching_server({"half": bases["half"]}, tmp_path, parameters) as (_, stub):
        empty = stub.Predict(predict_request("half", {"x": np.zeros((0, 1), np.float32)}),
                             timeout=WAIT_SECONDS)

    assert tf.make_ndarray(empty.outputs["y"]).shape == (0, 1)


def test_string_inputs_of_different_lengths_batch(bases, tmp_path):
    texts = ["good", "bad bad bad good", "a much longer text with good words and good ones",
             "", "Good GOOD bad", "neutral"]
    parameters = ("max_batch_size { value: 64 } batch_timeout_micros { value: 500000 } "
                  "num_batch_threads { value: 1 }")
    with batching_server({"text": bases["text"]}, tmp_path, parameters) as (server, stub), \
            concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
        futures = [pool.submit(stub.Predict, predict_request(
            "text", {"text": np.array([t.encode()], dtype=object)}), timeout=WAIT_SECONDS)
            for t in texts]
        results = [outputs(future.result()) for future in futures]
        runs = batching_session(server, "text").wrapped_run_count

    for text, result in zip(texts, results):
        np.testing.assert_allclose(result["probabilities"][0], expected_probabilities(text),
                                   atol=1e-6)
        assert result["classes"].shape == (1, 2)
    assert runs < len(texts)


def test_matrix_half_plus_two_with_tf_serving_batching_config(tmp_path):
    base = tfserving_testdata("_batching_testdata/matrix_half_plus_two")
    config = TESTDATA / "batching_config.txt"
    inputs = [np.arange(9 * n, dtype=np.float32).reshape(n, 3, 3) + n for n in (1, 2, 3, 1, 4)]
    with batching_server({"matrix": base}, tmp_path, config.read_text()) as (server, stub), \
            concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        futures = [pool.submit(stub.Predict, predict_request("matrix", {"x": x}),
                               timeout=WAIT_SECONDS) for x in inputs]
        results = [outputs(future.result()) for future in futures]
        runs = batching_session(server, "matrix").wrapped_run_count

    for x, result in zip(inputs, results):
        np.testing.assert_allclose(result["y"], 0.5 * x + 2)
    assert 1 <= runs <= len(inputs)


@pytest.mark.parametrize("pad", [True, False])
def test_inputs_with_different_trailing_dims(bases, tmp_path, pad):
    parameters = ("max_batch_size { value: 8 } num_batch_threads { value: 1 } "
                  f"pad_variable_length_inputs: {str(pad).lower()}")
    narrow = np.array([[1.0, 2.0]], np.float32)
    wide = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], np.float32)
    with batching_server({"gate": bases["gate"]}, tmp_path, parameters) as (server, stub), \
            concurrent.futures.ThreadPoolExecutor(4) as pool:
        session = batching_session(server)
        holder = pool.submit(stub.Predict, gate_request([0.0]), timeout=WAIT_SECONDS)
        wait_until(lambda: session.num_batches_in_progress == 1,
                   "the first request holds the batch thread")
        matrices = [pool.submit(stub.Predict, predict_request(
            "gate", {"m": m}, signature="matrix"), timeout=WAIT_SECONDS) for m in (narrow, wide)]
        wait_until(lambda: session.num_enqueued_tasks == 2, "both matrices are queued")
        release(stub, 1.0, 2.0)
        holder.result()

        if pad:
            narrow_result, wide_result = (outputs(f.result()) for f in matrices)
            # Padded with the tensor's first element (1.0) up to 3 columns, as TF Serving pads.
            assert narrow_result["row_sum"].tolist() == [4.0]
            assert narrow_result["width"].tolist() == [3]
            assert wide_result["row_sum"].tolist() == [3.0, 6.0]
            assert narrow_result["token"].tolist() == [2.0]  # one run for both
        else:
            for future in matrices:
                with pytest.raises(grpc.RpcError) as raised:
                    future.result()
                assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert raised.value.details() == (
                    "Tensors with name 'm:0' from different tasks have different shapes and "
                    "padding is turned off.Set pad_variable_length_inputs to true, or ensure "
                    "that all tensors with the same namehave equal dimensions starting with "
                    "the first dim.")


@pytest.mark.parametrize("signature, rows, message", [
    ("scalar_output", 2, "Batched output tensor has 0 dimensions"),
    ("fixed_output", 3, "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                        "dimension sizes of the input tensors"),
])
def test_outputs_not_batched_along_dimension_0_are_refused(bases, tmp_path, signature, rows,
                                                           message):
    with batching_server({"gate": bases["gate"]}, tmp_path) as (_, stub):
        code, details = rpc_error(stub.Predict, gate_request(np.ones(rows), signature))

    assert (code, details) == (grpc.StatusCode.FAILED_PRECONDITION, message)


def test_scalar_inputs_cannot_be_batched(bases, tmp_path):
    with batching_server({"spin": bases["spin"]}, tmp_path) as (_, stub):
        code, message = rpc_error(stub.Predict, predict_request(
            "spin", {"iterations": np.array(3, np.int64)}))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "Batching Run() input tensors must have at least one dimension"


def test_wrong_dtype_fails_alone_with_the_session_error(bases, tmp_path):
    with batching_server({"gate": bases["gate"]}, tmp_path) as (_, stub):
        code, message = rpc_error(stub.Predict, predict_request(
            "gate", {"x": np.array([1, 2], np.int64)}, signature="scalar_output"))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expects arg[0] to be float but int64 is provided" in message


def test_requests_whose_deadline_passed_in_the_queue_are_not_run(bases, tmp_path):
    parameters = "num_batch_threads { value: 1 }"
    with batching_server({"gate": bases["gate"]}, tmp_path, parameters) as (server, stub), \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        session = batching_session(server)
        holder = pool.submit(stub.Predict, gate_request([0.0]), timeout=WAIT_SECONDS)
        wait_until(lambda: session.num_batches_in_progress == 1,
                   "the first request holds the batch thread")
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(gate_request([1.0]), timeout=0.3)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        release(stub, 1.0)
        holder.result()
        wait_until(lambda: session.num_enqueued_tasks == 0, "the expired request is dropped")
        assert session.wrapped_run_count == 1  # only the holder ran; no token was consumed
        release(stub, 2.0)
        assert outputs(stub.Predict(gate_request([3.0]), timeout=WAIT_SECONDS))["token"] == [2.0]


def test_batch_threads_stop_when_the_server_stops(bases, tmp_path):
    with batching_server({"gate": bases["gate"]}, tmp_path,
                         "num_batch_threads { value: 3 }") as (server, stub):
        scheduler = server.model_manager.servable_options.batch_scheduler
        assert scheduler.running_threads == 3

    assert scheduler.running_threads == 0


def test_enable_batching_without_a_file_uses_tf_defaults(bases, tmp_path):
    with batching_server({"gate": bases["gate"]}, tmp_path) as (server, stub):
        parameters = server.model_manager.servable_options.batch_scheduler.parameters
        release(stub, 1.0)
        result = outputs(stub.Predict(gate_request([1.0, 2.0]), timeout=WAIT_SECONDS))

    assert parameters == BatchingParameters.for_model_server()
    assert result["y"].tolist() == [2.0, 4.0]
