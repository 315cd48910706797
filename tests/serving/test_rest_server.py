"""The HTTP side of the REST API: ports, headers, CORS, connections, start-up errors."""

from __future__ import annotations

import gzip
import http.client
import json
import socket

import grpc
import pytest

from serving import Server
from serving.server_options import ANY_FREE_PORT
from serving.serving_error import ServingError
from tests.serving.models import rest_request

BODY = {"instances": [[1.0]]}
ANSWER = {"predictions": [[2.5]]}
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
        "Access-Control-Allow-Headers": "Content-Type"}


@pytest.fixture(scope="module")
def cors_port(model_bases):
    server = Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                    file_system_poll_wait_seconds=0, rest_api_enable_cors_support=True,
                    rest_api_num_threads=1).start()
    yield server.rest_port
    server.stop(grace=5)


def test_every_response_is_json(rest_port):
    for method, path, body in [("POST", "/v1/models/half:predict", BODY),
                               ("GET", "/v1/models/half", None),
                               ("GET", "/v1/models/nope", None),
                               ("POST", "/v1/models/half:predict", "{")]:
        _, headers, payload = rest_request(rest_port, method, path, body)
        assert headers["Content-Type"] == "application/json"
        json.loads(payload)


def test_no_cors_headers_unless_enabled(rest_port):
    _, headers, _ = rest_request(rest_port, "POST", "/v1/models/half:predict", BODY)
    status, _, payload = rest_request(rest_port, "OPTIONS", "/v1/models/half:predict",
                                      headers={"Origin": "http://example.com"})

    assert not any(name.startswith("Access-Control") for name in headers)
    assert (status, json.loads(payload)) == (
        400, {"error": "Malformed request: OPTIONS /v1/models/half:predict"})


def test_cors_headers_on_every_answer(cors_port):
    for method, path, body in [("POST", "/v1/models/half:predict", BODY),
                               ("GET", "/v1/models/nope", None)]:
        _, headers, _ = rest_request(cors_port, method, path, body)
        assert CORS.items() <= headers.items()


def test_cors_preflight(cors_port):
    status, headers, payload = rest_request(cors_port, "OPTIONS", "/v1/models/half:predict",
                                            headers={"Origin": "https://example.com",
                                                     "Access-Control-Request-Method": "POST"})

    assert status == 200 and payload == b""
    assert CORS.items() <= headers.items()


@pytest.mark.parametrize("origin", [None, "example.com", "ftp://example.com"])
def test_cors_preflight_needs_an_http_origin(cors_port, origin):
    status, headers, payload = rest_request(cors_port, "OPTIONS", "/v1/models/half:predict",
                                            headers={"Origin": origin} if origin else {})

    assert (status, json.loads(payload)) == (
        400, {"error": "Origin header is missing in CORS preflight"})
    assert CORS.items() <= headers.items()


def test_paths_outside_v1_are_not_found(rest_port):
    status, headers, payload = rest_request(rest_port, "GET", "/index.html")

    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(payload) == {"error": "Not found: GET /index.html"}


def test_query_strings_are_ignored(rest_port):
    status, _, payload = rest_request(rest_port, "POST", "/v1/models/half:predict?x=1", BODY)

    assert (status, json.loads(payload)) == (200, ANSWER)


def test_keep_alive_serves_several_requests_on_one_connection(cors_port):
    connection = http.client.HTTPConnection("127.0.0.1", cors_port, timeout=30)
    try:
        for _ in range(3):
            connection.request("POST", "/v1/models/half:predict", body=json.dumps(BODY))
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (200, ANSWER)
    finally:
        connection.close()


def test_chunked_and_gzip_request_bodies(rest_port):
    data = json.dumps(BODY).encode()
    connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=30)
    try:
        connection.request("POST", "/v1/models/half:predict", body=iter([data[:5], data[5:]]),
                           encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (200, ANSWER)
    finally:
        connection.close()
    status, _, payload = rest_request(rest_port, "POST", "/v1/models/half:predict",
                                      gzip.compress(data), headers={"Content-Encoding": "gzip"})
    assert (status, json.loads(payload)) == (200, ANSWER)
    status, _, payload = rest_request(rest_port, "POST", "/v1/models/half:predict", b"xx",
                                      headers={"Content-Encoding": "gzip"})
    assert status == 400 and "Failed to uncompress the gzip request body" in (
        json.loads(payload)["error"])


def test_rest_is_off_by_default(model_bases):
    server = Server({"half": model_bases["half"]}, port=0, file_system_poll_wait_seconds=0)
    with server:
        assert server.rest_port is None
    assert server.options.rest_api_port == 0


def test_rest_port_must_be_a_port_or_the_free_port_sentinel():
    with pytest.raises(ValueError, match="rest_api_port must be a port number"):
        Server({"half": "/nowhere"}, rest_api_port=-2)


def test_a_taken_rest_port_fails_start_and_frees_everything(model_bases):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server({"half": model_bases["half"]}, port=0, rest_api_port=port,
                        file_system_poll_wait_seconds=0)
        with pytest.raises(ServingError) as raised:
            server.start()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.message.startswith(f"Failed to start HTTP Server at 127.0.0.1:{port}")
    assert server.available_versions("half") == []
    server.start()  # nothing was left bound or loaded
    try:
        assert server.rest_port == port
    finally:
        server.stop(grace=1)


def test_stopped_server_refuses_rest_connections(model_bases):
    server = Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                    file_system_poll_wait_seconds=0).start()
    port = server.rest_port
    assert rest_request(port, "GET", "/v1/models/half")[0] == 200
    server.stop(grace=1)

    with pytest.raises(OSError):
        rest_request(port, "GET", "/v1/models/half")


def test_rest_api_timeout_ends_a_slow_request_with_504(model_bases):
    """--rest_api_timeout_in_ms becomes the session run's deadline (RunOptions.timeout_in_ms)."""
    with Server({"spin": model_bases["spin"]}, port=0, rest_api_port=ANY_FREE_PORT,
                file_system_poll_wait_seconds=0, rest_api_timeout_in_ms=200) as server:
        status, _, payload = rest_request(server.rest_port, "POST", "/v1/models/spin:predict",
                                          {"inputs": 10**12})
        quick = rest_request(server.rest_port, "POST", "/v1/models/spin:predict",
                             {"inputs": 10})

    assert status == 504, payload  # DEADLINE_EXCEEDED, with TensorFlow's text
    assert json.loads(payload) == {"error": "Timed out waiting for notification"}
    assert quick[0] == 200


def test_http_level_errors_are_json_too(rest_port):
    with socket.create_connection(("127.0.0.1", rest_port), timeout=30) as raw:
        raw.sendall(b"BREW /v1/models/half HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 501")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": "Unsupported method ('BREW')"}
