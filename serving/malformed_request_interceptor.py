"""`MalformedRequestInterceptor`: a request whose bytes are not the RPC's message is answered
INVALID_ARGUMENT, not gRPC's INTERNAL "Exception deserializing request!"."""

from __future__ import annotations

import logging
from typing import Iterable

import grpc

logger = logging.getLogger(__name__)

_TF_SERVING_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


class _Unparsable:
    """What the tolerant deserializer hands to the method instead of a message."""

    def __init__(self, message: str) -> None:
        self.message = message


class MalformedRequestInterceptor(grpc.ServerInterceptor):
    """Parses the requests of TF Serving's services itself: bytes that are not a valid
    request message (random bytes, truncated messages, wrong wire types, nesting past
    protobuf's recursion limit) end the call with INVALID_ARGUMENT naming the expected message,
    before the servicer runs. gRPC's own handling would answer INTERNAL, which reads as a
    server fault.

    Args:
        services: Full names of the services whose requests are parsed this way.
    """

    def __init__(self, services: Iterable[str] = _TF_SERVING_SERVICES) -> None:
        self._services = frozenset(services)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        if service not in self._services:
            return handler
        parse = handler.request_deserializer
        behavior = handler.unary_unary
        # The request class's full name, e.g. tensorflow.serving.PredictRequest.
        message_class = getattr(parse, "__self__", None)
        descriptor = getattr(message_class, "DESCRIPTOR", None)
        expected = descriptor.full_name if descriptor is not None else f"{method} request"

        def tolerant_parse(data: bytes):
            try:
                return parse(data)
            except Exception as error:  # noqa: BLE001  (DecodeError, RecursionError, ...)
                return _Unparsable(f"Could not parse the request as a {expected}: "
                                   f"{type(error).__name__}: {error}")

        def checked(request, context):
            if isinstance(request, _Unparsable):
                logger.debug("%s: %s", handler_call_details.method, request.message)
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            checked, request_deserializer=tolerant_parse,
            response_serializer=handler.response_serializer)
