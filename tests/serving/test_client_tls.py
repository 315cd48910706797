"""`serving.Client`, `predict` and `score` against a server that verifies client certificates."""

from __future__ import annotations

import json

import grpc
import pytest
from click.testing import CliRunner

from serving import Client
from serving import Server
from serving import ServingError
from tests.serving.test_ssl import pki  # noqa: F401  (module fixture: a CA and certificates)
from tests.serving.test_ssl import write_ssl_config
from tfinetune.cli import predict
from tfinetune.cli import score


@pytest.fixture(scope="module")
def mtls_server(model_bases, tmp_path_factory, pki):  # noqa: F811
    directory = tmp_path_factory.mktemp("mtls")
    config = write_ssl_config(directory / "ssl.config", server_key=pki["server.key"],
                              server_cert=pki["server.pem"], custom_ca=pki["ca.pem"],
                              client_verify=True)
    server = Server({"text": model_bases["text"]}, port=0, file_system_poll_wait_seconds=0,
                    ssl_config_file=str(config)).start()
    paths = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        paths[name] = directory / name
        paths[name].write_bytes(pki[name])
    yield server, paths
    server.stop(grace=2)


def test_client_with_a_client_certificate_is_served_and_without_one_refused(mtls_server,
                                                                             pki):  # noqa: F811
    server, _ = mtls_server
    target = f"localhost:{server.port}"
    with Client(target, "text", root_certificates=pki["ca.pem"], private_key=pki["client.key"],
                certificate_chain=pki["client.pem"], timeout=10) as client:
        assert client.predict(["good"])[0].label == "positive"
    with Client(target, "text", root_certificates=pki["ca.pem"], timeout=5,
                retries=0) as anonymous:
        with pytest.raises(ServingError) as raised:
            anonymous.predict(["good"])
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError, match="both its private key and its certificate chain"):
        Client(target, "text", private_key=pki["client.key"])


def test_predict_and_score_take_client_certificates(mtls_server, tmp_path):
    server, paths = mtls_server
    tls = ["--root-certificates", str(paths["ca.pem"]), "--client-certificate",
           str(paths["client.pem"]), "--client-key", str(paths["client.key"])]
    target = f"localhost:{server.port}"
    result = CliRunner().invoke(predict.command, ["--server", target, "--model-name", "text",
                                                  "good", *tls])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["label"] == "positive"

    source = tmp_path / "in.csv"
    source.write_text("text\ngood\nbad\n")
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(score.command, [str(source), "--server", target, "--model-name",
                                                "text", "--output", str(out), "-q", *tls])
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == 3

    result = CliRunner().invoke(predict.command, ["--server", target, "--model-name", "text",
                                                  "good", "--client-key",
                                                  str(paths["client.key"])])
    assert result.exit_code == 2
    assert "--client-certificate and --client-key go together" in result.output
