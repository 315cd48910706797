"""`MonitoringConfig`: TF Serving's `--monitoring_config_file` message
(tensorflow_serving/config/monitoring_config.proto), read from its text format.

    prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }

The message class comes from `serving.config_protos` (the `tensorflow-serving-api` wheel does
not ship `monitoring_config_pb2`).
"""

from __future__ import annotations

from pathlib import Path

import grpc
from google.protobuf import text_format

from serving import config_protos
from serving.serving_error import ServingError

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
MonitoringConfig = config_protos.monitoring_config_message()


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
