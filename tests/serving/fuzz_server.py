"""`FuzzServer`: `tfinetune serve` in a child process for the fuzz tests (a crash or a runaway
allocation shows in the child, not in pytest), with the test models of `models.py`, gRPC and
REST, plus its memory readings and the checks that it still answers correctly."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from pathlib import Path

import grpc
import numpy as np

from tests.serving.models import expected_probabilities
from tests.serving.models import predict_request
from tests.serving.serve_process import ServeProcess

# What a fuzzed gRPC request may be answered with: the request's fault, never the server's.
CLIENT_ERROR_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE})
REST_BODY_LIMIT = 4 << 20  # --rest_api_max_body_bytes of the fuzz server
# Peak RSS growth allowed over the whole fuzz run: a few padded tensors of at most 4 MiB and
# JSON bodies of at most 4 MiB in flight, not the gigabytes a 2^40 dimension would ask for.
RSS_GROWTH_LIMIT = 768 << 20
TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(value.split()[0]) * 1024
    return values


class FuzzServer:
    """A `tfinetune serve` process serving `half`, `tf2` (versions 1, 2) and `text` over gRPC
    and REST (body limit `REST_BODY_LIMIT`).

    Args:
        model_bases: The `model_bases` fixture (name -> base path).
        directory: Where to write the model config file.
        *flags: More flags of `tfinetune serve` (e.g. `--enable_batching=true`).
    """

    def __init__(self, model_bases: dict[str, Path], directory: Path, *flags: str) -> None:
        config = directory / "models.config"
        config.write_text("model_config_list {\n" + "".join(
            f'  config {{ name: "{name}" base_path: "{model_bases[name]}" '
            f'model_platform: "tensorflow" }}\n' for name in ("half", "tf2", "text")) + "}\n")
        self.rest_port = free_port()
        self._process = ServeProcess(
            "--port=0", f"--rest_api_port={self.rest_port}", f"--model_config_file={config}",
            "--file_system_poll_wait_seconds=0", f"--rest_api_max_body_bytes={REST_BODY_LIMIT}",
            *flags)
        self.port = 0
        self.channel: grpc.Channel | None = None
        self.baseline: dict[str, int] = {}

    def __enter__(self) -> "FuzzServer":
        self._process.__enter__()
        try:
            self.port = int(self._process.wait_for(r"on 127\.0\.0\.1:(\d+)").group(1))
            self._process.wait_for(r"REST API on http://")
            self.channel = grpc.insecure_channel(
                f"127.0.0.1:{self.port}",
                options=[("grpc.max_receive_message_length", -1),
                         ("grpc.max_send_message_length", -1)])
            self.check_answers()  # warm: the first runs build the executors
            self.baseline = _memory(self.pid)
        except BaseException:
            self._process.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.channel is not None:
            self.channel.close()
        with contextlib.suppress(Exception):
            self._process.stop()
        self._process.__exit__(*exc_info)

    @property
    def pid(self) -> int:
        return self._process.process.pid

    def assert_alive(self) -> None:
        code = self._process.process.poll()
        assert code is None, f"the server exited with {code}:\n{self.output()}"

    def output(self) -> str:
        return "".join(self._process.seen)

    def memory(self) -> dict[str, int]:
        return _memory(self.pid)

    def assert_memory_bounded(self) -> None:
        """The peak RSS since start grew by less than `RSS_GROWTH_LIMIT` over the baseline."""
        now = self.memory()
        growth = now["VmHWM"] - self.baseline["VmHWM"]
        assert growth < RSS_GROWTH_LIMIT, (
            f"peak RSS grew by {growth >> 20} MiB (baseline {self.baseline['VmHWM'] >> 20} MiB, "
            f"now {now['VmHWM'] >> 20} MiB)")

    def check_answers(self) -> None:
        """Valid requests get correct answers, over gRPC and REST."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        half = stub.Predict(predict_request("half", {"x": np.array([[2.0], [4.0]], np.float32)}),
                            timeout=TIMEOUT)
        assert tf.make_ndarray(half.outputs["y"]).ravel().tolist() == [3.0, 4.0]
        tf2 = stub.Predict(predict_request("tf2", {"x": np.array([1.5], np.float32)}),
                           timeout=TIMEOUT)
        assert tf.make_ndarray(tf2.outputs["y"]).tolist() == [3.0]
        assert tf2.model_spec.version.value == 2
        text = stub.Predict(predict_request("text", {"text": np.array([b"good film"], object)}),
                            timeout=TIMEOUT)
        probabilities = tf.make_ndarray(text.outputs["probabilities"])[0].tolist()
        assert np.allclose(probabilities, expected_probabilities("good film"))
        status, body = self.rest("POST", "/v1/models/half:predict", json.dumps(
            {"instances": [[1.0], [5.0]]}).encode())
        assert (status, json.loads(body)) == (200, {"predictions": [[2.5], [4.5]]})
        status, body = self.rest("POST", "/v1/models/text:predict", json.dumps(
            {"instances": ["bad bad good"]}).encode())
        assert status == 200 and json.loads(body)["predictions"][0]["label"] == "negative"

    def rest(self, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
        """One HTTP request on a new connection: (status, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=TIMEOUT)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()
