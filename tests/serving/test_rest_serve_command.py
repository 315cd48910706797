"""`tfinetune serve` with TF Serving's REST and monitoring flags, as a real process."""

from __future__ import annotations

import json
import socket

from tests.serving.models import metric_value
from tests.serving.models import rest_request
from tests.serving.serve_process import ServeProcess


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_rest_api_and_prometheus_from_tf_serving_flags(model_bases, tmp_path):
    config = tmp_path / "monitoring_config.txt"
    config.write_text('prometheus_config: {\n  enable: true,\n  path: "/monitoring/prometheus/'
                      'metrics"\n}\n')
    rest_port = free_port()
    with ServeProcess("--port=0", f"--rest_api_port={rest_port}", "--model_name=half",
                      f"--model_base_path={model_bases['half']}",
                      f"--monitoring_config_file={config}", "--rest_api_timeout_in_ms=10000",
                      "--file_system_poll_wait_seconds=0") as serve:
        announced = serve.wait_for(r"REST API on http://127\.0\.0\.1:(\d+)")
        assert int(announced.group(1)) == rest_port

        status, _, body = rest_request(rest_port, "POST", "/v1/models/half:predict",
                                       {"instances": [1.0, 2.0, 5.0]})
        assert (status, json.loads(body)) == (200, {"predictions": [2.5, 3.0, 4.5]})
        status, _, page = rest_request(rest_port, "GET", "/monitoring/prometheus/metrics")
        assert status == 200
        assert metric_value(page, ":tensorflow:serving:request_count", model_name="half",
                            status="OK") == 1
        assert serve.stop() == 0


def test_the_free_port_sentinel_is_python_api_only(tmp_path):
    """On the command line REST ports are TF Serving's 0-65535 (0: no REST)."""
    from click.testing import CliRunner

    from tfinetune.cli.serve import command

    result = CliRunner().invoke(command, [f"--model-base-path={tmp_path}",
                                          "--rest-api-port=-1"])

    assert result.exit_code == 2
    assert "--rest-api-port" in result.output
