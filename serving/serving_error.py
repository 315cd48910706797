"""`ServingError`: a failure with a gRPC status code, raised by the server and the client."""

from __future__ import annotations

import functools
import logging
from typing import Callable, TypeVar

import grpc

logger = logging.getLogger(__name__)

# TF Serving's ToGRPCStatus (model_servers/grpc_status_util.cc) truncates long messages.
_MESSAGE_LIMIT = 1024
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

_Method = TypeVar("_Method", bound=Callable)


class ServingError(Exception):
    """A serving failure carrying the gRPC status code TF Serving would return.

    The server aborts an RPC with exactly `code` and `message`; the client raises it when a
    call fails (its message is then the server's status text).

    Attributes:
        code: The `grpc.StatusCode` of the failure.
        message: The status text, e.g. `Servable not found for request: Latest(half)`.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"

    @classmethod
    def from_code_number(cls, number: int, message: str) -> "ServingError":
        """Builds the error from a canonical code number (`tf.errors.OpError.error_code`)."""
        return cls(_CODES_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN), message)

    @classmethod
    def from_op_error(cls, error: Exception) -> "ServingError":
        """Maps a `tf.errors.OpError` to the gRPC code with the same canonical number."""
        return cls.from_code_number(error.error_code, error.message)


def grpc_message(message: str) -> str:
    """The status text as TF Serving sends it: cut at 1024 characters plus `...TRUNCATED`."""
    if len(message) > _MESSAGE_LIMIT:
        return message[:_MESSAGE_LIMIT] + "...TRUNCATED"
    return message


def aborts_on_error(method: _Method) -> _Method:
    """Decorates a servicer method so that no exception escapes it without a status.

    `ServingError` aborts the RPC with its code and message. Any other exception is logged and
    aborts with INTERNAL and the exception's text, never as a bare UNKNOWN.
    """

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as error:
            failure = error
        except Exception as error:  # noqa: BLE001  (the server must answer every request)
            logger.exception("Unexpected error in %s", method.__name__)
            failure = ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        context.abort(failure.code, grpc_message(failure.message))

    return wrapper  # type: ignore[return-value]
