"""`Metrics`: TF Serving's monitoring metrics, kept with `prometheus_client`.

Names are TF Serving's (`/tensorflow/serving/request_count`, ...) as its Prometheus exporter
writes them, every character outside `[a-zA-Z0-9_]` replaced by `:`
(`:tensorflow:serving:request_count`), with TF Serving's labels and, for latencies, its
microsecond buckets (`Buckets::Exponential(10, 1.8, 33)`):

* `:tensorflow:serving:request_count{model_name,status}`: every gRPC and REST request; status
  is the canonical code name (`OK`, `NOT_FOUND`, ...);
* `:tensorflow:serving:request_latency{model_name,API,entrypoint}`: successful requests, in
  microseconds; entrypoint `GRPC` or `REST`;
* `:tensorflow:serving:runtime_latency{model_name,API,runtime}`: the TensorFlow session runs;
* `:tensorflow:serving:request_example_counts{model}` / `request_example_count_total{model}`:
  tf.Examples per Classify/Regress request;
* `:tensorflow:cc:saved_model:load_attempt_count{model_path,status}` (`success`/`fail`) and
  `:tensorflow:cc:saved_model:load_latency{model_path}` (microseconds of successful loads), as
  TensorFlow's SavedModel loader names them; `:tensorflow:serving:model_warmup_latency`;
* `:tensorflow:serving:batching_session:*`: batch sizes, padding, queuing latency and wrapped
  runs, for the batching scheduler to record.

Differences from TF Serving's page, forced by the Prometheus text format of `prometheus_client`:
counters are exposed as `untyped` (a `counter` would have to be renamed `..._total`), bucket
bounds are written `10.0` rather than `10`, and TF's percentile samplers (batch sizes) are
histograms.
"""

from __future__ import annotations

import re
import threading
from typing import Iterable, Sequence

import grpc
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# The classic text format (TF Serving answers "text/plain"), which every Prometheus reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MICROS = 1e6


def exponential_buckets(scale: float, growth_factor: float, count: int) -> list[float]:
    """TF's `monitoring::Buckets::Exponential`, each bound rounded to the 6 significant digits
    TF Serving's exporter prints (so `le` values equal TF Serving's)."""
    return [float(f"{scale * growth_factor ** i:.6g}") for i in range(count)]


def prometheus_name(tf_name: str) -> str:
    """TF Serving's `GetPrometheusMetricName`: `/tensorflow/serving/x` becomes
    `:tensorflow:serving:x`."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
    return "_" + name if name[:1].isdigit() else name


_LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)  # ~20 minutes in microseconds


class _TfServingExposition(Collector):
    """Re-exposes a registry with TF Serving's sample names: counters under their TF name
    (prometheus_client would add or strip `_total`), and no `_created` series."""

    def __init__(self, source: CollectorRegistry, counter_names: dict[str, str]) -> None:
        self._source = source
        self._counter_names = counter_names  # prometheus_client family name -> TF name

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            samples = [s for s in family.samples if not s.name.endswith("_created")]
            if family.type == "counter":
                name = self._counter_names.get(family.name, family.name)
                metric = Metric(name, family.documentation, "unknown")
                for sample in samples:
                    metric.add_sample(name, sample.labels, sample.value)
            else:
                metric = Metric(family.name, family.documentation, family.type)
                metric.samples = samples
            yield metric


class Metrics:
    """The server's metrics and their Prometheus page.

    `Metrics.default()` is the process-wide instance (like TF's default `CollectionRegistry`),
    which the gRPC interceptor, the REST API and the model loader record into.

    Example:
        metrics = Metrics.default()
        metrics.record_request("half", "Predict", "GRPC", grpc.StatusCode.OK, 0.002)
        page = metrics.exposition()  # bytes, Prometheus text format
    """

    _default: Metrics | None = None
    _default_lock = threading.Lock()

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        counter_names: dict[str, str] = {}
        self._page = CollectorRegistry(auto_describe=False)
        self._page.register(_TfServingExposition(self.registry, counter_names))

        def counter(tf_name: str, doc: str, labels: Sequence[str]) -> Counter:
            name = prometheus_name(tf_name)
            counter_names[name.removesuffix("_total")] = name  # the family name it gets
            return Counter(name, doc, labels, registry=self.registry)

        def histogram(tf_name: str, doc: str, labels: Sequence[str],
                      buckets: list[float] = _LATENCY_BUCKETS) -> Histogram:
            return Histogram(prometheus_name(tf_name), doc, labels, buckets=buckets,
                             registry=self.registry)

        self.request_count = counter("/tensorflow/serving/request_count",
                                     "The total number of requests.", ["model_name", "status"])
        self.request_latency = histogram(
            "/tensorflow/serving/request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"])
        self.runtime_latency = histogram(
            "/tensorflow/serving/runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"])
        self.example_counts = histogram(
            "/tensorflow/serving/request_example_counts",
            "The number of tensorflow.Examples per request.", ["model"],
            buckets=exponential_buckets(1, 2, 15))
        self.example_count_total = counter("/tensorflow/serving/request_example_count_total",
                                           "The total number of tensorflow.Examples.",
                                           ["model"])
        self.load_attempt_count = counter(
            "/tensorflow/cc/saved_model/load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            ["model_path", "status"])
        self.load_latency = counter(
            "/tensorflow/cc/saved_model/load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ["model_path"])
        self.warmup_latency = histogram(
            "/tensorflow/serving/model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"])
        self.batch_input_size = histogram(
            "/tensorflow/serving/batching_session/input_batch_size",
            "Tracks the batch size distribution on the inputs.", [],
            buckets=exponential_buckets(1, 2, 15))
        self.batch_processed_size = histogram(
            "/tensorflow/serving/batching_session/processed_batch_size",
            "Tracks the batch size distribution on processing.", [],
            buckets=exponential_buckets(1, 2, 15))
        self.batch_padding_size = histogram(
            "/tensorflow/serving/batching_session/padding_size",
            "Tracks the padding size distribution on batches.", ["execution_batch_size"],
            buckets=exponential_buckets(1, 2, 15))
        self.batch_queuing_latency = histogram(
            "/tensorflow/serving/batching_session/queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing", ["thread_pool_name"],
            buckets=exponential_buckets(100, 1.2, 52))
        self.batch_wrapped_run_count = counter(
            "/tensorflow/serving/batching_session/wrapped_run_count",
            "Total count of run calls on the wrapped session", [])

    @classmethod
    def default(cls) -> "Metrics":
        """The process-wide metrics."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    # -- recording -----------------------------------------------------------------------------

    def record_request(self, model_name: str, api: str, entrypoint: str,
                       code: grpc.StatusCode, seconds: float) -> None:
        """Counts a request; its latency is recorded when it succeeded (as TF Serving does).

        Args:
            model_name: `ModelSpec.name` of the request ("" when it has none).
            api: The API, e.g. `Predict` (gRPC method) or `predict` (REST verb).
            entrypoint: `GRPC` or `REST`.
            code: The request's status code.
            seconds: Wall time of the request.
        """
        self.request_count.labels(model_name, code.name).inc()
        if code == grpc.StatusCode.OK:
            self.request_latency.labels(model_name, api, entrypoint).observe(seconds * _MICROS)

    def record_runtime_latency(self, model_name: str, api: str, seconds: float,
                               runtime: str = "TF1") -> None:
        """Wall time of a TensorFlow session run (TF Serving's `RecordRuntimeLatency`)."""
        self.runtime_latency.labels(model_name, api, runtime).observe(seconds * _MICROS)

    def record_example_count(self, model_name: str, count: int) -> None:
        """tf.Examples in one Classify/Regress request (`RecordRequestExampleCount`)."""
        self.example_counts.labels(model_name).observe(count)
        self.example_count_total.labels(model_name).inc(count)

    def record_load(self, model_path: str, succeeded: bool, seconds: float) -> None:
        """One SavedModel load attempt of a version directory."""
        self.load_attempt_count.labels(model_path, "success" if succeeded else "fail").inc()
        if succeeded:
            self.load_latency.labels(model_path).inc(seconds * _MICROS)

    def record_warmup(self, model_path: str, code: grpc.StatusCode, seconds: float) -> None:
        """Wall time of replaying a version's warm-up requests."""
        self.warmup_latency.labels(model_path, code.name).observe(seconds * _MICROS)

    def record_batch(self, input_size: int, processed_size: int,
                     queuing_seconds: Sequence[float] = (),
                     thread_pool_name: str = "") -> None:
        """One merged batch: `input_size` real rows padded to `processed_size`, the queuing
        time of each request in it, and one run of the wrapped session."""
        self.batch_input_size.observe(input_size)
        self.batch_processed_size.observe(processed_size)
        self.batch_padding_size.labels(str(processed_size)).observe(processed_size - input_size)
        for seconds in queuing_seconds:
            self.batch_queuing_latency.labels(thread_pool_name).observe(seconds * _MICROS)
        self.batch_wrapped_run_count.inc()

    # -- exposition ----------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text page (content type `CONTENT_TYPE`)."""
        return generate_latest(self._page)
