"""The server listens on loopback unless told otherwise (tensorflow_model_server listens on all
interfaces; this server deliberately does not). Checked on the kernel's socket table
(/proc/net/tcp*), for the Python API and for `tfinetune serve` as a real process, which also
serves TLS gRPC and HTTPS REST from one SSLConfig file."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
from pathlib import Path

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving.server_options import ANY_FREE_PORT
from serving.server_options import ServerOptions
from tests.serving.models import predict_request
from tests.serving.serve_process import ServeProcess
from tests.serving.test_ssl import pki  # noqa: F401  (module fixture: a CA and certificates)
from tests.serving.test_ssl import write_ssl_config
from tfinetune.cli.serve import command

TIMEOUT = 20
WILDCARDS = {"0.0.0.0", "::"}


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # IPv6: four 32-bit words, each in host (little-endian) order. gRPC listens on IPv6
    # sockets: an IPv4 address shows as ::ffff:a.b.c.d.
    address = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return str(address.ipv4_mapped or address)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on TCP `port`."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(_address(address))
    return found


def test_defaults_are_loopback():
    assert ServerOptions().host == "127.0.0.1"
    host = next(param for param in command.params if param.name == "host")
    assert host.default == "127.0.0.1"
    assert "127.0.0.1" in CliRunner().invoke(command, ["--help"]).output


def test_the_server_binds_loopback_by_default(model_bases):
    server = Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                    file_system_poll_wait_seconds=0).start()
    try:
        grpc_addresses = listening_addresses(server.port)
        rest_addresses = listening_addresses(server.rest_port)
    finally:
        server.stop(grace=1)

    assert grpc_addresses == {"127.0.0.1"}
    assert rest_addresses == {"127.0.0.1"}


def test_all_interfaces_only_when_asked(model_bases):
    server = Server({"half": model_bases["half"]}, host="0.0.0.0", port=0,
                    rest_api_port=ANY_FREE_PORT, file_system_poll_wait_seconds=0).start()
    try:
        grpc_addresses = listening_addresses(server.port)
        rest_addresses = listening_addresses(server.rest_port)
    finally:
        server.stop(grace=1)

    assert grpc_addresses and grpc_addresses <= WILDCARDS
    assert rest_addresses == {"0.0.0.0"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_command_binds_loopback_and_serves_tls_on_both_apis(model_bases, tmp_path,
                                                                  pki):  # noqa: F811
    config = write_ssl_config(tmp_path / "ssl.config", server_key=pki["server.key"],
                              server_cert=pki["server.pem"], custom_ca=pki["ca.pem"],
                              client_verify=True)
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(pki[name])
    rest_port = _free_port()
    with ServeProcess("--port=0", f"--rest_api_port={rest_port}", "--model_name=half",
                      f"--model_base_path={model_bases['half']}",
                      "--file_system_poll_wait_seconds=0", f"--ssl_config_file={config}",
                      f"--rest_api_ssl_config_file={config}") as serve:
        port = int(serve.wait_for(r"on 127\.0\.0\.1:(\d+)").group(1))
        serve.wait_for(rf"REST API on https://127\.0\.0\.1:{rest_port}")
        assert listening_addresses(port) == {"127.0.0.1"}
        assert listening_addresses(rest_port) == {"127.0.0.1"}

        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
        connection = http.client.HTTPSConnection("127.0.0.1", rest_port, timeout=TIMEOUT,
                                                 context=context)
        connection.request("POST", "/v1/models/half:predict", body='{"instances": [[2.0]]}')
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"predictions": [[3.0]]})
        connection.close()

        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki["ca.pem"], private_key=pki["client.key"],
            certificate_chain=pki["client.pem"])
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            answer = stub.Predict(predict_request("half", {"x": np.array([[2.0]], np.float32)}),
                                  timeout=TIMEOUT)
        assert list(answer.outputs["y"].float_val) == [3.0]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            with pytest.raises(grpc.RpcError) as raised:
                prediction_service_pb2_grpc.PredictionServiceStub(plaintext).Predict(
                    predict_request("half", {"x": np.array([[2.0]], np.float32)}), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert serve.stop() == 0
