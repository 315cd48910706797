"""`RequestDeadline`: the deadline of the request being served, carried from the RPC handler
down to the session run (TF Serving sets `RunOptions.timeout_in_ms` from the gRPC deadline,
`enforce_session_run_timeout`, and from `--rest_api_timeout_in_ms` over REST).

The deadline lives in a `contextvars.ContextVar`, so the servicer sets it once per request and
`Servable` reads it where the session runs, without every method passing it along:

    with RequestDeadline.scope(context.time_remaining()):
        servable.predict(request)
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import time
from typing import Callable, Iterator, Optional, TypeVar

_Method = TypeVar("_Method", bound=Callable)
# gRPC Python reports "no deadline" as an infinite future (time_remaining() ~ 1e10 s).
_NO_DEADLINE_SECONDS = 1e8
_deadline: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar(
    "serving_request_deadline", default=None)


class RequestDeadline:
    """Reads and scopes the current request's deadline (a `time.monotonic()` instant)."""

    @staticmethod
    @contextlib.contextmanager
    def scope(timeout_seconds: float | None) -> Iterator[None]:
        """Sets the deadline to `timeout_seconds` from now for the block (None: no deadline).

        A deadline already set and earlier is kept.
        """
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        outer = _deadline.get()
        if outer is not None and (deadline is None or outer < deadline):
            deadline = outer
        token = _deadline.set(deadline)
        try:
            yield
        finally:
            _deadline.reset(token)

    @staticmethod
    def current() -> float | None:
        """The deadline as a `time.monotonic()` instant, or None when there is none."""
        return _deadline.get()

    @staticmethod
    def timeout_in_ms(deadline: float | None, now: float | None = None) -> int:
        """`RunOptions.timeout_in_ms` for a deadline: 0 (no timeout) for None, else the
        milliseconds left, rounded up and at least 1 (TF reads <= 0 as "no timeout")."""
        if deadline is None:
            return 0
        remaining = deadline - (time.monotonic() if now is None else now)
        return max(1, math.ceil(remaining * 1000))


def with_grpc_deadline(method: _Method) -> _Method:
    """Decorates a servicer method: the RPC's deadline (`context.time_remaining()`) becomes the
    request deadline while it runs."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        remaining = context.time_remaining()
        if remaining is not None and remaining > _NO_DEADLINE_SECONDS:
            remaining = None
        with RequestDeadline.scope(remaining):
            return method(self, request, context)

    return wrapper  # type: ignore[return-value]
