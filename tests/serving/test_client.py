"""`serving.Client` against the test server: raw text in, `Prediction` rows out."""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import socket
import subprocess
import threading

import grpc
import numpy as np
import pytest

from serving import Client
from serving import Prediction
from serving import Server
from serving import ServingError
from tests.serving.models import LABELS
from tests.serving.models import expected_probabilities


@pytest.fixture(scope="module")
def target(server):
    return f"127.0.0.1:{server.port}"


def assert_prediction(prediction: Prediction, text: str, text_pair: str | None = None):
    expected = expected_probabilities(text, text_pair)
    assert list(prediction.probabilities) == LABELS
    np.testing.assert_allclose(list(prediction.probabilities.values()), expected, atol=1e-6)
    assert prediction.label_id == int(np.argmax(expected))
    assert prediction.label == LABELS[prediction.label_id]


def test_predict_turns_texts_into_predictions(target):
    texts = ["good", "bad bad good", "neutral words", "Good GOOD"]

    with Client(target, "text") as client:
        predictions = client.predict(texts)

    assert len(predictions) == len(texts)
    for prediction, text in zip(predictions, texts):
        assert_prediction(prediction, text)


def test_predict_pairs(target):
    texts, pairs = ["good", "a"], ["bad bad", "good"]

    with Client(target, "pair", version=7) as client:
        predictions = client.predict(texts, pairs)

    for prediction, text, pair in zip(predictions, texts, pairs):
        assert_prediction(prediction, text, pair)


@pytest.mark.parametrize("model", ["text", "pair"])
def test_label_names_come_from_the_classes_output(target, model):
    with Client(target, model) as client:
        assert client.label_names() == LABELS
        assert client.label_names() == LABELS  # cached


def test_no_texts_make_no_request(target):
    with Client(target, "does-not-exist") as client:
        assert client.predict([]) == []


def test_text_pairs_must_match_texts(target):
    with Client(target, "pair") as client, pytest.raises(ValueError, match="one entry per text"):
        client.predict(["a", "b"], ["c"])


def test_server_errors_raise_serving_error_with_code_and_message(target):
    with Client(target, "pair", version=8) as client, pytest.raises(ServingError) as raised:
        client.predict(["a"], ["b"])

    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.message == "Servable not found for request: Specific(pair, 8)"


def test_missing_pair_input_is_the_servers_invalid_argument(target):
    with Client(target, "pair") as client, pytest.raises(ServingError) as raised:
        client.predict(["a"])

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.message.startswith("input size does not match signature: 1!=2")


def test_deadline_exceeded(target):
    from tensorflow_serving.apis import predict_pb2

    with Client(target, "spin", timeout=0.2) as client:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "spin"
        request.inputs["iterations"].dtype = 9  # DT_INT64, scalar
        request.inputs["iterations"].int64_val.append(300_000)
        with pytest.raises(ServingError) as raised:
            client._call("Predict", request)

    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "(timeout 0.2 s)" in raised.value.message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unavailable_is_retried_with_backoff_then_raised(caplog):
    caplog.set_level(logging.WARNING, logger="serving.client")

    with Client(f"127.0.0.1:{free_port()}", "text", retries=2, timeout=5) as client:
        with pytest.raises(ServingError) as raised:
            client.predict(["good"])

    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert sum("retrying" in r.message for r in caplog.records) == 2


def test_a_server_that_comes_up_during_the_retries_answers(model_bases):
    port = free_port()
    server = Server({"text": model_bases["text"]}, port=port, file_system_poll_wait_seconds=0)
    starter = threading.Timer(0.3, server.start)
    starter.start()
    try:
        with Client(f"127.0.0.1:{port}", "text", retries=8, timeout=10) as client:
            prediction = client.predict(["good"])[0]
    finally:
        starter.join()
        server.stop(grace=5)

    assert prediction.label == "positive"


def test_one_client_is_safe_to_share_between_threads(target):
    texts = [f"{'good ' * (i % 3)}{'bad ' * (i % 2)}text {i}" for i in range(40)]

    with Client(target, "text") as client:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda text: client.predict([text])[0], texts))
        labels = client.label_names()

    for prediction, text in zip(results, texts):
        assert_prediction(prediction, text)
    assert labels == LABELS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return (directory / "key.pem").read_bytes(), (directory / "cert.pem").read_bytes()


def test_tls(model_bases, certificate):
    key, cert = certificate
    credentials = grpc.ssl_server_credentials([(key, cert)])
    server = Server({"text": model_bases["text"]}, port=0, file_system_poll_wait_seconds=0,
                    server_credentials=credentials).start()
    try:
        with Client(f"localhost:{server.port}", "text", root_certificates=cert) as client:
            prediction = client.predict(["good"])[0]
        with Client(f"localhost:{server.port}", "text", retries=0, timeout=5) as plaintext:
            with pytest.raises(ServingError) as raised:
                plaintext.predict(["good"])
    finally:
        server.stop(grace=5)

    assert prediction.label == "positive"
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
