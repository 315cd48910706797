"""Hostile REST input: thousands of malformed HTTP requests (hypothesis) to a real
`tfinetune serve` process: random JSON documents in the places of instances/inputs/examples,
strings where floats belong, invalid base64, deeply nested and huge JSON, random bytes, wrong
content types and encodings, odd methods and paths, and raw bytes on the socket. Every one is
answered 4xx (or 200 when it happens to be valid; 501 for an unknown HTTP method), never
another 5xx; the process stays alive with a
bounded peak RSS; valid requests afterwards get correct answers."""

from __future__ import annotations

import gzip
import json
import socket

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tests.serving.fuzz_server import REST_BODY_LIMIT
from tests.serving.fuzz_server import TIMEOUT
from tests.serving.fuzz_server import FuzzServer

PATHS = st.sampled_from([
    "/v1/models/half:predict", "/v1/models/tf2:predict", "/v1/models/text:predict",
    "/v1/models/tf2/versions/1:predict", "/v1/models/half:classify", "/v1/models/half:regress",
    "/v1/models/text:classify", "/v1/models/half/metadata", "/v1/models/half",
    "/v1/models/missing:predict", "/v1/models/half/versions/99999999999999999999999:predict",
    "/v1/models/half/labels/%ff%fe:predict", "/v1/models/:predict", "/v1/models",
    "/v1/models/half:PREDICT", "/v1/models/half:explode", "/v1/", "/v2/models/half:predict",
    "/", "/v1/models/half/versions/-1", "/v1/models/%00/metadata",
    "/v1/models/half/versions/" + "9" * 5000 + ":predict",
    "/v1/models/half/versions/" + "0" * 30 + "1/metadata",
])
METHODS = st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD",
                                          "FOO", "M-SEARCH"])
CONTENT_TYPES = st.sampled_from([
    None, "application/json", "application/json; charset=utf-16", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
    "application/octet-stream", "application/grpc", "image/png", "*/*", "",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 1e39, -1e39, 16777217]))
B64 = st.fixed_dictionaries({"b64": st.one_of(
    st.text(max_size=12), st.sampled_from(["!!!", "YQ", "Y", "====", "\u00e9\u00e9", "YWJj"]),
    st.integers())})
JSON_VALUES = st.recursive(
    st.one_of(SCALARS, B64),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(
                                   ["x", "text", "name", "b64", "inputs", "", "y"]),
                                   children, max_size=3)),
    max_leaves=25)
KEYS = ["instances", "inputs", "examples", "context", "signature_name"]
# Real APIs: most requests aim at these, so that they reach the JSON-to-tensor conversion and
# the model.
API_PATHS = st.sampled_from([
    "/v1/models/half:predict", "/v1/models/tf2:predict", "/v1/models/text:predict",
    "/v1/models/tf2/versions/2:predict", "/v1/models/half:classify", "/v1/models/half:regress",
])
SIGNATURE_NAMES = st.sampled_from(["classify_x_to_y", "regress_x_to_y", "greet", "two_outputs",
                                   "add_with_default", "serving_default", "", "nope"])
ROWS = st.one_of(st.lists(SCALARS, min_size=1, max_size=2), SCALARS, B64,
                 st.lists(st.lists(SCALARS, min_size=1, max_size=2), min_size=1, max_size=2),
                 st.fixed_dictionaries({"x": st.lists(SCALARS, max_size=2)}),
                 st.fixed_dictionaries({"text": st.one_of(SCALARS, B64)}))


@st.composite
def documents(draw) -> object:
    """A request document: usually an object with some of the API's keys holding anything,
    sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)
    doc = {key: draw(JSON_VALUES) for key in draw(st.lists(st.sampled_from(KEYS), max_size=2,
                                                           unique=True))}
    shaped = draw(st.sampled_from(["instances"] * 3 + ["inputs", "examples", "none"]))
    if shaped == "instances":  # well-shaped rows of any types
        doc["instances"] = draw(st.lists(ROWS, min_size=1, max_size=4))
    elif shaped == "inputs":
        doc["inputs"] = draw(st.one_of(ROWS, st.dictionaries(
            st.sampled_from(["x", "text", "name", "left", "right"]), ROWS, max_size=2)))
    elif shaped == "examples":
        doc["examples"] = draw(st.lists(st.dictionaries(st.sampled_from(["x", "text", "y"]),
                                                        ROWS, max_size=2), max_size=3))
    if draw(st.booleans()):
        doc["signature_name"] = draw(SIGNATURE_NAMES)
    return doc


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["json"] * 6 + ["bytes", "nested", "long-number", "text",
                                                 "truncated"]))
    if kind == "json":
        return json.dumps(draw(documents()), allow_nan=True).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "nested":  # deeper than Python's recursion limit, or just deep
        depth = draw(st.sampled_from([65, 100, 999, 1000, 5000, 100_000]))
        inner = draw(st.sampled_from(["", "1", '"a"', '{"b64": "YQ"}']))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return ('{"instances": ' + opener * depth + inner + closer * depth + "}").encode()
    if kind == "long-number":
        return ('{"instances": [' + "9" * draw(st.sampled_from([20, 400, 4301, 10000]))
                + "]}").encode()
    if kind == "text":
        return draw(st.text(max_size=100)).encode("utf-8", "surrogatepass")
    return json.dumps(draw(documents())).encode()[:-1]


@st.composite
def requests(draw) -> tuple[str, str, bytes, dict]:
    if draw(st.integers(0, 3)):
        method, path = "POST", draw(API_PATHS)
    else:
        method, path = draw(METHODS), draw(PATHS)
    body = draw(bodies())
    headers = {}
    content_type = draw(CONTENT_TYPES)
    if content_type is not None:
        headers["Content-Type"] = content_type
    encoding = draw(st.sampled_from([None] * 12 + ["gzip", "gzip-invalid", "identity", "br"]))
    if encoding == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    elif encoding == "gzip-invalid":
        headers["Content-Encoding"] = "gzip"
    elif encoding is not None:
        headers["Content-Encoding"] = encoding
    return method, path, body, headers


@pytest.fixture(scope="module")
def fuzz_server(model_bases, tmp_path_factory):
    with FuzzServer(model_bases, tmp_path_factory.mktemp("fuzz-rest")) as server:
        yield server


# Methods http.server answers itself with 501 Not Implemented (HTTP's status for an unknown
# method; test_rest_server.py), before the API sees the request.
UNKNOWN_METHODS = {"FOO", "M-SEARCH"}


def check(server: FuzzServer, method: str, path: str, body: bytes, headers: dict) -> None:
    status, answer = server.rest(method, path, body, headers)
    if method in UNKNOWN_METHODS:
        assert status == 501, answer[:2000]
        return
    assert status < 500, f"{status} {answer[:2000]!r} for {method} {path} {body[:500]!r}"
    if status >= 400 and method != "HEAD":
        assert "error" in json.loads(answer), answer[:2000]


def raw_exchange(server: FuzzServer, data: bytes) -> bytes:
    """Writes `data` on a new connection, closes the writing side, returns all it answers."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server closed first: whatever it sent is still readable
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def check_raw(server: FuzzServer, data: bytes) -> None:
    answer = raw_exchange(server, data)
    for line in answer.split(b"\r\n"):
        if line.startswith(b"HTTP/1."):
            status = int(line.split()[1])
            # http.server's protocol answers: 501 for an unknown method, 505 for an HTTP
            # major version other than 1.
            assert status < 500 or status in (501, 505), f"{answer[:2000]!r} for {data[:500]!r}"


RAW = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.sampled_from([b"POST", b"GET", b"\x00", b"P\xffST", b""]),
              st.sampled_from([b" /v1/models/half:predict", b" *", b" ", b""]),
              st.sampled_from([b" HTTP/1.1", b" HTTP/1.0", b" HTTP/0.9", b" HTTP/9.9", b"",
                               b" HTTP/1.1 extra"]),
              st.lists(st.sampled_from([
                  b"Content-Length: 5", b"Content-Length: -1", b"Content-Length: abc",
                  b"Content-Length: 99999999999999999999", b"Transfer-Encoding: chunked",
                  b"Content-Encoding: gzip", b"Expect: 100-continue", b"X: \xff\xfe",
                  b"no colon", b" folded", b"Content-Length: 3", b"Host: x"]), max_size=4),
              st.sampled_from([b"", b"{}", b"zz\r\n", b"5\r\nhello\r\n0\r\n\r\n",
                               b"-1\r\n", b"fffffffffffffffff\r\n", b"0x10\r\n"]))
    .map(lambda parts: parts[0] + parts[1] + parts[2] + b"\r\n" + b"".join(
        header + b"\r\n" for header in parts[3]) + b"\r\n" + parts[4]),
)


def fuzz(strategy, check_one, max_examples: int, derandomize: bool = True) -> None:
    @settings(max_examples=max_examples, deadline=None, database=None,
              derandomize=derandomize, suppress_health_check=list(HealthCheck),
              print_blob=True)
    @given(strategy)
    def run(value) -> None:
        check_one(value)

    run()


def _run_all(server: FuzzServer, total: int, derandomize: bool) -> None:
    fuzz(requests(), lambda r: check(server, *r), int(total * 0.8), derandomize)
    server.assert_alive()
    fuzz(RAW, lambda data: check_raw(server, data), int(total * 0.2), derandomize)
    server.assert_alive()
    server.assert_memory_bounded()
    server.check_answers()


def test_fuzzed_rest_requests_get_client_errors(fuzz_server):
    _run_all(fuzz_server, 1200, derandomize=True)


@pytest.mark.slow
def test_many_more_fuzzed_rest_requests(fuzz_server):
    _run_all(fuzz_server, 4000, derandomize=False)


def _nested(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


@pytest.mark.parametrize("body, status, message", [
    (b'{"instances": [' + b"9" * 5000 + b"]}", 400,
     "JSON Parse error: Number too big to be stored in double. at offset: 15"),
    (_nested(100_000), 400, "JSON Parse error: Invalid value. at offset: 0"),
    (_nested(500), 400, ("JSON Value: a list nested 499 levels deep; a tensor has at most 64 "
                         "dimensions")),
    (b'{"instances": [{"b64": "!!!"}]}', 400, "Unable to base64 decode"),
    (b'{"instances": "' + b"a" * (REST_BODY_LIMIT - 100) + b'"}', 400,
     "Excepting 'instances' to be an list/array"),
    (json.dumps([[0] * 150_000] * 8).encode(), 400, "...TRUNCATED Is not object"),
    (b"\xff\xfe{}", 400, "JSON Parse error: Invalid encoding in string. at offset: 0"),
], ids=["long-number", "nested-100000", "nested-500", "base64", "huge-string", "huge-array",
        "not-utf8"])
def test_worst_case_json_bodies(fuzz_server, body, status, message):
    got, answer = fuzz_server.rest("POST", "/v1/models/text:predict", body)

    assert got == status, answer[:1000]
    error = json.loads(answer)["error"]
    assert message in error
    assert len(error) < 20_000  # a huge request value is quoted cut short, not whole
    fuzz_server.assert_alive()
    fuzz_server.assert_memory_bounded()


def test_a_huge_valid_body_within_the_limit_is_served(fuzz_server):
    rows = 100_000  # ~1.3 MB of JSON
    status, answer = fuzz_server.rest("POST", "/v1/models/half:predict",
                                      json.dumps({"instances": [[1.0]] * rows}).encode(),
                                      {"Content-Type": "text/plain"})

    assert status == 200
    assert json.loads(answer)["predictions"] == [[2.5]] * rows
    fuzz_server.assert_memory_bounded()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/octet-stream", None])
def test_the_content_type_is_not_required(fuzz_server, content_type):
    """As in TF Serving (curl -d sends application/x-www-form-urlencoded), any content type
    carries JSON; a body that is not JSON gets 400 whatever it claims to be."""
    headers = {"Content-Type": content_type} if content_type else {}
    status, answer = fuzz_server.rest("POST", "/v1/models/half:predict",
                                      b'{"instances": [[1.0]]}', headers)
    assert (status, json.loads(answer)) == (200, {"predictions": [[2.5]]})
    status, answer = fuzz_server.rest("POST", "/v1/models/half:predict", b"x=1&y=2", headers)
    assert status == 400 and json.loads(answer)["error"].startswith("JSON Parse error")


def test_unknown_methods_get_501(fuzz_server):
    status, answer = fuzz_server.rest("FOO", "/v1/models/half:predict", b"{}")

    assert (status, json.loads(answer)) == (501, {"error": "Unsupported method ('FOO')"})
