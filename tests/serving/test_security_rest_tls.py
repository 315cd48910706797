"""HTTPS for the REST API (--rest_api_ssl_config_file, TF Serving's SSLConfig text format as
for gRPC's --ssl_config_file), with client-certificate verification when `client_verify` is
set. Certificates are made in the test with openssl (the `pki` fixture of test_ssl.py)."""

from __future__ import annotations

import http.client
import json
import logging
import ssl
from pathlib import Path

import grpc
import pytest

from serving import Server
from serving import ServingError
from serving.server_options import ANY_FREE_PORT
from tests.serving.test_ssl import pki  # noqa: F401  (module fixture: a CA and certificates)
from tests.serving.test_ssl import write_ssl_config

TIMEOUT = 10


@pytest.fixture(scope="module")
def pem_files(pki, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    directory = tmp_path_factory.mktemp("rest-tls-pem")
    paths = {}
    for name, data in pki.items():
        paths[name] = directory / name
        paths[name].write_bytes(data)
    return paths


@pytest.fixture()
def https_server(model_bases, tmp_path, pki, request):  # noqa: F811
    """A server whose REST API speaks HTTPS; `request.param`: whether to verify clients."""
    config = write_ssl_config(tmp_path / "rest-ssl.config", server_key=pki["server.key"],
                              server_cert=pki["server.pem"], custom_ca=pki["ca.pem"],
                              client_verify=request.param)
    server = Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                    file_system_poll_wait_seconds=0,
                    rest_api_ssl_config_file=str(config)).start()
    yield server
    server.stop(grace=2)


def https_get(port: int, pem_files: dict, client: str | None = None) -> tuple[int, dict]:
    context = ssl.create_default_context(cafile=str(pem_files["ca.pem"]))
    if client is not None:
        context.load_cert_chain(pem_files[f"{client}.pem"], pem_files[f"{client}.key"])
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT,
                                             context=context)
    try:
        connection.request("POST", "/v1/models/half:predict",
                           body=json.dumps({"instances": [[2.0]]}))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def assert_refused(call) -> None:
    """The TLS handshake (or, with TLS 1.3, the first read after it) fails."""
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
        call()


@pytest.mark.parametrize("https_server", [False], indirect=True)
def test_rest_over_https(https_server, pem_files):
    assert https_get(https_server.rest_port, pem_files) == (200, {"predictions": [[3.0]]})
    # A client that does not trust the CA refuses the server.
    untrusting = http.client.HTTPSConnection("127.0.0.1", https_server.rest_port,
                                             timeout=TIMEOUT,
                                             context=ssl.create_default_context())
    assert_refused(lambda: untrusting.request("GET", "/v1/models/half"))
    untrusting.close()


@pytest.mark.parametrize("https_server", [False], indirect=True)
def test_plain_http_gets_no_answer_from_the_https_port(https_server):
    connection = http.client.HTTPConnection("127.0.0.1", https_server.rest_port,
                                            timeout=TIMEOUT)
    try:
        assert_refused(lambda: (connection.request("GET", "/v1/models/half"),
                                connection.getresponse().read()))
    finally:
        connection.close()
    # The failed handshakes did not stop the server.
    assert https_server.rest_port


@pytest.mark.parametrize("https_server", [True], indirect=True)
def test_client_verify_requires_a_client_certificate_from_custom_ca(https_server, pem_files):
    port = https_server.rest_port
    assert https_get(port, pem_files, client="client") == (200, {"predictions": [[3.0]]})
    assert_refused(lambda: https_get(port, pem_files))
    assert_refused(lambda: https_get(port, pem_files, client="stranger"))
    assert https_get(port, pem_files, client="client")[0] == 200


def test_the_same_ssl_config_file_secures_grpc_and_rest(model_bases, tmp_path, pki,  # noqa: F811
                                                        pem_files):
    config = write_ssl_config(tmp_path / "ssl.config", server_key=pki["server.key"],
                              server_cert=pki["server.pem"], custom_ca=pki["ca.pem"],
                              client_verify=True)
    server = Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                    file_system_poll_wait_seconds=0, ssl_config_file=str(config),
                    rest_api_ssl_config_file=str(config)).start()
    try:
        assert https_get(server.rest_port, pem_files, client="client")[0] == 200
        assert_refused(lambda: https_get(server.rest_port, pem_files))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki["ca.pem"], private_key=pki["client.key"],
            certificate_chain=pki["client.pem"])
        with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    finally:
        server.stop(grace=2)


def test_a_bad_rest_ssl_config_is_a_startup_error(model_bases, tmp_path, pki):  # noqa: F811
    config = write_ssl_config(tmp_path / "rest-ssl.config", server_key=pki["server.key"],
                              server_cert=pki["ca.pem"])  # key and certificate do not match
    server = Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                    rest_api_ssl_config_file=str(config))

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.message.startswith(f"Invalid SSL config file {config}: ")
    assert server.model_manager.available_versions("half") == []


def test_plain_rest_beside_tls_grpc_on_a_public_address_is_warned_about(model_bases, tmp_path,
                                                                        pki, caplog):  # noqa: F811
    config = write_ssl_config(tmp_path / "ssl.config", server_key=pki["server.key"],
                              server_cert=pki["server.pem"])
    with caplog.at_level(logging.WARNING, logger="serving.rest_server"):
        server = Server({"half": model_bases["half"]}, host="0.0.0.0", port=0,
                        rest_api_port=ANY_FREE_PORT, file_system_poll_wait_seconds=0,
                        ssl_config_file=str(config)).start()
        server.stop(grace=1)

    assert any("the REST API on 0.0.0.0 is plain HTTP" in record.getMessage()
               for record in caplog.records)
