"""--ssl_config_file: TF Serving's text SSLConfig (PEM texts inline) -> TLS on the gRPC port,
with client-certificate verification when `client_verify` is set. Certificates are made here
with openssl (a test CA, a server certificate for localhost, client certificates)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving import ServingError
from serving.config_protos import ssl_config_message
from tests.serving.models import predict_request

TIMEOUT = 10


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


def _make_signed(directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "1", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
             cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, bytes]:
    """PEMs: a CA, a server certificate for localhost/127.0.0.1, a client certificate from the
    CA, and a client certificate from another CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make test certificates")
    directory = tmp_path_factory.mktemp("pki")
    _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    _make_signed(directory, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                            "extendedKeyUsage=serverAuth")
    _make_signed(directory, "client", "ca", "extendedKeyUsage=clientAuth")
    _make_signed(directory, "stranger", "other-ca", "extendedKeyUsage=clientAuth")
    return {path.name: path.read_bytes() for path in directory.iterdir()
            if path.suffix in (".pem", ".key")}


def write_ssl_config(path: Path, **fields) -> Path:
    """An SSLConfig text file, written like TF Serving users write it (PEM texts inline)."""
    config = ssl_config_message()(**{
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in fields.items()})
    path.write_text(text_format.MessageToString(config))
    return path


@pytest.fixture()
def tls_server(model_bases, tmp_path, pki, request):
    """A server with an --ssl_config_file; `request.param` says whether to verify clients."""
    client_verify = request.param
    config = write_ssl_config(tmp_path / "ssl.config", server_key=pki["server.key"],
                              server_cert=pki["server.pem"], custom_ca=pki["ca.pem"],
                              client_verify=client_verify)
    server = Server({"half": model_bases["half"]}, port=0, file_system_poll_wait_seconds=0,
                    ssl_config_file=str(config)).start()
    yield server
    server.stop(grace=2)


def predict_y(channel) -> list[float]:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request("half", {"x": np.array([[2.0]], np.float32)})
    return tf.make_ndarray(stub.Predict(request, timeout=TIMEOUT).outputs["y"]).ravel().tolist()


def secure_channel(server, pki, client: str | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca.pem"],
        private_key=pki[f"{client}.key"] if client else None,
        certificate_chain=pki[f"{client}.pem"] if client else None)
    return grpc.secure_channel(f"localhost:{server.port}", credentials)


def assert_refused(channel) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        predict_y(channel)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("tls_server", [False], indirect=True)
def test_tls_serves_clients_that_trust_the_server_certificate(tls_server, pki):
    with secure_channel(tls_server, pki) as channel:
        assert predict_y(channel) == [3.0]
    with grpc.insecure_channel(f"localhost:{tls_server.port}") as plaintext:
        assert_refused(plaintext)


@pytest.mark.parametrize("tls_server", [True], indirect=True)
def test_client_verify_requires_a_client_certificate_from_custom_ca(tls_server, pki):
    with secure_channel(tls_server, pki, client="client") as channel:
        assert predict_y(channel) == [3.0]
    with secure_channel(tls_server, pki) as anonymous:
        assert_refused(anonymous)
    with secure_channel(tls_server, pki, client="stranger") as stranger:
        assert_refused(stranger)


def test_tls_on_the_unix_socket_too(model_bases, tmp_path_factory, pki):
    directory = tmp_path_factory.mktemp("tls-socket")
    config = write_ssl_config(directory / "ssl.config", server_key=pki["server.key"],
                              server_cert=pki["server.pem"])
    socket_path = Path("/tmp") / f"tfinetune-tls-{directory.name}.sock"
    server = Server({"half": model_bases["half"]}, port=0, file_system_poll_wait_seconds=0,
                    ssl_config_file=str(config), grpc_socket_path=str(socket_path)).start()
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca.pem"])
        with grpc.secure_channel(f"unix:{socket_path}", credentials,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            assert predict_y(ch) == [3.0]
        with grpc.insecure_channel(f"unix:{socket_path}") as plaintext:
            assert_refused(plaintext)
    finally:
        server.stop(grace=2)


@pytest.mark.parametrize("fields, message", [
    ({"server_key": "/etc/ssl/server.key", "server_cert": "pem:server.pem"},
     "server_key is not PEM text (no '-----BEGIN'); the SSLConfig fields hold the PEM "
     "contents, not file paths"),
    ({"server_cert": "pem:server.pem"}, "server_key is empty"),
    ({"server_key": "pem:server.key", "server_cert": "pem:server.pem", "client_verify": True},
     "client_verify is true but custom_ca is empty"),
    ({"server_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
      "server_cert": "pem:server.pem"}, "gRPC refused the TLS credentials"),
    ({"server_key": "pem:server.key", "server_cert": "pem:ca.pem"},
     "gRPC refused the TLS credentials"),
], ids=["paths", "no-key", "verify-without-ca", "garbage-key", "key-cert-mismatch"])
def test_bad_ssl_config_is_a_startup_error(model_bases, tmp_path, pki, fields, message):
    fields = {name: pki[value[4:]] if isinstance(value, str) and value.startswith("pem:")
              else value for name, value in fields.items()}
    config = write_ssl_config(tmp_path / "ssl.config", **fields)
    server = Server({"half": model_bases["half"]}, port=0, ssl_config_file=str(config))

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.message.startswith(f"Invalid SSL config file {config}: ")
    assert message in raised.value.message
    assert server.model_manager.available_versions("half") == []


@pytest.mark.parametrize("content, message", [
    (None, "Could not read the SSL config file"),
    ("server_key: unquoted", "not a text SSLConfig proto"),
    ("server_keys: 'x'", "not a text SSLConfig proto"),
])
def test_unreadable_ssl_config_is_a_startup_error(model_bases, tmp_path, content, message):
    path = tmp_path / "ssl.config"
    if content is not None:
        path.write_text(content)
    server = Server({"half": model_bases["half"]}, port=0, ssl_config_file=str(path))

    with pytest.raises(ServingError, match=message) as raised:
        server.start()

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
