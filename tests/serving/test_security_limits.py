"""Size limits with clear errors: a REST body over --rest_api_max_body_bytes (declared, chunked
or gunzipped) gets 413 without being read; malformed framing gets 400; the gRPC message limit
gives RESOURCE_EXHAUSTED (more in test_limits.py). Real servers on free ports, raw sockets."""

from __future__ import annotations

import gzip
import json
import socket
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving.server_options import ANY_FREE_PORT
from serving.server_options import ServerOptions
from tests.serving.models import predict_request
from tests.serving.models import rest_request

LIMIT = 64 * 1024
TIMEOUT = 20


@pytest.fixture(scope="module")
def limited(model_bases):
    server = Server({"half": model_bases["half"]}, port=0, rest_api_port=ANY_FREE_PORT,
                    file_system_poll_wait_seconds=0, rest_api_max_body_bytes=LIMIT,
                    grpc_max_message_bytes=LIMIT).start()
    yield server
    server.stop(grace=2)


def instances(rows: int) -> bytes:
    return json.dumps({"instances": [[1.0]] * rows}).encode()


def exchange(port: int, data: bytes) -> tuple[int, dict, float]:
    """Sends raw bytes (then half-closes), returns (status, JSON body, seconds to answer)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - start
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(head.split()[1]), json.loads(body), elapsed


def test_the_default_limits():
    assert ServerOptions().rest_api_max_body_bytes == 64 * 1024 * 1024
    assert ServerOptions().host == "127.0.0.1"


def test_a_body_within_the_limit_is_served(limited):
    rows = LIMIT // 10  # ~6 bytes per row
    body = instances(rows)
    assert len(body) < LIMIT
    status, _, answer = rest_request(limited.rest_port, "POST", "/v1/models/half:predict", body)
    assert status == 200 and len(json.loads(answer)["predictions"]) == rows


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(limited):
    """413 at once on the headers (Content-Length of 1 TB), without waiting for the body."""
    status, answer, elapsed = exchange(limited.rest_port, (
        b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 1000000000000\r\n\r\n"))

    assert status == 413
    assert answer == {"error": f"Request body of 1000000000000 bytes is larger than the limit "
                               f"of {LIMIT} bytes (--rest_api_max_body_bytes)"}
    assert elapsed < 5


def test_expect_100_continue_gets_the_413_instead_of_continue(limited):
    """curl sends `Expect: 100-continue` before large bodies: it learns of the limit without
    uploading."""
    status, answer, _ = exchange(limited.rest_port, (
        b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 1000000000\r\n\r\n"))

    assert status == 413 and "larger than the limit" in answer["error"]


def test_a_body_just_over_the_limit_gets_its_413(limited):
    body = instances(LIMIT // 6)
    assert len(body) > LIMIT
    status, _, answer = rest_request(limited.rest_port, "POST", "/v1/models/half:predict", body)

    assert status == 413
    assert f"larger than the limit of {LIMIT} bytes" in json.loads(answer)["error"]


def test_chunked_bodies_count_towards_the_limit(limited):
    chunk = b"[" * 40000
    data = (b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n" + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
    status, answer, _ = exchange(limited.rest_port, data)

    assert status == 413
    assert answer["error"] == (f"Chunked request body is larger than the limit of {LIMIT} "
                               f"bytes (--rest_api_max_body_bytes)")


@pytest.mark.parametrize("size_line, message", [
    (b"-1", "Malformed chunked request body: expected a hexadecimal chunk size, received b'-1'"),
    (b"0x10", "Malformed chunked request body: expected a hexadecimal chunk size"),
    (b"ffffffffffffffff", f"Chunked request body is larger than the limit of {LIMIT} bytes"),
])
def test_malformed_or_huge_chunk_sizes(limited, size_line, message):
    status, answer, _ = exchange(limited.rest_port, (
        b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + size_line + b"\r\n"))

    assert status in (400, 413)
    assert answer["error"].startswith(message)


def test_a_gzip_bomb_is_refused_after_limit_bytes(limited):
    bomb = gzip.compress(b" " * (16 * 1024 * 1024), compresslevel=9)  # 16 MiB in ~16 kB
    assert len(bomb) < LIMIT
    status, _, answer = rest_request(limited.rest_port, "POST", "/v1/models/half:predict",
                                     bomb, {"Content-Encoding": "gzip"})
    ok_status, _, ok_answer = rest_request(limited.rest_port, "POST", "/v1/models/half:predict",
                                           gzip.compress(instances(3)),
                                           {"Content-Encoding": "gzip"})

    assert status == 413
    assert json.loads(answer)["error"] == (f"The gzip request body decompresses to more than "
                                           f"the limit of {LIMIT} bytes "
                                           f"(--rest_api_max_body_bytes)")
    assert (ok_status, json.loads(ok_answer)) == (200, {"predictions": [[2.5]] * 3})


@pytest.mark.parametrize("headers, body, message", [
    ({"Content-Encoding": "gzip"}, b"not gzip", "Failed to uncompress the gzip request body"),
    ({"Content-Encoding": "gzip"}, gzip.compress(b'{"instances": [[1.0]]}')[:-9],
     "Failed to uncompress the gzip request body: the data is truncated"),
    ({"Content-Length": "abc"}, None, "Invalid Content-Length: abc"),
])
def test_malformed_framing_is_a_400(limited, headers, body, message):
    status, _, answer = rest_request(limited.rest_port, "POST", "/v1/models/half:predict", body,
                                     headers)
    assert status == 400
    assert json.loads(answer)["error"].startswith(message)


def test_a_body_shorter_than_its_content_length_is_a_400(limited):
    with socket.create_connection(("127.0.0.1", limited.rest_port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n{\"instances\"")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 400")
    assert b"The request body ended after 12 of the 100 bytes of its Content-Length" in answer


def test_grpc_messages_over_the_limit_are_resource_exhausted(limited):
    with grpc.insecure_channel(f"127.0.0.1:{limited.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(predict_request("half", {"x": np.ones((LIMIT // 4, 1), np.float32)}),
                         timeout=TIMEOUT)
        small = stub.Predict(predict_request("half", {"x": np.ones((2, 1), np.float32)}),
                             timeout=TIMEOUT)

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"larger than max ({LIMIT + 1}" in raised.value.details() or (
        str(LIMIT) in raised.value.details())
    assert list(small.outputs["y"].float_val) == [2.5, 2.5]
