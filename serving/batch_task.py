"""`BatchTask`: one session run waiting in a batch queue (TF Serving's `BatchingSessionTask`)."""

from __future__ import annotations

import threading
import time
from typing import Mapping, Sequence

import grpc
import numpy as np

from serving.serving_error import ServingError


class BatchTask:
    """The inputs of one request's session run, and where its outputs go.

    A task that is too large for one batch is split (`split`) into parts that go to different
    batches; the task completes when its last part does, with the parts' outputs concatenated
    along dimension 0 (TF Serving's `SplitInputTask`).

    Attributes:
        inputs: Feed tensor name -> value; every value has `size` rows.
        size: The rows of this task (dimension 0 of every input).
        deadline: `time.monotonic()` instant after which the request is given up, or None.
        enqueue_time: When the request was scheduled (`time.monotonic()`).
    """

    def __init__(self, inputs: Mapping[str, np.ndarray], size: int, deadline: float | None,
                 enqueue_time: float | None = None) -> None:
        self.inputs = dict(inputs)
        self.size = size
        self.deadline = deadline
        self.enqueue_time = time.monotonic() if enqueue_time is None else enqueue_time
        self._outputs: dict[str, np.ndarray] | None = None
        self._error: ServingError | None = None
        self._done = threading.Event()
        self._parent: BatchTask | None = None
        self._index = 0
        self._parts: list[dict[str, np.ndarray] | None] = []
        self._parts_left = 0
        self._parts_lock = threading.Lock()

    def split(self, sizes: Sequence[int]) -> list["BatchTask"]:
        """Splits this task into parts of `sizes` rows (which sum to `size`), in order."""
        parts, start = [], 0
        for index, rows in enumerate(sizes):
            inputs = {name: value[start:start + rows] for name, value in self.inputs.items()}
            part = BatchTask(inputs, rows, self.deadline, self.enqueue_time)
            part._parent, part._index = self, index
            parts.append(part)
            start += rows
        self._parts, self._parts_left = [None] * len(parts), len(parts)
        return parts

    def finish(self, outputs: Mapping[str, np.ndarray] | None = None,
               error: ServingError | None = None) -> None:
        """Completes the task with its outputs (fetch tensor name -> value) or an error."""
        if self._parent is not None:
            self._parent._finish_part(self._index, outputs, error)
            return
        self._outputs, self._error = (dict(outputs) if outputs is not None else None), error
        self._done.set()

    def _finish_part(self, index: int, outputs, error: ServingError | None) -> None:
        with self._parts_lock:
            self._parts[index] = dict(outputs) if outputs is not None else None
            if error is not None and self._error is None:
                self._error = error
            self._parts_left -= 1
            if self._parts_left:
                return
        if self._error is None:
            names = self._parts[0].keys()
            self._outputs = {name: np.concatenate([part[name] for part in self._parts])
                             for name in names}
        self._done.set()

    def wait(self) -> dict[str, np.ndarray]:
        """Blocks until the task is processed (or its deadline passes); returns its outputs.

        A task given up at its deadline stays queued; the batch thread drops it unrun.

        Raises:
            ServingError: DEADLINE_EXCEEDED at the deadline; the batch (or one of this task's
                parts) failed.
        """
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        if not self._done.wait(timeout):
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               "Deadline Exceeded while waiting in the batching queue")
        if self._error is not None:
            raise self._error
        return self._outputs
