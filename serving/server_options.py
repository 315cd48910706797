"""`ServerOptions`: every setting of the model server, named after `tensorflow_model_server`'s
flags (model_servers/main.cc) with TF Serving's defaults, except `host` (local only here)."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

INT32_MAX = 2**31 - 1
# rest_api_port value asking for REST on a free port (0 means "no REST", as in TF Serving).
ANY_FREE_PORT = -1
# Requests held at once per transport: room for a 64-client closed-loop load plus health and
# status calls; each held request costs its message and (once running) a worker thread.
DEFAULT_MAX_IN_FLIGHT_REQUESTS = 128


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """Options of `serving.Server`; `tfinetune serve` fills them from its flags.

    Attributes:
        host: Interface to listen on (TF Serving listens on 0.0.0.0).
        port: gRPC port; 0 picks a free one.
        grpc_socket_path: Also listen on this UNIX socket.
        grpc_max_threads: gRPC worker threads (default 4 x CPUs).
        grpc_max_message_bytes: Largest gRPC message sent or received (TF Serving: INT32_MAX).
        max_in_flight_requests: Most requests held at once per transport (gRPC: every RPC,
            running or waiting for a worker thread; REST: requests running or waiting for a
            slot). Past it a new request is refused at once with RESOURCE_EXHAUSTED (HTTP
            429) instead of queueing without bound. 0: no limit (TF Serving has none).
        rest_api_port: HTTP/REST port; 0 (TF Serving's default) disables REST. Must differ from
            `port`. `ANY_FREE_PORT` (-1, Python API only: the CLI takes 0-65535 like TF
            Serving) serves REST on a free port, read back from `Server.rest_port`.
        rest_api_num_threads: REST worker threads (default 4 x CPUs).
        rest_api_timeout_in_ms: Deadline of a REST request.
        rest_api_enable_cors_support: Add CORS headers to REST responses.
        rest_api_max_body_bytes: Largest REST request body (after gunzip); larger ones are
            answered 413 without being read.
        rest_api_ssl_config_file: A text `SSLConfig` (same format as `ssl_config_file`, may be
            the same file): the REST API speaks HTTPS.
        model_config_file: A text `ModelServerConfig` (`model_config_list { config { ... } }`);
            when set, the single-model name/base path are not used.
        model_config_file_poll_wait_seconds: Re-read `model_config_file` this often; 0 never.
        file_system_poll_wait_seconds: Look for new version directories this often; 0 once,
            negative never.
        allow_version_labels_for_unavailable_models: Let new labels point at versions that
            are not loaded yet.
        max_num_load_retries: Retries of a version that failed to load.
        load_retry_interval_micros: Least time between load attempts of a version.
        saved_model_tags: MetaGraphDef tags to load, comma separated in the flag.
        enable_model_warmup: Replay `assets.extra/tf_serving_warmup_requests` before a version
            becomes AVAILABLE.
        num_request_iterations_for_warmup: Times each warm-up record is replayed.
        enable_batching: Merge concurrent requests into one session run.
        batching_parameters_file: A text `BatchingParameters`.
        monitoring_config_file: A text `MonitoringConfig` (Prometheus on the REST port).
        ssl_config_file: A text `SSLConfig` (TLS for gRPC).
        enable_signature_method_name_check: Refuse Predict/Classify/Regress on signatures whose
            method_name is for another API.
        enable_serialization_as_tensor_content: Write output tensors as `tensor_content`.
    """

    host: str = "127.0.0.1"
    port: int = 8500
    grpc_socket_path: Optional[str] = None
    grpc_max_threads: Optional[int] = None
    grpc_max_message_bytes: int = INT32_MAX
    max_in_flight_requests: int = DEFAULT_MAX_IN_FLIGHT_REQUESTS
    rest_api_port: int = 0
    rest_api_num_threads: Optional[int] = None
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    rest_api_ssl_config_file: Optional[str] = None
    model_config_file: Optional[str] = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    saved_model_tags: tuple[str, ...] = ("serve",)
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    enable_batching: bool = False
    batching_parameters_file: Optional[str] = None
    monitoring_config_file: Optional[str] = None
    ssl_config_file: Optional[str] = None
    enable_signature_method_name_check: bool = False
    enable_serialization_as_tensor_content: bool = False

    def __post_init__(self) -> None:
        for name in ("port", "rest_api_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535 and not (name == "rest_api_port"
                                                 and value == ANY_FREE_PORT):
                raise ValueError(f"{name} must be a port number (0-65535). Received: {value}")
        if self.rest_api_port and self.rest_api_port == self.port:
            raise ValueError(
                "rest_api_port must differ from the gRPC port. "
                f"Received: port={self.port}, rest_api_port={self.rest_api_port}")
        if self.batching_parameters_file and not self.enable_batching:
            # TF Serving's exact text (server.cc).
            raise ValueError("server_options.batching_parameters_file is set without setting "
                             "server_options.enable_batching to true.")
        if self.rest_api_max_body_bytes < 1:
            raise ValueError("rest_api_max_body_bytes must be positive. "
                             f"Received: {self.rest_api_max_body_bytes}")
        if self.grpc_max_message_bytes < 1:
            raise ValueError("grpc_max_message_bytes must be positive. "
                             f"Received: {self.grpc_max_message_bytes}")
        if self.max_in_flight_requests < 0:
            raise ValueError("max_in_flight_requests must be >= 0 (0: no limit). "
                             f"Received: {self.max_in_flight_requests}")
        if self.max_num_load_retries < 0:
            raise ValueError("max_num_load_retries must be >= 0. "
                             f"Received: {self.max_num_load_retries}")
        if not self.saved_model_tags:
            raise ValueError("saved_model_tags needs at least one tag. Received: ()")

    @property
    def worker_threads(self) -> int:
        return self.grpc_max_threads or 4 * (os.cpu_count() or 1)

    def replace(self, **changes) -> "ServerOptions":
        return dataclasses.replace(self, **changes)
