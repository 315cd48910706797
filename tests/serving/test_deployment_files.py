"""`DeploymentFiles`: the written flag files parse back with the server's own readers, a real
server started from them answers Predict on an exported tiny model and serves Prometheus
metrics, and bad models are refused early, naming what is wrong."""

from __future__ import annotations

import json
import re

import grpc
import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from serving import Server
from serving import ServingError
from serving.batching_parameters import BatchingParameters
from serving.deployment_files import CONFIG_DIR_IN_CONTAINER
from serving.deployment_files import DeploymentFiles
from serving.model_config_list import ModelConfigList
from serving.monitoring_config import load_monitoring_config
from serving.monitoring_config import prometheus_path
from serving.server_options import ANY_FREE_PORT
from tests.serving.models import predict_request
from tests.serving.models import rest_request

FILES = {"models.config", "batching.config", "monitoring.config", "configmap.yaml",
         "docker-compose.override.yml"}


@pytest.fixture(scope="module")
def exported_base(tmp_path_factory, tiny_run_dir):
    """`tfinetune export`'s base path of the tiny sentiment run (version 1)."""
    from export import export_model

    base = tmp_path_factory.mktemp("deploy-exports") / "sentiment"
    export_model(tiny_run_dir, base)
    return base


def fake_base(root, name: str, versions=(1,)):
    """A base path whose version directories hold an (empty) saved_model.pb."""
    base = root / name
    for version in versions:
        (base / str(version)).mkdir(parents=True)
        (base / str(version) / "saved_model.pb").write_bytes(b"")
    return base


def test_files_parse_back_with_the_servers_readers(tmp_path):
    one, two = fake_base(tmp_path, "one"), fake_base(tmp_path, "two", versions=(1, 2))
    files = DeploymentFiles(models=(("one", str(one)), ("two-b", str(two))),
                            max_batch_size=16, batch_timeout_micros=500, num_batch_threads=3,
                            max_enqueued_batches=7, pad_variable_length_inputs=True)

    written = files.write(tmp_path / "out")

    assert set(written) == FILES and all(path.is_file() for path in written.values())
    models = ModelConfigList.read(written["models.config"])
    assert [(m.name, str(m.base_path), m.platform) for m in models] == [
        ("one", str(one), "tensorflow"), ("two-b", str(two), "tensorflow")]
    batching = BatchingParameters.from_file(written["batching.config"])
    assert (batching.max_batch_size, batching.batch_timeout_micros, batching.num_batch_threads,
            batching.max_enqueued_batches, batching.pad_variable_length_inputs) == (
        16, 500, 3, 7, True)
    monitoring = load_monitoring_config(written["monitoring.config"])
    assert prometheus_path(monitoring) == "/monitoring/prometheus/metrics"
    # The wrapper fields are written the way TF Serving's own testdata writes them.
    assert "max_batch_size {\n  value: 16\n}" in written["batching.config"].read_text()


def test_container_model_root_rewrites_base_paths_and_the_mounts_match(tmp_path):
    one = fake_base(tmp_path / "a", "exported-one")
    two = fake_base(tmp_path / "b", "two")
    files = DeploymentFiles(models=(("one", str(one)), ("two", str(two))),
                            container_model_root="/models/")
    out = tmp_path / "out"
    written = files.write(out)

    served = {m.name: str(m.base_path) for m in ModelConfigList.read(written["models.config"])}
    assert served == {"one": "/models/one", "two": "/models/two"}
    override = yaml.safe_load(written["docker-compose.override.yml"].read_text())
    mounts = {volume["target"]: volume["source"]
              for volume in override["services"]["tfserving"]["volumes"]}
    assert mounts == {CONFIG_DIR_IN_CONTAINER: str(out.resolve()),
                      "/models/one": str(one), "/models/two": str(two)}
    assert all(volume["read_only"] for volume in override["services"]["tfserving"]["volumes"])


def test_without_container_root_the_host_paths_are_absolute(tmp_path, monkeypatch):
    fake_base(tmp_path, "rel")
    monkeypatch.chdir(tmp_path)
    files = DeploymentFiles(models=(("rel", "rel"),))

    config = text_format.Parse(files.config_texts()["models.config"],
                               files.model_server_config().__class__())
    assert config.model_config_list.config[0].base_path == str(tmp_path / "rel")


def test_the_configmap_holds_the_three_files_verbatim(tmp_path):
    files = DeploymentFiles(models=(("one", str(fake_base(tmp_path, "one"))),),
                            configmap_name="my-config")
    configmap = yaml.safe_load(files.configmap_yaml())

    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["name"] == "my-config"
    assert configmap["data"] == files.config_texts()
    assert set(configmap["data"]) == {"models.config", "batching.config", "monitoring.config"}


@pytest.mark.parametrize("models, code, message", [
    ((), grpc.StatusCode.INVALID_ARGUMENT, "No model given. Expected at least one NAME=BASE_PATH"),
    ((("bad/name", "{one}"),), grpc.StatusCode.INVALID_ARGUMENT, "Invalid model name 'bad/name'"),
    ((("a:b", "{one}"),), grpc.StatusCode.INVALID_ARGUMENT, "Invalid model name 'a:b'"),
    ((("-x", "{one}"),), grpc.StatusCode.INVALID_ARGUMENT, "Invalid model name '-x'"),
    ((("one", "{one}"), ("one", "{one}")), grpc.StatusCode.INVALID_ARGUMENT,
     "Model name 'one' is given twice"),
    ((("one", "{missing}"),), grpc.StatusCode.NOT_FOUND,
     "Base path of model 'one' is not a directory: {missing}"),
    ((("one", "{empty}"),), grpc.StatusCode.NOT_FOUND,
     "Base path of model 'one' holds no version: no {empty}/<N>/saved_model.pb"),
    ((("one", "{one}/1"),), grpc.StatusCode.NOT_FOUND,
     "Expected the base path, not a version directory"),
])
def test_bad_models_are_refused_naming_the_problem(tmp_path, models, code, message):
    paths = {"one": fake_base(tmp_path, "one"), "missing": tmp_path / "missing",
             "empty": tmp_path / "empty"}
    (tmp_path / "empty" / "1").mkdir(parents=True)  # a version without saved_model.pb
    models = tuple((name, base.format(**paths)) for name, base in models)

    with pytest.raises(ServingError) as raised:
        DeploymentFiles(models=models)

    assert raised.value.code == code
    assert message.format(**paths) in raised.value.message


@pytest.mark.parametrize("option, message", [
    ({"container_model_root": "models"}, "container_model_root must be an absolute path"),
    ({"max_batch_size": 0}, "max_batch_size must be >= 1. Received: 0"),
    ({"num_batch_threads": 0}, "num_batch_threads must be >= 1. Received: 0"),
    ({"batch_timeout_micros": -1}, "batch_timeout_micros must be >= 0. Received: -1"),
    ({"configmap_name": "Bad_Name"}, "configmap_name must be a Kubernetes name"),
])
def test_bad_options_are_refused(tmp_path, option, message):
    with pytest.raises(ServingError) as raised:
        DeploymentFiles(models=(("one", str(fake_base(tmp_path, "one"))),), **option)
    assert message in raised.value.message


def test_a_server_started_from_the_files_serves_predict_and_metrics(tmp_path, exported_base):
    """The generated files as the flags of a real server: Predict over gRPC (batched), the
    readiness URL of the Kubernetes probe, and the Prometheus page."""
    written = DeploymentFiles(models=(("sentiment", str(exported_base)),),
                              max_batch_size=8, num_batch_threads=2).write(tmp_path / "deploy")
    server = Server(port=0, rest_api_port=ANY_FREE_PORT, file_system_poll_wait_seconds=0,
                    model_config_file=str(written["models.config"]), enable_batching=True,
                    batching_parameters_file=str(written["batching.config"]),
                    monitoring_config_file=str(written["monitoring.config"])).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(predict_request(
                "sentiment", {"text": np.array([b"a good movie", b"an awful plot"])}),
                timeout=60)
        probabilities = response.outputs["probabilities"]
        assert [d.size for d in probabilities.tensor_shape.dim] == [2, 2]
        assert response.model_spec.version.value == 1

        status, _, body = rest_request(server.rest_port, "GET", "/v1/models/sentiment")
        assert status == 200
        assert json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"

        status, _, page = rest_request(server.rest_port, "GET",
                                       "/monitoring/prometheus/metrics")
        assert status == 200
        assert re.search(rb'^:tensorflow:serving:request_count\{model_name="sentiment",'
                         rb'status="OK"\} [1-9]', page, re.MULTILINE), page.decode()

        # batching.config's max_batch_size (8) is applied: a larger request is refused.
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(predict_request("sentiment", {"text": np.array([b"ok"] * 9)}),
                             timeout=60)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Task size 9 is larger than maximum input batch size 8" in raised.value.details()
    finally:
        server.stop(grace=5)


def test_symlinked_base_paths_are_kept_not_resolved(tmp_path):
    """A base path that is a symlink stays one in models.config: switching the link to another
    directory of versions is then seen by the polling server (a resolved path would pin the old
    target)."""
    target = fake_base(tmp_path, "releases-1")
    link = tmp_path / "current"
    link.symlink_to(target, target_is_directory=True)

    files = DeploymentFiles(models=(("sentiment", str(link)),))
    written = files.write(tmp_path / "out")

    config = text_format.Parse(written["models.config"].read_text(),
                               model_server_config_pb2.ModelServerConfig())
    assert [entry.base_path for entry in config.model_config_list.config] == [str(link)]
