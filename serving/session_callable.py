"""`SessionCallable`: a session run from feed tensor names to fetch tensor names, the way the
C++ server runs its session.

It calls the session's C API directly (`TF_SessionRun`, which the Python `Session.run` wraps),
which gives TF Serving's semantics:

* no Python feed-shape check (the C++ server does not check request shapes against a
  placeholder's static shape; TF Serving's tests feed [1] to a [-1, 1] input);
* a `RunOptions` per run, so every request runs with its own `timeout_in_ms` (the request
  deadline) and a run past its deadline is cancelled with DEADLINE_EXCEEDED; a session
  callable (`Session.make_callable`) fixes its `RunOptions` when it is made, and making one
  per deadline would rebuild the executors each time;
* the session's own executor cache per feeds/fetches (built on the first run).
"""

from __future__ import annotations

from typing import Sequence

import grpc
import numpy as np

from serving.serving_error import ServingError


class SessionCallable:
    """Runs `session` with fixed feeds and fetches.

    Args:
        session: A `tf.compat.v1.Session` over a finalized graph.
        feed_names: Tensor names to feed, e.g. `x:0`.
        fetch_names: Tensor names to fetch.

    Raises:
        ServingError: INVALID_ARGUMENT when a name is not a tensor of the graph.
    """

    def __init__(self, session, feed_names: Sequence[str], fetch_names: Sequence[str]) -> None:
        graph = session.graph
        try:
            self._feeds = [graph.get_tensor_by_name(name)._as_tf_output() for name in feed_names]
            self._fetches = [graph.get_tensor_by_name(name)._as_tf_output()
                             for name in fetch_names]
        except (KeyError, ValueError) as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        self._session = session

    def __call__(self, values: Sequence[np.ndarray], timeout_in_ms: int = 0) -> list[np.ndarray]:
        """Runs the session once (`timeout_in_ms` <= 0: no timeout).

        Raises:
            tf.errors.OpError: the run failed (DeadlineExceededError when it timed out).
        """
        from tensorflow.core.protobuf import config_pb2
        from tensorflow.python.client import pywrap_tf_session as tf_session

        options = None
        if timeout_in_ms > 0:
            options = tf_session.TF_NewBufferFromString(
                config_pb2.RunOptions(timeout_in_ms=timeout_in_ms).SerializeToString())
        try:
            return tf_session.TF_SessionRun_wrapper(
                self._session._session, options, dict(zip(self._feeds, values)), self._fetches,
                [], None)
        finally:
            if options is not None:
                tf_session.TF_DeleteBuffer(options)
