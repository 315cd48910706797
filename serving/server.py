"""`Server`: a gRPC model server speaking TensorFlow Serving's API.

Registers `tensorflow.serving.PredictionService` (Predict, Classify, Regress, MultiInference,
GetModelMetadata), `tensorflow.serving.ModelService` (GetModelStatus,
HandleReloadConfigRequest), the standard gRPC health service and server reflection. Models (the
`models` mapping, or the models of `--model_config_file`) are loaded and warmed up before the
port is bound, like `tensorflow_model_server`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Mapping

import grpc
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_service_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.batch_scheduler import BatchScheduler
from serving.batching_parameters import BatchingParameters
from serving.config_file_poller import ConfigFilePoller
from serving.model_config_list import ModelConfigList
from serving.malformed_request_interceptor import MalformedRequestInterceptor
from serving.metrics_interceptor import MetricsInterceptor
from serving.model_manager import ModelManager
from serving.model_servicer import ModelServicer
from serving.model_warmup import ModelWarmup
from serving.prediction_servicer import PredictionServicer
from serving.rest_server import RestServer
from serving.servable_options import ServableOptions
from serving.server_options import ServerOptions
from serving.serving_error import ServingError
from serving.ssl_config import SslConfig
from serving.version_policy import VersionPolicy

logger = logging.getLogger(__name__)

# ServerOptions fields whose behaviour is not built yet: a non-default value is refused at
# start-up rather than silently ignored. Entries leave this set as they are implemented.
_NOT_YET_SUPPORTED: set[str] = set()

_PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
_MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
# The overall status (""), TF Serving's own names, and the fully qualified service names.
_HEALTH_NAMES = ("", "ModelService", "PredictionService", _MODEL_SERVICE.full_name,
                 _PREDICTION_SERVICE.full_name)


def _remaining(deadline: float | None) -> float | None:
    """Seconds left until a `time.monotonic()` deadline (None: no deadline), at least 0."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}"


class Server:
    """A TensorFlow-Serving-compatible gRPC model server.

    Example:
        server = Server({"default": "/models/sentiment"}, port=0).start()
        print(server.port)
        server.stop(grace=10)

    Args:
        models: Model name -> base path; the base path holds one SavedModel per integer-named
            version directory (`BASE/1/saved_model.pb`). May be omitted when
            `options.model_config_file` lists the models.
        options: Every other setting, named after `tensorflow_model_server`'s flags.
        version_policy: Which versions to serve when `models` is given; default: the latest.
        server_credentials: `grpc.ssl_server_credentials(...)` to serve TLS (or set
            `options.ssl_config_file`); default plaintext.
        **option_overrides: Shortcuts for `ServerOptions` fields (`port=0`, `host=...`,
            `file_system_poll_wait_seconds=...`, ...), applied on top of `options`.
    """

    def __init__(self, models: Mapping[str, str | Path] | None = None, *,
                 options: ServerOptions | None = None,
                 version_policy: VersionPolicy | None = None,
                 server_credentials: grpc.ServerCredentials | None = None,
                 **option_overrides) -> None:
        unknown = set(option_overrides) - {f.name for f in dataclasses.fields(ServerOptions)}
        if unknown:
            raise TypeError(f"Unknown server option(s): {sorted(unknown)}. Expected fields of "
                            "serving.ServerOptions.")
        options = (options or ServerOptions()).replace(**option_overrides)
        self.options = options
        self._host = options.host
        self._requested_port = options.port
        self._poll_seconds = options.file_system_poll_wait_seconds
        self._max_workers = options.worker_threads
        self._credentials = server_credentials
        self._health = health.HealthServicer(experimental_non_blocking=True)
        if not models and not options.model_config_file:
            raise ValueError("Server needs models (name -> base path) or "
                             "options.model_config_file. Received: models={}")
        self._manager = ModelManager(models or {}, version_policy=version_policy,
                                     on_change=self._update_health,
                                     tags=options.saved_model_tags,
                                     max_num_load_retries=options.max_num_load_retries,
                                     load_retry_interval_seconds=(
                                         options.load_retry_interval_micros / 1e6),
                                     allow_version_labels_for_unavailable_models=(
                                         options.allow_version_labels_for_unavailable_models),
                                     warmup=ModelWarmup(
                                         options.enable_model_warmup,
                                         options.num_request_iterations_for_warmup))
        self._config_poller: ConfigFilePoller | None = None
        self._server: grpc.Server | None = None
        self._port: int | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._rest: RestServer | None = None

    @property
    def port(self) -> int:
        """The bound port (the free port picked when `port=0`)."""
        if self._port is None:
            raise RuntimeError("The server is not started: call start() first.")
        return self._port

    @property
    def rest_port(self) -> int | None:
        """The bound REST port (a free one for `rest_api_port=-1`), or None when REST is off
        (`rest_api_port=0`, the default)."""
        if self._port is None:
            raise RuntimeError("The server is not started: call start() first.")
        return self._rest.port if self._rest is not None else None

    @property
    def address(self) -> str:
        """`host:port` of the running server."""
        return _address(self._host, self.port)

    @property
    def model_manager(self) -> ModelManager:
        return self._manager

    def available_versions(self, model_name: str) -> list[int]:
        """The AVAILABLE versions of a model, highest first."""
        return self._manager.available_versions(model_name)

    def start(self) -> "Server":
        """Loads every model, then binds the port and starts serving.

        Raises:
            ServingError: a base path is missing or has no versions, a version failed to load,
                or the port cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("The server is already started.")
        defaults = ServerOptions()
        unsupported = sorted(name for name in _NOT_YET_SUPPORTED
                             if getattr(self.options, name) != getattr(defaults, name))
        if unsupported:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               "Not supported by this server yet: "
                               + ", ".join(f"--{name}" for name in unsupported))
        # --ssl_config_file, --enable_batching & co: checked before any model loads.
        if self.options.ssl_config_file and self._credentials is None:
            self._credentials = SslConfig.from_file(
                self.options.ssl_config_file).server_credentials()
        self._manager.servable_options = self._servable_options()
        # With --model_config_file its models replace `models` (as in tensorflow_model_server).
        rest = RestServer.from_options(self.options, self._manager)  # monitoring config
        self._manager.load_all(ModelConfigList.read(self.options.model_config_file)
                               if self.options.model_config_file else None)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers,
                                       thread_name_prefix="serving-grpc"),
            # Unparsable request bytes: INVALID_ARGUMENT (counted), not gRPC's INTERNAL.
            interceptors=[MetricsInterceptor(), MalformedRequestInterceptor()],
            # Past the limit gRPC answers RESOURCE_EXHAUSTED at once, before reading the
            # request, instead of queueing it for a worker thread.
            maximum_concurrent_rpcs=self.options.max_in_flight_requests or None,
            options=[("grpc.max_send_message_length", self.options.grpc_max_message_bytes),
                     ("grpc.max_receive_message_length", self.options.grpc_max_message_bytes),
                     ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self._manager), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self._manager), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (_PREDICTION_SERVICE.full_name, _MODEL_SERVICE.full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)
        address = _address(self._host, self._requested_port)
        try:
            if self._credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self._credentials)
        except RuntimeError as error:
            port, reason = 0, str(error)
        else:
            reason = "the address is in use or not available"
        if not port:
            self._manager.unload_all()
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               f"Failed to bind the gRPC port {address}: {reason}")
        socket_failure = self._add_socket_port(server)  # --grpc_socket_path
        if socket_failure:
            self._manager.unload_all()
            raise ServingError(grpc.StatusCode.UNAVAILABLE, socket_failure)
        self._port = port
        self._server = server
        server.start()
        if rest is not None:
            try:
                self._rest = rest.start()
            except ServingError:
                server.stop(None).wait()
                self._manager.unload_all()
                self._port = self._server = None
                raise
        self._update_health()
        self._manager.start_polling(self._poll_seconds)
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._config_poller = ConfigFilePoller(
                self.options.model_config_file, self._manager,
                self.options.model_config_file_poll_wait_seconds).start()
        logger.info("Listening on %s; models: %s", self.address, {
            name: self._manager.available_versions(name) for name in self._manager.model_names})
        return self

    def _servable_options(self) -> ServableOptions:
        """What every loaded version runs with: batching (`--enable_batching` with TF's
        defaults or `--batching_parameters_file`), the method-name check, tensor_content.

        Raises:
            ServingError: INVALID_ARGUMENT for a bad batching parameters file.
        """
        scheduler = None
        if self.options.enable_batching:
            parameters = (BatchingParameters.from_file(self.options.batching_parameters_file)
                          if self.options.batching_parameters_file
                          else BatchingParameters.for_model_server())
            scheduler = BatchScheduler(parameters)  # its threads run while versions are loaded
        return ServableOptions(
            batch_scheduler=scheduler,
            signature_method_name_check=self.options.enable_signature_method_name_check,
            serialization_as_tensor_content=self.options.enable_serialization_as_tensor_content)

    def _add_socket_port(self, server: grpc.Server) -> str | None:
        """Also listens on `unix:<grpc_socket_path>` (same credentials as the TCP port);
        returns why that failed, or None."""
        path = self.options.grpc_socket_path
        if not path:
            return None
        address = f"unix:{path}"
        try:
            if self._credentials is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, self._credentials)
        except RuntimeError as error:
            return f"Failed to bind the gRPC UNIX socket {path}: {error}"
        if not bound:
            return f"Failed to bind the gRPC UNIX socket {path}"
        logger.info("Running gRPC ModelServer at UNIX socket %s ...", path)
        return None

    def stop(self, grace: float | None = 10.0) -> None:
        """Stops accepting requests, lets in-flight requests finish (up to `grace` seconds),
        then unloads the models. Safe to call twice.

        New requests are refused at once (gRPC UNAVAILABLE, REST 503 or a refused connection).
        Requests still running when the grace period ends are cancelled: their session runs
        stop with CANCELLED, so the models unload and `stop` returns soon after `grace`.
        """
        with self._stop_lock:
            if self._stopped.is_set() or self._server is None:
                self._stopped.set()
                return
            deadline = None if grace is None else time.monotonic() + grace
            self._health.enter_graceful_shutdown()
            grpc_stopped = self._server.stop(grace)  # refuses new RPCs from now on
            self._manager.stop_polling()
            if self._config_poller is not None:
                self._config_poller.stop()
            if self._rest is not None:
                self._rest.stop(_remaining(deadline))
            grpc_stopped.wait(_remaining(deadline))
            # gRPC has cancelled the RPCs still running, but not their session runs.
            in_flight = sum(self._manager.requests_in_flight(name)
                            for name in self._manager.model_names)
            if in_flight:
                logger.warning("%d request(s) still running after the %s s grace period: "
                               "cancelling them", in_flight, grace)
            self._manager.unload_all(cancel_running=grace is not None)
            self._stopped.set()
            logger.info("Server on %s stopped", self.address)

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the server is stopped (or `timeout` passes). Returns True if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "Server":
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _update_health(self) -> None:
        if self._stopped.is_set():
            return
        status = (health_pb2.HealthCheckResponse.SERVING if self._manager.all_models_available()
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in _HEALTH_NAMES:
            self._health.set(name, status)
