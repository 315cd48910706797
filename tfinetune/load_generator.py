"""`LoadGenerator`: closed-loop Predict load against any TF-Serving-compatible gRPC server
(what `tfinetune bench serve` runs; in the spirit of Triton's perf_analyzer).

    generator = LoadGenerator(BenchServeConfig(server="localhost:8500", model_name="sst2",
                                               data="dev.tsv", text_column="sentence"))
    for level in generator.run():
        print(level.concurrency, level.rows_per_second, level.latency_ms["p99"])

Requests are real rows of the data file, `rows_per_request` texts each, built and serialized
once up front and cycled through. Each level keeps `concurrency` requests in flight (one client
thread with its own connection per request in flight; a thread sends its next request as soon as
the previous one answers), first for `warmup_seconds` (not counted), then for
`duration_seconds` or until `requests` requests are measured. Requests use the official
`tensorflow_serving.apis` PredictionService: the first one goes through the generated stub and
its response is checked; the timed ones send the pre-serialized bytes on the same method
(no per-request protobuf work in the client, so the client takes little of the CPU it shares
with the server).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from tfinetune.bench_serve_config import BenchServeConfig
from tfinetune.errors import DataError
from tfinetune.errors import ScoringError
from tfinetune.load_level_result import LoadLevelResult
from tfinetune.table_reader import TableReader

logger = logging.getLogger(__name__)

_PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


class LoadGenerator:
    """Sends the rows of `config.data` to `config.server` at each concurrency level.

    Constructing it reads the texts (nothing is sent yet).

    Args:
        config: What to send, where, and for how long.

    Raises:
        DataError: The data file is missing/unreadable, lacks the text column, or has no
            non-empty text.
    """

    def __init__(self, config: BenchServeConfig) -> None:
        self.config = config
        self.texts = self._read_texts()
        self._requests = self._build_requests()

    def _read_texts(self) -> list[str]:
        reader = TableReader(self.config.data)
        reader.require_columns([self.config.text_column])
        texts = []
        for row in reader:
            value = row.values.get(self.config.text_column)
            if value is None or str(value).strip() == "":
                continue
            texts.append(str(value))
            if len(texts) >= self.config.max_rows:
                break
        if not texts:
            raise DataError(f"No non-empty text in column {self.config.text_column!r} of "
                            f"{self.config.data}; expected at least one row to send")
        return texts

    def _build_requests(self) -> list[bytes]:
        from tfinetune.cli.quiet_import import import_tensorflow_quietly

        import_tensorflow_quietly()
        from tensorflow.core.framework import tensor_pb2
        from tensorflow.core.framework import tensor_shape_pb2
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import predict_pb2

        config, n = self.config, self.config.rows_per_request
        count = max(1, len(self.texts) // n)
        requests = []
        for i in range(count):
            texts = [self.texts[(i * n + j) % len(self.texts)] for j in range(n)]
            request = predict_pb2.PredictRequest()
            request.model_spec.name = config.model_name
            request.model_spec.signature_name = config.signature_name
            if config.model_version is not None:
                request.model_spec.version.value = config.model_version
            request.inputs[config.input_name].CopyFrom(tensor_pb2.TensorProto(
                dtype=types_pb2.DT_STRING, string_val=[t.encode("utf-8") for t in texts],
                tensor_shape=tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n)])))
            requests.append(request.SerializeToString())
        return requests

    # -------------------------------------------------------------------------------- running

    def check_server(self) -> list[str]:
        """Sends one request through the official stub; returns the output names.

        Raises:
            ScoringError: The server cannot be reached or refuses the request (the gRPC status
                and the server's text are in the message).
        """
        import grpc
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        with grpc.insecure_channel(self.config.server) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            try:
                response = stub.Predict(predict_pb2.PredictRequest.FromString(self._requests[0]),
                                        timeout=self.config.timeout, wait_for_ready=False)
            except grpc.RpcError as error:
                raise ScoringError(
                    f"The first Predict request to model {self.config.model_name!r} on "
                    f"{self.config.server} (input {self.config.input_name!r}, signature "
                    f"{self.config.signature_name!r}) failed: {error.code().name}: "
                    f"{error.details()}") from None
        if not response.outputs:
            raise ScoringError(f"Model {self.config.model_name!r} on {self.config.server} "
                               f"answered a Predict request with no outputs")
        return sorted(response.outputs)

    def run(self, progress: Callable[[str], None] | None = None) -> list[LoadLevelResult]:
        """Checks the server, then measures every concurrency level in order."""
        outputs = self.check_server()
        logger.info("Model %r answers with outputs %s", self.config.model_name, outputs)
        results = []
        for level in self.config.concurrency:
            if progress:
                progress(f"concurrency {level}: warming up {self.config.warmup_seconds:g} s, "
                         "measuring ...")
            result = self.measure(level)
            results.append(result)
            if progress:
                progress(f"concurrency {level}: {result.rows_per_second:.1f} rows/s, "
                         f"p50 {_ms(result.latency_ms['p50'])} ms, {result.errors} errors")
        return results

    def measure(self, concurrency: int) -> LoadLevelResult:
        """One closed-loop level: `concurrency` threads, warm-up, then the measured window."""
        import grpc

        config = self.config
        requests = self._requests
        lock = threading.Lock()
        latencies: list[float] = []
        error_codes: collections.Counter = collections.Counter()
        first_error: list[str] = []
        state = {"measure_from": float("inf"), "measure_to": float("inf"), "stop": False}
        done = threading.Event()
        ready = threading.Barrier(concurrency + 1)
        target = config.requests

        def worker(index: int) -> None:
            channel = grpc.insecure_channel(config.server,
                                            options=[("grpc.use_local_subchannel_pool", 1)])
            try:
                predict = channel.unary_unary(_PREDICT_METHOD)  # bytes in, bytes out
                try:  # connect before the clock starts
                    predict(requests[index % len(requests)], timeout=config.timeout)
                except grpc.RpcError:
                    pass
                try:
                    ready.wait(timeout=config.timeout + 60)
                except threading.BrokenBarrierError:
                    return
                i = index * 7919  # threads start at different rows
                while not state["stop"]:
                    request = requests[i % len(requests)]
                    i += 1
                    began = time.perf_counter()
                    try:
                        predict(request, timeout=config.timeout)
                        failed = None
                    except grpc.RpcError as error:
                        failed = error
                    ended = time.perf_counter()
                    if began < state["measure_from"] or ended > state["measure_to"]:
                        continue
                    with lock:
                        if failed is None:
                            latencies.append(ended - began)
                        else:
                            error_codes[failed.code().name] += 1
                            if not first_error:
                                first_error.append(f"{failed.code().name}: {failed.details()}")
                        if target is not None and len(latencies) + sum(
                                error_codes.values()) >= target and not done.is_set():
                            state["measure_to"] = ended
                            state["stop"] = True
                            done.set()
            finally:
                channel.close()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True,
                                    name=f"bench-client-{i}") for i in range(concurrency)]
        for thread in threads:
            thread.start()
        try:
            ready.wait(timeout=config.timeout + 60)
        except threading.BrokenBarrierError:
            state["stop"] = True
            raise ScoringError(f"The {concurrency} client threads could not all connect to "
                               f"{config.server} within {config.timeout + 60:g} s") from None
        time.sleep(config.warmup_seconds)
        cpu_from = time.process_time()
        state["measure_from"] = time.perf_counter()
        if target is None:
            time.sleep(config.duration_seconds)
            state["measure_to"] = time.perf_counter()
            state["stop"] = True
        else:
            while not done.wait(0.1):
                if not any(thread.is_alive() for thread in threads):
                    state["measure_to"] = time.perf_counter()
                    break
        cpu_seconds = time.process_time() - cpu_from
        for thread in threads:
            thread.join()
        with lock:
            return LoadLevelResult.from_latencies(
                concurrency, list(latencies), config.rows_per_request,
                state["measure_to"] - state["measure_from"], dict(error_codes),
                first_error[0] if first_error else "",
                cpu_seconds / max(state["measure_to"] - state["measure_from"], 1e-9))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
