"""`ModelConfigList`: the models of a TF Serving `ModelServerConfig` (the text file of
`--model_config_file`, or the config of a `ReloadConfigRequest`), checked the way
`ServerCore::ReloadConfig` checks them and with its status texts."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Iterator

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.model_config import TENSORFLOW_PLATFORM
from serving.model_config import ModelConfig
from serving.serving_error import ServingError
from serving.version_policy import VersionPolicy

logger = logging.getLogger(__name__)

# model_server_config.proto's deprecated ModelType enum: TENSORFLOW = 1.
_MODEL_TYPE_TENSORFLOW = 1


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _is_relative(base_path: str) -> bool:
    """TF Serving's `UriIsRelativePath`: no scheme, no host and not an absolute path."""
    return "://" not in base_path and not base_path.startswith("/")


def _platform(config) -> str:
    """TF Serving's `GetPlatform` (server_core.cc), with its texts."""
    if config.model_type:
        if config.model_platform:
            raise _invalid("Illegal setting both ModelServerConfig::model_type (deprecated) and "
                           "ModelServerConfig::model_platform.")
        if config.model_type != _MODEL_TYPE_TENSORFLOW:
            raise _invalid(f"ModelServerConfig::model_type choice {config.model_type} not "
                           "supported.")
        return TENSORFLOW_PLATFORM
    if not config.model_platform:
        raise _invalid("Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                       "ModelServerConfig::model_platform.")
    return config.model_platform


def _version_policy(config) -> VersionPolicy:
    """The `model_version_policy` of a config (unset: the latest version, as TF Serving)."""
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy.all()
    if choice == "specific":
        if not policy.specific.versions:
            raise _invalid(f"Model {config.name} has a specific version policy without "
                           "versions. Expected model_version_policy { specific { versions: N } }.")
        return VersionPolicy.specific(policy.specific.versions)
    # TF Serving serves max(num_versions, 1) versions (file_system_storage_path_source.cc).
    return VersionPolicy.latest(max(policy.latest.num_versions, 1))


@dataclasses.dataclass(frozen=True)
class ModelConfigList:
    """The models a `ModelServerConfig` lists, in file order.

    Example:
        models = ModelConfigList.read("/models/models.config")
        for model in models:
            print(model.name, model.base_path, model.version_policy)

    Attributes:
        models: One `ModelConfig` per listed model.
    """

    models: tuple[ModelConfig, ...] = ()

    def __iter__(self) -> Iterator[ModelConfig]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.models]

    @classmethod
    def read(cls, path: str | Path) -> "ModelConfigList":
        """Reads and checks a text `ModelServerConfig` file (`--model_config_file`).

        Raises:
            ServingError: The file cannot be read (NOT_FOUND), is not a text
                `ModelServerConfig` (INVALID_ARGUMENT `Invalid protobuf file: '<path>'`, as
                TF Serving), or lists invalid models (see `from_proto`).
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"{path}; No such file or directory") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Cannot read the model config file {path}: {error}") from None
        config = model_server_config_pb2.ModelServerConfig()
        try:
            text_format.Parse(text, config)
        except text_format.ParseError as error:
            logger.error("Cannot parse %s as a ModelServerConfig: %s", path, error)
            raise _invalid(f"Invalid protobuf file: '{path}'") from None
        if config.WhichOneof("config") == "custom_model_config":
            # tensorflow_model_server aborts with this text (server.cc LoadCustomModelConfig).
            raise _invalid("ModelServer does not yet support custom model config.")
        return cls.from_proto(config)

    @classmethod
    def from_proto(cls, config) -> "ModelConfigList":
        """Checks a `ModelServerConfig` that holds a `model_config_list` (or nothing).

        The checks and texts are `ServerCore`'s: a name listed twice, a relative base path, a
        missing platform (the platform itself is checked by `ModelManager`, which serves only
        "tensorflow"); plus a specific version policy without versions and a remote base path.

        Raises:
            ServingError: INVALID_ARGUMENT with TF Serving's text.
        """
        listed = config.model_config_list.config
        names: set[str] = set()
        for model in listed:
            if model.name in names:
                raise _invalid(f"Illegal to list model {model.name} multiple times in config "
                               "list")
            names.add(model.name)
        for model in listed:
            if _is_relative(model.base_path):
                raise _invalid(f"Expected model {model.name} to have an absolute path or URI; "
                               f"got base_path()={model.base_path}")
        models = []
        for model in listed:
            if "://" in model.base_path:
                raise _invalid(f"Model {model.name} has base_path()={model.base_path}: only "
                               "local directories are served. Expected an absolute path.")
            if model.HasField("logging_config"):
                logger.warning("Model %s: logging_config (request logging) is not supported by "
                               "this server; ignored.", model.name)
            models.append(ModelConfig(
                name=model.name, base_path=Path(os.path.normpath(model.base_path)),
                version_policy=_version_policy(model),
                version_labels=dict(model.version_labels), platform=_platform(model)))
        return cls(tuple(models))
