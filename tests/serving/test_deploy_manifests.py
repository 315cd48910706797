"""serving/deploy/: the compose file and Kubernetes manifests parse, agree with each other (ports,
flags, probe, ConfigMap keys, mounts) and with what `tfinetune deploy-config` writes; their
flags run `tfinetune serve` and pass unchanged to `--engine tensorflow-model-server`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from serving.deployment_files import BATCHING_CONFIG
from serving.deployment_files import CONFIG_DIR_IN_CONTAINER
from serving.deployment_files import COMPOSE_SERVICE
from serving.deployment_files import DEFAULT_CONFIGMAP_NAME
from serving.deployment_files import MODELS_CONFIG
from serving.deployment_files import MONITORING_CONFIG
from serving.deployment_files import PROMETHEUS_PATH
from serving.deployment_files import DeploymentFiles
from serving.model_config_list import ModelConfigList
from tests.serving.models import rest_request
from tests.serving.serve_process import ServeProcess

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "serving" / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CONTAINER_MODEL_ROOT = "/models"


def load(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def kind(name: str) -> dict:
    found = [d for path in KUBERNETES.glob("*.yaml") for d in load(path) if d["kind"] == name]
    assert len(found) == 1, f"expected one {name} in {KUBERNETES}"
    return found[0]


def flags(arguments: list[str]) -> dict[str, str]:
    """`--name=value` arguments -> {name: value}."""
    assert all(argument.startswith("--") and "=" in argument for argument in arguments)
    return dict(argument[2:].split("=", 1) for argument in arguments)


def container() -> dict:
    return kind("Deployment")["spec"]["template"]["spec"]["containers"][0]


def compose_service() -> dict:
    return load(DEPLOY / "docker-compose.yml")[0]["services"][COMPOSE_SERVICE]


def test_every_file_parses():
    assert {path.name for path in KUBERNETES.glob("*.yaml")} == {
        "configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml"}
    assert sorted(d["kind"] for path in KUBERNETES.glob("*.yaml") for d in load(path)) == [
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Service", "Service"]
    assert compose_service()["image"].startswith("tensorflow/serving:")
    assert container()["image"].startswith("tensorflow/serving:")


def test_compose_and_deployment_run_the_binary_with_the_same_flags():
    deployment_flags = flags(container()["args"])
    assert container()["command"] == ["tensorflow_model_server"]
    assert compose_service()["entrypoint"] == ["tensorflow_model_server"]
    assert flags(compose_service()["command"]) == deployment_flags
    assert deployment_flags == {
        "port": "8500", "rest_api_port": "8501",
        "model_config_file": f"{CONFIG_DIR_IN_CONTAINER}/{MODELS_CONFIG}",
        "model_config_file_poll_wait_seconds": "60",
        "enable_batching": "true",
        "batching_parameters_file": f"{CONFIG_DIR_IN_CONTAINER}/{BATCHING_CONFIG}",
        "monitoring_config_file": f"{CONFIG_DIR_IN_CONTAINER}/{MONITORING_CONFIG}",
        # seq2seq exports' XLA generation fails on stock TF Serving without it
        "xla_cpu_compilation_enabled": "true",
    }


def test_ports_agree_across_flags_compose_deployment_service_and_probes():
    args = flags(container()["args"])
    grpc_port, http_port = int(args["port"]), int(args["rest_api_port"])
    assert {p["name"]: p["containerPort"] for p in container()["ports"]} == {
        "grpc": grpc_port, "http": http_port}
    assert compose_service()["ports"] == [f"{grpc_port}:{grpc_port}", f"{http_port}:{http_port}"]
    services = [d for d in load(KUBERNETES / "service.yaml")]
    selector = kind("Deployment")["spec"]["selector"]["matchLabels"]
    assert kind("Deployment")["spec"]["template"]["metadata"]["labels"] == selector
    for service in services:
        assert service["spec"]["selector"] == selector
        assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
            "grpc": (grpc_port, grpc_port), "http": (http_port, http_port)}
    assert [s["spec"].get("clusterIP") for s in services] == [None, "None"]
    assert container()["readinessProbe"]["httpGet"]["port"] == http_port
    assert container()["livenessProbe"]["tcpSocket"]["port"] == grpc_port
    annotations = kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(http_port)
    assert annotations["prometheus.io/path"] == PROMETHEUS_PATH


def test_configmap_keys_are_the_files_the_flags_name_and_deploy_config_writes(tmp_path):
    configmap = kind("ConfigMap")
    pod = kind("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container()["volumeMounts"]}
    config_volume = next(name for name, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == configmap["metadata"]["name"] == (
        DEFAULT_CONFIGMAP_NAME)
    assert mounts[config_volume] == CONFIG_DIR_IN_CONTAINER
    referenced = {value for name, value in flags(container()["args"]).items()
                  if name.endswith("_file")}
    assert referenced == {f"{mounts[config_volume]}/{key}" for key in configmap["data"]}

    # The example is exactly what deploy-config writes for its model (data and keys).
    base = tmp_path / "sentiment" / "1"
    base.mkdir(parents=True)
    (base / "saved_model.pb").write_bytes(b"")
    generated = yaml.safe_load(DeploymentFiles(
        models=(("sentiment", str(base.parent)),),
        container_model_root=CONTAINER_MODEL_ROOT).configmap_yaml())
    assert generated["data"] == configmap["data"]
    assert generated["metadata"] == configmap["metadata"]


def test_models_volume_is_mounted_where_the_model_config_puts_base_paths(tmp_path):
    models_file = tmp_path / MODELS_CONFIG
    models_file.write_text(kind("ConfigMap")["data"][MODELS_CONFIG])
    models = ModelConfigList.read(models_file)
    mounts = {mount["mountPath"]: mount for mount in container()["volumeMounts"]}
    assert mounts[CONTAINER_MODEL_ROOT]["readOnly"] is True
    assert all(str(model.base_path.parent) == CONTAINER_MODEL_ROOT for model in models)
    # The readiness probe asks for a model the config serves.
    probe = container()["readinessProbe"]["httpGet"]["path"]
    assert probe.startswith("/v1/models/") and probe.rsplit("/", 1)[1] in models.names


def test_hpa_scales_the_deployment_on_cpu_against_its_requests():
    hpa = kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": kind("Deployment")["metadata"]["name"]}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "cpu" in container()["resources"]["requests"]  # utilization needs a request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_arguments(config_dir: Path) -> tuple[list[str], int]:
    """The Deployment's args with the config directory and ports of this machine."""
    grpc_port, rest_port = free_port(), free_port()
    arguments = []
    for argument in container()["args"]:
        argument = argument.replace(CONFIG_DIR_IN_CONTAINER, str(config_dir))
        argument = argument.replace("--port=8500", f"--port={grpc_port}")
        arguments.append(argument.replace("--rest_api_port=8501",
                                          f"--rest_api_port={rest_port}"))
    return arguments, rest_port


def test_the_deployment_flags_run_tfinetune_serve_on_deploy_config_files(tmp_path,
                                                                         model_bases):
    """`tfinetune serve` started with the manifests' flags on generated files is ready at the
    probe URL and serves the Prometheus page."""
    DeploymentFiles(models=(("half", str(model_bases["half"])),)).write(tmp_path / "deploy")
    arguments, rest_port = local_arguments(tmp_path / "deploy")

    with ServeProcess(*arguments) as process:
        process.wait_for(r"Serving model 'half' version 1")
        status, _, body = rest_request(rest_port, "GET", "/v1/models/half")
        assert status == 200
        assert json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
        status, _, page = rest_request(rest_port, "GET", PROMETHEUS_PATH)
        assert status == 200 and b":tensorflow:serving:request_count" in page
        assert process.stop() == 0


def test_the_deployment_flags_pass_unchanged_to_tensorflow_model_server(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.txt"
    script = bin_dir / "tensorflow_model_server"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}\n")
    script.chmod(0o755)
    arguments = container()["args"]

    result = subprocess.run(
        [sys.executable, "-c", "from tfinetune.cli.main import cli; cli()", "serve",
         "--engine", "tensorflow-model-server", *arguments],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})

    assert result.returncode == 0, result.stderr
    assert record.read_text().splitlines() == arguments
