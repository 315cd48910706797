"""`DeploymentFiles`: the flag files stock `tensorflow_model_server` (and `tfinetune serve`) read
for a set of exported models, plus a Kubernetes ConfigMap and a docker compose override.

    files = DeploymentFiles(models=(("sentiment", "/exports/sentiment"),),
                            container_model_root="/models")
    files.write("deploy-config")

writes into `deploy-config/`:

* `models.config`: text `ModelServerConfig` (`--model_config_file`), one `model_config_list`
  entry per model, base path `ROOT/NAME` with a container root, else the absolute host path;
* `batching.config`: text `BatchingParameters` (`--batching_parameters_file`, with
  `--enable_batching=true`);
* `monitoring.config`: text `MonitoringConfig` (`--monitoring_config_file`), Prometheus at
  `/monitoring/prometheus/metrics` on the REST port;
* `configmap.yaml`: a Kubernetes ConfigMap holding the three files (mounted at
  `CONFIG_DIR_IN_CONTAINER` by `serving/deploy/kubernetes/deployment.yaml`);
* `docker-compose.override.yml`: bind mounts of this directory and of every model's base path
  where `models.config` names them, for `serving/deploy/docker-compose.yml`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import grpc
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.config_protos import batching_parameters_message
from serving.config_protos import monitoring_config_message
from serving.serving_error import ServingError

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
MONITORING_CONFIG = "monitoring.config"
CONFIGMAP = "configmap.yaml"
COMPOSE_OVERRIDE = "docker-compose.override.yml"
# Where serving/deploy/ mounts the generated config files inside the container.
CONFIG_DIR_IN_CONTAINER = "/etc/tfserving"
# The service name of serving/deploy/docker-compose.yml.
COMPOSE_SERVICE = "tfserving"
DEFAULT_CONFIGMAP_NAME = "tfserving-config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# A name usable in REST URLs (/v1/models/NAME:predict), file paths and metric labels.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CONFIGMAP_NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


class _LiteralDumper(yaml.SafeDumper):
    """Writes multi-line strings as `|` blocks, so the ConfigMap reads like the files."""


_LiteralDumper.add_representer(
    str, lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


@dataclasses.dataclass(frozen=True)
class DeploymentFiles:
    """The deployment files of a set of exported models; checked when built.

    Attributes:
        models: `(name, base_path)` pairs; a base path is the directory of numeric version
            directories that `tfinetune export` writes (`BASE/1/saved_model.pb`).
        container_model_root: Where the container sees the models: each base path becomes
            `ROOT/NAME` in `models.config` (and is mounted there by the compose override).
            None: the absolute host paths.
        max_batch_size: `BatchingParameters.max_batch_size`: the most rows run at once.
        batch_timeout_micros: How long an open batch waits for more requests.
        num_batch_threads: Threads running batches; match the CPUs the server gets.
        max_enqueued_batches: Batches queued before requests are refused (UNAVAILABLE).
        pad_variable_length_inputs: Pad inputs of different lengths to batch them together.
        configmap_name: `metadata.name` of the Kubernetes ConfigMap.

    Raises:
        ServingError: INVALID_ARGUMENT for a bad model name, a name given twice, a relative
            container root or a batching setting out of range; NOT_FOUND for a base path that
            is missing or holds no version directory with a `saved_model.pb`.
    """

    models: tuple[tuple[str, str], ...]
    container_model_root: str | None = None
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100
    pad_variable_length_inputs: bool = False
    configmap_name: str = DEFAULT_CONFIGMAP_NAME

    def __post_init__(self) -> None:
        # Absolute, but symlinks kept: a server polling a base path that is a symlink follows
        # it when it is switched to another directory of versions.
        object.__setattr__(self, "models", tuple((str(name), os.path.abspath(base))
                                                 for name, base in self.models))
        if not self.models:
            raise _invalid("No model given. Expected at least one NAME=BASE_PATH.")
        seen: set[str] = set()
        for name, base in self.models:
            if not MODEL_NAME_PATTERN.fullmatch(name):
                raise _invalid(f"Invalid model name {name!r}: expected letters, digits, '.', "
                               "'_' or '-', starting with a letter or digit (it is part of "
                               "REST URLs /v1/models/NAME).")
            if name in seen:
                raise _invalid(f"Model name {name!r} is given twice; each model needs its own "
                               "name.")
            seen.add(name)
            self._check_base_path(name, Path(base))
        root = self.container_model_root
        if root is not None and not root.startswith("/"):
            raise _invalid(f"container_model_root must be an absolute path (TF Serving wants "
                           f"absolute base paths). Received: {root!r}")
        for field, least in (("max_batch_size", 1), ("batch_timeout_micros", 0),
                             ("num_batch_threads", 1), ("max_enqueued_batches", 1)):
            value = getattr(self, field)
            if value < least:
                raise _invalid(f"{field} must be >= {least}. Received: {value}")
        if not _CONFIGMAP_NAME_PATTERN.fullmatch(self.configmap_name):
            raise _invalid("configmap_name must be a Kubernetes name (lower-case letters, "
                           f"digits, '-', '.'). Received: {self.configmap_name!r}")

    @staticmethod
    def _check_base_path(name: str, base: Path) -> None:
        if not base.is_dir():
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Base path of model {name!r} is not a directory: {base}. "
                               "Expected the directory `tfinetune export` wrote, holding "
                               "version directories (BASE/1/saved_model.pb).")
        versions = [child for child in base.iterdir()
                    if child.name.isdigit() and (child / "saved_model.pb").is_file()]
        if not versions:
            found = sorted(child.name for child in base.iterdir())[:10]
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Base path of model {name!r} holds no version: no {base}/<N>/"
                               f"saved_model.pb. Expected the base path, not a version "
                               f"directory. Found: {found}")

    def served_base_path(self, name: str) -> str:
        """The base path `models.config` gives model `name` (as the server sees it)."""
        host = dict(self.models)[name]
        if self.container_model_root is None:
            return host
        return f"{self.container_model_root.rstrip('/')}/{name}"

    def model_server_config(self):
        """The `ModelServerConfig` of every model (latest version, TensorFlow platform)."""
        config = model_server_config_pb2.ModelServerConfig()
        for name, _ in self.models:
            model = config.model_config_list.config.add()
            model.name = name
            model.base_path = self.served_base_path(name)
            model.model_platform = "tensorflow"
        return config

    def batching_parameters(self):
        """The `BatchingParameters` message of the batching options."""
        parameters = batching_parameters_message()()
        parameters.max_batch_size.value = self.max_batch_size
        parameters.batch_timeout_micros.value = self.batch_timeout_micros
        parameters.num_batch_threads.value = self.num_batch_threads
        parameters.max_enqueued_batches.value = self.max_enqueued_batches
        parameters.pad_variable_length_inputs = self.pad_variable_length_inputs
        return parameters

    def monitoring_config(self):
        """The `MonitoringConfig`: Prometheus enabled at TF Serving's default path."""
        config = monitoring_config_message()()
        config.prometheus_config.enable = True
        config.prometheus_config.path = PROMETHEUS_PATH
        return config

    def config_texts(self) -> dict[str, str]:
        """File name -> text of the three TF Serving flag files."""
        return {name: text_format.MessageToString(message)
                for name, message in ((MODELS_CONFIG, self.model_server_config()),
                                      (BATCHING_CONFIG, self.batching_parameters()),
                                      (MONITORING_CONFIG, self.monitoring_config()))}

    def configmap_yaml(self) -> str:
        """A Kubernetes ConfigMap whose keys are the flag files' names."""
        configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": self.configmap_name,
                                  "labels": {"app.kubernetes.io/name": "tfserving"}},
                     "data": self.config_texts()}
        return yaml.dump(configmap, Dumper=_LiteralDumper, sort_keys=False)

    def compose_override_yaml(self, config_dir: str | Path) -> str:
        """Bind mounts for `serving/deploy/docker-compose.yml`: `config_dir` (where these files
        are written) at `CONFIG_DIR_IN_CONTAINER`, each base path at its served path."""
        volumes = [{"type": "bind", "source": str(Path(config_dir).resolve()),
                    "target": CONFIG_DIR_IN_CONTAINER, "read_only": True}]
        volumes += [{"type": "bind", "source": host, "target": self.served_base_path(name),
                     "read_only": True} for name, host in self.models]
        return yaml.safe_dump({"services": {COMPOSE_SERVICE: {"volumes": volumes}}},
                              sort_keys=False)

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Writes every file into `directory` (created if missing, files replaced).

        Returns:
            File name -> path written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        texts = {**self.config_texts(), CONFIGMAP: self.configmap_yaml(),
                 COMPOSE_OVERRIDE: self.compose_override_yaml(directory)}
        written = {}
        for name, text in texts.items():
            path = directory / name
            staged = path.with_name(f".{name}.tmp")
            staged.write_text(text, encoding="utf-8")
            staged.replace(path)
            written[name] = path
        return written
