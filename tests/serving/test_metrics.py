"""Prometheus metrics: TF Serving's names, labels and buckets, counted over gRPC and REST,
served at the MonitoringConfig path on the REST port."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving.metrics import Metrics
from serving.metrics import exponential_buckets
from serving.monitoring_config import load_monitoring_config
from serving.server_options import ANY_FREE_PORT
from serving.serving_error import ServingError
from tests.serving.models import metric_value
from tests.serving.models import predict_request
from tests.serving.models import rest_request

PATH = "/monitoring/prometheus/metrics"
COUNT = ":tensorflow:serving:request_count"
LATENCY_COUNT = ":tensorflow:serving:request_latency_count"


def page(port: int, path: str = PATH) -> bytes:
    status, headers, body = rest_request(port, "GET", path)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    return body


def test_requests_are_counted_with_tf_serving_names_and_labels(rest_port, prediction_stub):
    before = page(rest_port)
    rest_request(rest_port, "POST", "/v1/models/half:predict", {"instances": [1.0]})
    rest_request(rest_port, "POST", "/v1/models/half:predict", {"instances": [1.0]})
    rest_request(rest_port, "POST", "/v1/models/nope:predict", {"instances": [1.0]})
    prediction_stub.Predict(predict_request("half", {"x": np.array([[1.0]], np.float32)}),
                            timeout=30)
    with pytest.raises(grpc.RpcError):
        prediction_stub.Predict(predict_request("half", {"y": np.array([1.0], np.float32)}),
                                timeout=30)
    after = page(rest_port)

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta(COUNT, model_name="half", status="OK") == 3
    assert delta(COUNT, model_name="half", status="INVALID_ARGUMENT") == 1
    assert delta(COUNT, model_name="nope", status="NOT_FOUND") == 1
    # Latency only for successful requests, as TF Serving.
    assert delta(LATENCY_COUNT, model_name="half", API="predict", entrypoint="REST") == 2
    assert delta(LATENCY_COUNT, model_name="half", API="Predict", entrypoint="GRPC") == 1
    assert delta(LATENCY_COUNT, model_name="nope", API="predict", entrypoint="REST") == 0


def test_status_metadata_and_classify_are_counted_too(rest_port, model_stub, prediction_stub,
                                                      channel):
    before = page(rest_port)
    rest_request(rest_port, "GET", "/v1/models/half")
    rest_request(rest_port, "GET", "/v1/models/half/metadata")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half"
    model_stub.GetModelStatus(request, timeout=30)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half"
    classify.model_spec.signature_name = "classify_x_to_y"
    for x in (1.0, 2.0, 3.0):
        example = classify.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)
    prediction_stub.Classify(classify, timeout=30)
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    after = page(rest_port)

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta(LATENCY_COUNT, model_name="half", API="status", entrypoint="REST") == 1
    assert delta(LATENCY_COUNT, model_name="half", API="metadata", entrypoint="REST") == 1
    assert delta(LATENCY_COUNT, model_name="half", API="GetModelStatus", entrypoint="GRPC") == 1
    assert delta(LATENCY_COUNT, model_name="half", API="Classify", entrypoint="GRPC") == 1
    assert delta(":tensorflow:serving:request_example_count_total", model="half") == 3
    assert delta(":tensorflow:serving:request_example_counts_count", model="half") == 1
    assert delta(COUNT, model_name="", status="OK") == 0  # health checks are not counted


def test_page_format(rest_port, prediction_stub):
    prediction_stub.Predict(predict_request("half", {"x": np.array([[1.0]], np.float32)}),
                            timeout=30)
    text = page(rest_port).decode()

    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert "# TYPE :tensorflow:serving:request_count untyped" in text
    assert "_created" not in text and "request_count_total" not in text
    bounds = [line.split('le="')[1].split('"')[0] for line in text.splitlines()
              if line.startswith(":tensorflow:serving:request_latency_bucket{")
              and 'API="Predict"' in line and 'model_name="half"' in line]
    assert len(bounds) == 34 and bounds[-1] == "+Inf"
    assert [float(b) for b in bounds[:4]] == [10.0, 18.0, 32.4, 58.32]
    assert float(bounds[32]) == pytest.approx(10 * 1.8 ** 32, rel=1e-5)


def test_exponential_buckets_match_tf_servings_printed_bounds():
    buckets = exponential_buckets(10, 1.8, 33)

    assert buckets[:6] == [10.0, 18.0, 32.4, 58.32, 104.976, 188.957]
    assert f"{buckets[-1]:g}" == f"{10 * 1.8 ** 32:g}" == "1.47476e+09"


def test_unit_metrics_record_load_warmup_and_batches():
    metrics = Metrics()
    metrics.record_load("/m/1", True, 0.5)
    metrics.record_load("/m/2", False, 0.1)
    metrics.record_runtime_latency("m", "Predict", 0.001)
    metrics.record_warmup("/m/1", grpc.StatusCode.OK, 0.2)
    metrics.record_batch(3, 4, queuing_seconds=[0.001, 0.002], thread_pool_name="pool")
    metrics.record_request("m", "Predict", "GRPC", grpc.StatusCode.OK, 0.25)
    text = metrics.exposition()

    assert metric_value(text, ":tensorflow:cc:saved_model:load_attempt_count",
                        model_path="/m/1", status="success") == 1
    assert metric_value(text, ":tensorflow:cc:saved_model:load_attempt_count",
                        model_path="/m/2", status="fail") == 1
    assert metric_value(text, ":tensorflow:cc:saved_model:load_latency",
                        model_path="/m/1") == pytest.approx(500000)
    assert metric_value(text, ":tensorflow:serving:runtime_latency_count", model_name="m",
                        API="Predict", runtime="TF1") == 1
    assert metric_value(text, ":tensorflow:serving:model_warmup_latency_sum",
                        model_path="/m/1", status="OK") == pytest.approx(200000)
    assert metric_value(text, ":tensorflow:serving:batching_session:padding_size_sum",
                        execution_batch_size="4") == 1
    assert metric_value(text, ":tensorflow:serving:batching_session:queuing_latency_count",
                        thread_pool_name="pool") == 2
    assert metric_value(text, ":tensorflow:serving:batching_session:wrapped_run_count") == 1
    assert metric_value(text, ":tensorflow:serving:request_latency_sum", model_name="m",
                        API="Predict", entrypoint="GRPC") == pytest.approx(250000)


def test_custom_path_and_disabled_prometheus(model_bases, tmp_path):
    config = tmp_path / "monitoring.txt"
    config.write_text('prometheus_config: { enable: true, path: "/metrics" }')
    with Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                file_system_poll_wait_seconds=0, monitoring_config_file=str(config)) as server:
        assert COUNT.encode() in page(server.rest_port, "/metrics")
        assert rest_request(server.rest_port, "GET", PATH)[0] == 404
    config.write_text("prometheus_config { enable: false }")
    with Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                file_system_poll_wait_seconds=0, monitoring_config_file=str(config)) as server:
        assert rest_request(server.rest_port, "GET", PATH)[0] == 404


def test_default_path_when_none_is_given(tmp_path):
    config = tmp_path / "monitoring.txt"
    config.write_text("prometheus_config { enable: true }")

    loaded = load_monitoring_config(config)

    assert loaded.prometheus_config.enable and loaded.prometheus_config.path == ""
    from serving.monitoring_config import prometheus_path
    assert prometheus_path(loaded) == PATH


@pytest.mark.parametrize("text, code, message", [
    (None, grpc.StatusCode.NOT_FOUND, "; No such file or directory"),
    ("prometheus_config { enable: maybe }", grpc.StatusCode.INVALID_ARGUMENT,
     "Invalid protobuf file: '"),
    ("prometheus { enable: true }", grpc.StatusCode.INVALID_ARGUMENT,
     "Invalid protobuf file: '"),
])
def test_bad_monitoring_config_fails_start(model_bases, tmp_path, text, code, message):
    config = tmp_path / "monitoring.txt"
    if text is not None:
        config.write_text(text)
    server = Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                    monitoring_config_file=str(config))

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.code == code
    assert raised.value.message.startswith(f"{config}{message}") or (
        raised.value.message.startswith(message + str(config)))


def test_load_attempts_and_runtime_latency_of_served_models(rest_server, rest_port,
                                                             prediction_stub):
    before = page(rest_port)
    prediction_stub.Predict(predict_request("half", {"x": np.array([[1.0]], np.float32)}),
                            timeout=30)
    after = page(rest_port)
    version_path = str(rest_server.model_manager.version_statuses("half")[0].version)

    loads = [line for line in after.decode().splitlines()
             if line.startswith(":tensorflow:cc:saved_model:load_attempt_count{")
             and 'status="success"' in line]
    assert any(f'/half/{version_path}"' in line for line in loads), loads
    assert metric_value(after, ":tensorflow:serving:runtime_latency_count", model_name="half",
                        API="Predict", runtime="TF1") - metric_value(
        before, ":tensorflow:serving:runtime_latency_count", model_name="half", API="Predict",
        runtime="TF1") == 1


def test_a_failed_load_is_counted(tmp_path):
    from serving.servable import Servable

    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    before = Metrics.default().exposition()

    with pytest.raises(ServingError):
        Servable.load("broken", 1, tmp_path / "1")

    after = Metrics.default().exposition()
    name = ":tensorflow:cc:saved_model:load_attempt_count"
    path = str(tmp_path / "1")
    assert metric_value(after, name, model_path=path, status="fail") - metric_value(
        before, name, model_path=path, status="fail") == 1


def test_batching_session_metrics(model_bases, tmp_path):
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 4 } allowed_batch_sizes: [2, 4] "
                          'thread_pool_name { value: "pool" }')
    before = Metrics.default().exposition()
    with Server({"half": model_bases["half"]}, port=0, file_system_poll_wait_seconds=0,
                enable_batching=True, batching_parameters_file=str(parameters)) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(predict_request("half", {"x": np.array([[1.0], [2.0], [3.0]], np.float32)}),
                     timeout=30)
        channel.close()
    after = Metrics.default().exposition()

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    prefix = ":tensorflow:serving:batching_session:"
    assert delta(prefix + "input_batch_size_sum") == 3
    assert delta(prefix + "processed_batch_size_sum") == 4
    assert delta(prefix + "padding_size_sum", execution_batch_size="4") == 1
    assert delta(prefix + "queuing_latency_count", thread_pool_name="pool") == 1
    assert delta(prefix + "wrapped_run_count") == 1


def test_warmup_latency_per_version_and_status(tmp_path):
    from serving.model_warmup import ModelWarmup
    from serving.servable import Servable
    from tests.serving.lifecycle_models import predict_log
    from tests.serving.lifecycle_models import write_warmup_requests
    from tests.serving.models import build_half_plus_two

    good = build_half_plus_two(tmp_path / "good" / "1")
    write_warmup_requests(good, [predict_log(inputs={"x": np.array([[1.0]], np.float32)})])
    bad = build_half_plus_two(tmp_path / "bad" / "1")
    write_warmup_requests(bad, [], raw=[b"not a PredictionLog"])
    name = ":tensorflow:serving:model_warmup_latency_count"
    before = Metrics.default().exposition()

    for path in (good, bad):
        servable = Servable.load("half", 1, path)
        try:
            ModelWarmup(True, 1).run(servable)
        except ServingError:
            pass
        finally:
            servable.close()

    after = Metrics.default().exposition()
    assert metric_value(after, name, model_path=str(good), status="OK") - metric_value(
        before, name, model_path=str(good), status="OK") == 1
    assert metric_value(after, name, model_path=str(bad), status="INVALID_ARGUMENT") == 1
