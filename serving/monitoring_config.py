"""`MonitoringConfig`: TF Serving's `--monitoring_config_file` message
(tensorflow_serving/config/monitoring_config.proto), read from its text format.

    prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }

The `tensorflow-serving-api` wheel does not ship `monitoring_config_pb2`, so unless a
`tensorflow_serving.config.monitoring_config_pb2` is importable the message classes are built
here from the same schema (package `tensorflow.serving`, same field names and numbers), in a
private descriptor pool; `text_format` then parses exactly what TF Serving's parser accepts.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format

from serving.serving_error import ServingError

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


def _build_message_class():
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving",
        syntax="proto3")
    prometheus = file.message_type.add(name="PrometheusConfig")
    field = descriptor_pb2.FieldDescriptorProto
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL,
                         label=field.LABEL_OPTIONAL, json_name="enable")
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING,
                         label=field.LABEL_OPTIONAL, json_name="path")
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=field.LABEL_OPTIONAL, json_name="prometheusConfig")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


try:
    from tensorflow_serving.config.monitoring_config_pb2 import MonitoringConfig
except ImportError:  # the tensorflow-serving-api wheel has no monitoring_config_pb2
    MonitoringConfig = _build_message_class()


def load_monitoring_config(path: str | Path):
    """Reads a text `MonitoringConfig` file.

    Raises:
        ServingError: NOT_FOUND when the file cannot be read; INVALID_ARGUMENT
            `Invalid protobuf file: '<path>'` (TF Serving's `ParseProtoTextFile` text) plus
            the parser's reason when it is not a valid text MonitoringConfig.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"{path}; {reason}") from None
    config = MonitoringConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Invalid protobuf file: '{path}': {error}") from None
    return config


def prometheus_path(config) -> str | None:
    """The URL path of the Prometheus page, or None when Prometheus is not enabled."""
    if config is None or not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
