"""`MetricsInterceptor`: counts every gRPC call of TF Serving's services in `Metrics`."""

from __future__ import annotations

import time
from typing import Iterable

import grpc

from serving.metrics import Metrics

_TF_SERVING_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
_EXAMPLE_APIS = ("Classify", "Regress")


def _model_name(request) -> str:
    """`ModelSpec.name` of a request (MultiInference: of its first task), else ""."""
    spec = getattr(request, "model_spec", None)
    if spec is None:
        tasks = getattr(request, "tasks", None)
        spec = tasks[0].model_spec if tasks else None
    return spec.name if spec is not None else ""


def _example_count(request) -> int:
    model_input = request.input
    kind = model_input.WhichOneof("kind")
    return len(getattr(model_input, kind).examples) if kind else 0


class MetricsInterceptor(grpc.ServerInterceptor):
    """Records `request_count` (every call) and `request_latency` (successful calls, entrypoint
    `GRPC`, API = the RPC name) for the unary RPCs of `PredictionService` and `ModelService`.

    Health checks and reflection are not model requests and are not counted.

    Args:
        metrics: Where to record; default `Metrics.default()`.
        services: Full names of the services to count.
    """

    def __init__(self, metrics: Metrics | None = None,
                 services: Iterable[str] = _TF_SERVING_SERVICES) -> None:
        self._metrics = metrics or Metrics.default()
        self._services = frozenset(services)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, _, api = handler_call_details.method.lstrip("/").rpartition("/")
        if service not in self._services:
            return handler
        behavior = handler.unary_unary
        metrics = self._metrics

        def counted(request, context):
            start = time.perf_counter()
            code = None
            try:
                response = behavior(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                name = _model_name(request)
                metrics.record_request(name, api, "GRPC", code or grpc.StatusCode.UNKNOWN,
                                       time.perf_counter() - start)
                if code == grpc.StatusCode.OK and api in _EXAMPLE_APIS:
                    metrics.record_example_count(name, _example_count(request))

        return grpc.unary_unary_rpc_method_handler(
            counted, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
