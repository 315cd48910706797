"""Fixtures of the serving tests: the models of `models.py` built once per session, a server on
a free port serving them, and gRPC stubs over a real channel to it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

import tfinetune  # noqa: F401  (sets the TF environment before TF is imported)
from tests.serving.models import build_bytes_model
from tests.serving.models import build_half_plus_two
from tests.serving.models import build_spin_model
from tests.serving.models import build_text_classifier
from tests.serving.models import build_times_model


@pytest.fixture(scope="session")
def model_bases(tmp_path_factory) -> dict[str, Path]:
    """Model name -> base path of every test model."""
    root = tmp_path_factory.mktemp("serving-models")
    build_half_plus_two(root / "half" / "1")
    build_times_model(root / "tf2" / "1", 1.0)
    build_times_model(root / "tf2" / "2", 2.0)
    (root / "tf2" / "not-a-version").mkdir()
    (root / "tf2" / "3.txt").write_text("ignored")
    build_spin_model(root / "spin" / "1")
    build_text_classifier(root / "text" / "1")
    build_text_classifier(root / "pair" / "7", pair=True)
    return {name: root / name for name in ("half", "tf2", "spin", "text", "pair")}


@pytest.fixture(scope="session")
def server(model_bases):
    """A running server of every test model on a free port (no polling)."""
    from serving import Server

    server = Server(model_bases, port=0, file_system_poll_wait_seconds=0).start()
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="session")
def channel(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield channel
    channel.close()


@pytest.fixture(scope="session")
def prediction_stub(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="session")
def model_stub(channel):
    from tensorflow_serving.apis import model_service_pb2_grpc

    return model_service_pb2_grpc.ModelServiceStub(channel)


MONITORING_CONFIG = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'


@pytest.fixture(scope="session")
def rest_server(model_bases, tmp_path_factory):
    """A running server of every test model plus `bytes` (binary in/out), with the REST API
    on a free port and Prometheus metrics at TF Serving's default path."""
    from serving import Server
    from serving.server_options import ANY_FREE_PORT

    root = tmp_path_factory.mktemp("rest-models")
    build_bytes_model(root / "bytes" / "1")
    config = root / "monitoring_config.txt"
    config.write_text(MONITORING_CONFIG)
    server = Server({**model_bases, "bytes": root / "bytes"}, port=0,
                    rest_api_port=ANY_FREE_PORT, file_system_poll_wait_seconds=0,
                    monitoring_config_file=str(config)).start()
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="session")
def rest_port(rest_server) -> int:
    return rest_server.rest_port
