"""Serving keeps serving (issue 6): graceful shutdown of a real `tfinetune serve` process.

SIGTERM stops accepting new requests at once (gRPC and REST), lets the requests in flight
finish within `--grace-seconds`, cancels those still running after it, and exits 0. The `spin`
model runs as long as asked (a loop of `iterations` steps), calibrated against the process.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import signal
import socket
import time

import grpc
import numpy as np
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tests.serving.models import predict_request
from tests.serving.serve_process import ServeProcess

TIMEOUT = 60


def spin_request(iterations: int):
    return predict_request("spin", {"iterations": np.int64(iterations)})


def iterations_for(stub, seconds: float) -> int:
    """How many loop steps take about `seconds` in the server under test."""
    stub.Predict(spin_request(100_000), timeout=TIMEOUT)  # the first run builds the executor
    start = time.monotonic()
    stub.Predict(spin_request(100_000), timeout=TIMEOUT)
    return int(100_000 * seconds / max(time.monotonic() - start, 1e-3))


def serve_spin(model_bases, grace_seconds: float, *flags: str) -> ServeProcess:
    return ServeProcess("--port=0", "--model_name=spin",
                        f"--model_base_path={model_bases['spin']}",
                        "--file_system_poll_wait_seconds=0", f"--grace-seconds={grace_seconds}",
                        *flags)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rest_spin(port: int, iterations: int) -> tuple[int, dict]:
    """POSTs a spin request to the REST API: (HTTP status, JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("POST", "/v1/models/spin:predict",
                           body=json.dumps({"inputs": {"iterations": iterations}}))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def rest_refusal(port: int) -> str:
    """How the REST port answers a new request: "refused" (no listener) or the HTTP status."""
    try:
        return str(rest_spin(port, 1)[0])
    except ConnectionRefusedError:
        return "refused"


def code_of(call, request) -> grpc.StatusCode:
    try:
        call(request, timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(model_bases):
    rest_port = free_port()
    with serve_spin(model_bases, 30, f"--rest_api_port={rest_port}") as serve, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        address = serve.wait_for(r"Serving model 'spin' version 1 on (\S+)").group(1)
        channel = grpc.insecure_channel(address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        iterations = iterations_for(stub, 3.0)
        in_flight = stub.Predict.future(spin_request(iterations), timeout=TIMEOUT)
        rest_in_flight = pool.submit(rest_spin, rest_port, iterations)
        time.sleep(0.5)
        running_at_sigterm = not in_flight.done() and not rest_in_flight.done()
        sent = time.monotonic()
        serve.process.send_signal(signal.SIGTERM)
        serve.wait_for(r"Stopping: finishing in-flight requests")
        time.sleep(0.5)  # the server stops accepting right after saying so
        with grpc.insecure_channel(address) as fresh:
            new_channel_code = code_of(
                prediction_service_pb2_grpc.PredictionServiceStub(fresh).Predict,
                spin_request(1))
        same_channel_code = code_of(stub.Predict, spin_request(1))
        new_rest = rest_refusal(rest_port)
        response = in_flight.result()
        rest_response = rest_in_flight.result()
        exit_code = serve.process.wait(timeout=TIMEOUT)
        stopped_after = time.monotonic() - sent
        channel.close()
        output = serve.rest_of_output()

    assert running_at_sigterm
    assert list(response.outputs["count"].int64_val) == [iterations]  # finished, not cut short
    assert new_channel_code == grpc.StatusCode.UNAVAILABLE
    assert same_channel_code == grpc.StatusCode.UNAVAILABLE
    assert rest_response == (200, {"outputs": iterations})
    assert new_rest == "refused"
    assert exit_code == 0
    assert stopped_after < 30
    assert "Server stopped." in output


def test_requests_still_running_after_the_grace_period_are_cancelled_and_it_exits_0(
        model_bases):
    """A request that would run for hours does not keep the process alive past the grace
    period: its session run is cancelled, the models unload, and the exit code is 0."""
    with serve_spin(model_bases, grace_seconds=1) as serve:
        address = serve.wait_for(r"Serving model 'spin' version 1 on (\S+)").group(1)
        with grpc.insecure_channel(address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            endless = stub.Predict.future(spin_request(10**15), timeout=TIMEOUT)
            time.sleep(1.0)
            running_at_sigterm = not endless.done()
            sent = time.monotonic()
            serve.process.send_signal(signal.SIGTERM)
            exit_code = serve.process.wait(timeout=TIMEOUT)
            stopped_after = time.monotonic() - sent
            endless_code = endless.exception(timeout=TIMEOUT).code()
        output = serve.rest_of_output()

    assert running_at_sigterm
    assert exit_code == 0
    assert stopped_after < 10  # 1 s of grace, then cancel and unload
    assert endless_code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert "Server stopped." in output


def test_a_lookup_after_the_models_unloaded_for_shutdown_is_unavailable_not_not_found(
        model_bases):
    """A request that gRPC accepted just before `stop` but that looks its model up after the
    unload gets UNAVAILABLE (retryable on another replica), not NOT_FOUND (which says the model
    does not exist, so clients give up)."""
    from tensorflow_serving.apis import model_pb2

    from serving import ServingError
    from serving.model_manager import ModelManager

    manager = ModelManager({"half": model_bases["half"]})
    manager.load_all()
    spec = model_pb2.ModelSpec(name="half")
    with manager.servable(spec) as servable:
        assert servable is not None
    missing = model_pb2.ModelSpec(name="absent")
    try:
        with manager.servable(missing):
            raise AssertionError("an unknown model must not be found")
    except ServingError as error:
        assert error.code == grpc.StatusCode.NOT_FOUND

    manager.unload_all()

    for model_spec in (spec, missing):
        try:
            with manager.servable(model_spec):
                raise AssertionError("no servable after the shutdown unload")
        except ServingError as error:
            assert error.code == grpc.StatusCode.UNAVAILABLE, error
            assert "shutting down" in error.message
