"""`RestServer`: the HTTP server of `--rest_api_port` (TF Serving's `model_servers/http_server.cc`).

It carries the REST API (`RestApiHandler`, every path under `/v1/`) and, when monitoring is
enabled, the Prometheus page. It is the standard library's `ThreadingHTTPServer` speaking
HTTP/1.1 (keep-alive, chunked and gzip request bodies); at most `num_threads` requests are
processed at once (`--rest_api_num_threads`), further ones wait for a free slot.

Hostile requests get a 4xx answer, never an unbounded allocation: a body (declared, chunked, or
once gunzipped) larger than `--rest_api_max_body_bytes` is refused with 413 before it is read
(`max_body_bytes`); malformed framing gets 400. With `--rest_api_ssl_config_file` the port
speaks HTTPS (TLS handshakes run on the connection's thread, not the accept loop), and with
`client_verify` it requires a client certificate signed by `custom_ca`.
"""

from __future__ import annotations

import http.server
import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
import zlib

import grpc

from serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from serving.metrics import Metrics
from serving.monitoring_config import load_monitoring_config
from serving.monitoring_config import prometheus_path
from serving.rest_api_handler import RestApiHandler
from serving.rest_api_handler import RestResponse
from serving.rest_api_handler import error_body
from serving.server_options import ANY_FREE_PORT
from serving.serving_error import ServingError
from serving.ssl_config import SslConfig

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
DEFAULT_MAX_BODY_BYTES = 64 << 20
# After refusing a body, read (and drop) at most this much of it before closing, so that the
# client receives the 413 instead of a connection reset.
_DRAIN_BYTES = 1 << 20
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)  # HttpRestApiHandler::kPathRegex
# TF Serving's AddCORSHeaders (model_servers/http_rest_api_util.cc).
CORS_HEADERS = (("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "POST, GET"),
                ("Access-Control-Allow-Headers", "Content-Type"))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class _BodyTooLarge(Exception):
    """A request body over the limit (HTTP 413); `unread`: bytes of it still on the socket."""

    def __init__(self, message: str, unread: int) -> None:
        super().__init__(message)
        self.unread = unread


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompresses a gzip body (all its members), never to more than `limit` bytes.

    Raises:
        _BodyTooLarge: the decompressed body is over `limit` bytes (a "gzip bomb").
        ValueError: the data is not gzip or is truncated.
    """
    if not body:
        return body
    out, total, data = [], 0, body
    try:
        while True:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip header and trailer
            chunk = decompressor.decompress(data, limit - total + 1)
            total += len(chunk)
            if total > limit:
                raise _BodyTooLarge(f"The gzip request body decompresses to more than the limit "
                                    f"of {limit} bytes (--rest_api_max_body_bytes)", 0)
            out.append(chunk)
            if not decompressor.eof:
                raise ValueError("Failed to uncompress the gzip request body: the data is "
                                 "truncated")
            data = decompressor.unused_data
            if not data.strip(b"\0"):
                return b"".join(out)
    except zlib.error as error:
        raise ValueError(f"Failed to uncompress the gzip request body: {error}") from None


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, handler_class, owner: "RestServer") -> None:
        self.owner = owner
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler_class)

    def get_request(self):
        connection, address = super().get_request()
        context = self.owner.ssl_context
        if context is not None:  # the handshake runs in the request's thread (handle())
            connection = context.wrap_socket(connection, server_side=True,
                                             do_handshake_on_connect=False)
        return connection, address

    def handle_error(self, request, client_address) -> None:  # a client went away mid-request
        logger.debug("REST connection from %s failed", client_address, exc_info=True)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tfinetune-serving"
    timeout = 300  # idle keep-alive connections are closed after this many seconds

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        self._answer()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

    def handle_expect_100(self) -> bool:
        """No `100 Continue` for a body over the limit: the 413 comes instead, unread."""
        length = self.headers.get("Content-Length", "").strip()
        if length.isdigit() and (len(length) > 19
                                 or int(length) > self.server.owner.max_body_bytes):
            return True
        return super().handle_expect_100()

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
                logger.debug("TLS handshake with %s failed: %s", self.client_address, error)
                return
        super().handle()

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        """http.server's own errors (bad request line, unknown method, ...), in JSON too."""
        self.close_connection = True
        text = message or self.responses.get(code, ("Error",))[0]
        self._send(code, error_body(text), JSON_CONTENT_TYPE, self.server.owner.cors)

    def log_message(self, format, *args) -> None:  # noqa: A002  (signature of http.server)
        logger.debug("%s - %s", self.address_string(), format % args)

    def _answer(self) -> None:
        owner: RestServer = self.server.owner
        try:
            body = self._read_body(owner.max_body_bytes)
        except _BodyTooLarge as error:
            self.close_connection = True
            self._send(413, error_body(str(error)), JSON_CONTENT_TYPE, owner.cors)
            self._drain(error.unread)
            return
        except ValueError as error:
            self.close_connection = True
            self._send(400, error_body(str(error)), JSON_CONTENT_TYPE, owner.cors)
            return
        owner._responding_changed(+1)  # until the answer is written: stop() waits for it
        try:
            status, payload, content_type = owner.respond(
                self.command, urllib.parse.urlsplit(self.path).path, body, self.headers)
            self._send(status, payload, content_type, owner.cors)
        finally:
            owner._responding_changed(-1)

    def _read_body(self, limit: int) -> bytes:
        """The request body, de-chunked and gunzipped.

        Raises:
            _BodyTooLarge: the body (declared, read, or gunzipped) is over `limit` bytes.
            ValueError: malformed framing or gzip data.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked(limit)
        else:
            length = self.headers.get("Content-Length")
            try:
                size = int(length) if length else 0
            except ValueError:
                raise ValueError(f"Invalid Content-Length: {length}") from None
            if size < 0:
                raise ValueError(f"Invalid Content-Length: {length}")
            if size > limit:
                raise _BodyTooLarge(f"Request body of {size} bytes is larger than the limit of "
                                    f"{limit} bytes (--rest_api_max_body_bytes)", size)
            body = self.rfile.read(size) if size else b""
            if len(body) < size:
                raise ValueError(f"The request body ended after {len(body)} of the {size} bytes "
                                 f"of its Content-Length")
        if self.headers.get("Content-Encoding", "").strip().lower() == "gzip":
            body = _gunzip(body, limit)
        return body

    def _read_chunked(self, limit: int) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(65537).split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(line):
                raise ValueError("Malformed chunked request body: expected a hexadecimal chunk "
                                 f"size, received {line[:32]!r}")
            size = int(line, 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            if total + size > limit:
                raise _BodyTooLarge(f"Chunked request body is larger than the limit of {limit} "
                                    f"bytes (--rest_api_max_body_bytes)", size)
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise ValueError("Malformed chunked request body: a chunk ended early")
            chunks.append(chunk)
            total += size
            self.rfile.readline(65537)  # CRLF after the chunk

    def _drain(self, unread: int) -> None:
        """Reads and drops up to `_DRAIN_BYTES` of a refused body (closing a socket with unread
        data resets the connection, and the client would not see the answer)."""
        remaining = min(unread, _DRAIN_BYTES)
        try:
            self.connection.settimeout(1.0)
            while remaining > 0:
                data = self.rfile.read1(min(remaining, 65536))
                if not data:
                    break
                remaining -= len(data)
        except (OSError, ValueError):
            pass

    def _send(self, status: int, body: bytes, content_type: str, cors: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if cors:
            for name, value in CORS_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection or self.server.owner.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class RestServer:
    """Serves the REST API (and the Prometheus page) on one HTTP port.

    Example:
        rest = RestServer(RestApiHandler(manager), port=8501).start()
        ...
        rest.stop(grace=10)

    Args:
        handler: Answers the `/v1/` requests.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        num_threads: Requests processed at once (`--rest_api_num_threads`).
        enable_cors: Add TF Serving's CORS headers and answer CORS preflight requests
            (`--rest_api_enable_cors_support`).
        metrics_path: URL path of the Prometheus page, or None for no page.
        metrics: Whose page to serve; default `Metrics.default()`.
        max_in_flight: Most requests running or waiting for a slot; past it a request is
            answered 429 at once (`--max_in_flight_requests`). 0: no limit.
        max_body_bytes: Largest request body accepted (after gunzip); larger ones get 413.
        ssl_context: Serve HTTPS with this server-side context; default plain HTTP.
    """

    def __init__(self, handler: RestApiHandler, *, host: str = "127.0.0.1", port: int = 0,
                 num_threads: int = 4, enable_cors: bool = False,
                 metrics_path: str | None = None, metrics: Metrics | None = None,
                 max_in_flight: int = 0, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1. Received: num_threads={num_threads}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1. Received: {max_body_bytes}")
        self.max_body_bytes = max_body_bytes
        self.ssl_context = ssl_context
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._slots = threading.BoundedSemaphore(num_threads)
        self.cors = enable_cors
        self._metrics_path = metrics_path
        self._metrics = metrics or Metrics.default()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._in_flight = 0
        self._responding = 0  # requests read and not yet answered (in flight, or being sent)
        self._max_in_flight = max_in_flight
        self._idle = threading.Condition()
        self.stopping = False

    @classmethod
    def from_options(cls, options, manager) -> "RestServer | None":
        """The REST server a `ServerOptions` asks for, not started; None when
        `rest_api_port` is 0 (REST off, as in TF Serving).

        Raises:
            ServingError: `monitoring_config_file` or `rest_api_ssl_config_file` cannot be read
                or parsed.
        """
        metrics_path = None
        if options.monitoring_config_file:
            metrics_path = prometheus_path(load_monitoring_config(options.monitoring_config_file))
        if options.rest_api_port == 0:
            if metrics_path is not None:
                logger.warning("--monitoring_config_file enables Prometheus, which is served "
                               "on the REST port: set --rest_api_port to expose it.")
            return None
        port = 0 if options.rest_api_port == ANY_FREE_PORT else options.rest_api_port
        handler = RestApiHandler(manager, timeout_in_ms=options.rest_api_timeout_in_ms)
        ssl_context = None
        if options.rest_api_ssl_config_file:
            ssl_context = SslConfig.from_file(options.rest_api_ssl_config_file).ssl_context()
        elif options.ssl_config_file and not _is_loopback(options.host):
            logger.warning("gRPC uses TLS (--ssl_config_file) but the REST API on %s is plain "
                           "HTTP: set --rest_api_ssl_config_file too, or keep REST on loopback.",
                           options.host)
        return cls(handler, host=options.host, port=port,
                   num_threads=options.rest_api_num_threads or 4 * (os.cpu_count() or 1),
                   enable_cors=options.rest_api_enable_cors_support,
                   metrics_path=metrics_path,
                   max_in_flight=options.max_in_flight_requests,
                   max_body_bytes=options.rest_api_max_body_bytes,
                   ssl_context=ssl_context)

    @property
    def scheme(self) -> str:
        """`https` with an SSL context, else `http`."""
        return "https" if self.ssl_context is not None else "http"

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("The REST server is not started: call start() first.")
        return self._httpd.server_address[1]

    def start(self) -> "RestServer":
        """Binds the port and serves in a background thread.

        Raises:
            ServingError: UNAVAILABLE when the port cannot be bound.
        """
        try:
            self._httpd = _HttpServer((self._host, self._requested_port), _RequestHandler, self)
        except OSError as error:
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               f"Failed to start HTTP Server at {self._host}:"
                               f"{self._requested_port}: {error.strerror or error}") from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={
            "poll_interval": 0.2}, name="serving-rest", daemon=True)
        self._thread.start()
        logger.info("REST API listening on %s://%s:%d", self.scheme, self._host, self.port)
        return self

    def stop(self, grace: float | None = 10.0) -> None:
        """Stops accepting connections, lets requests in progress finish (up to `grace`
        seconds), then closes the open connections."""
        if self._httpd is None:
            return
        self.stopping = True
        self._httpd.shutdown()
        self._httpd.server_close()
        deadline = None if grace is None else time.monotonic() + grace
        with self._idle:
            while self._responding:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    logger.warning("%d REST request(s) still running after %.1f s",
                                   self._responding, grace)
                    break
                self._idle.wait(remaining)
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join()
        self._httpd = None

    def respond(self, method: str, path: str, body: bytes, headers) -> tuple[int, bytes, str]:
        """(HTTP status, body, content type) of one request."""
        if self.stopping:
            return 503, error_body("The server is shutting down."), JSON_CONTENT_TYPE
        if self._metrics_path is not None and path == self._metrics_path:
            return 200, self._metrics.exposition(), METRICS_CONTENT_TYPE
        if not _API_PATH.fullmatch(path):
            return 404, error_body(f"Not found: {method} {path}"), JSON_CONTENT_TYPE
        if method == "OPTIONS" and self.cors:
            origin = headers.get("Origin", "")
            if origin.startswith(("http://", "https://")):
                return 200, b"", JSON_CONTENT_TYPE
            return 400, error_body("Origin header is missing in CORS preflight"), (
                JSON_CONTENT_TYPE)
        with self._idle:
            if self._max_in_flight and self._in_flight >= self._max_in_flight:
                return 429, error_body(
                    f"Too many requests in flight: the server holds at most "
                    f"{self._max_in_flight} at once (--max_in_flight_requests); retry later."), (
                    JSON_CONTENT_TYPE)
            self._in_flight += 1
        try:
            with self._slots:
                response: RestResponse = self._handler.handle(method, path, body)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
        return response.status, response.body, JSON_CONTENT_TYPE

    def _responding_changed(self, delta: int) -> None:
        with self._idle:
            self._responding += delta
            self._idle.notify_all()

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        with self._idle:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)
