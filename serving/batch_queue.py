"""`BatchQueue`: the batches of one signature of one model version, waiting for a batch thread
(TF's `SharedBatchScheduler` queue, `tensorflow/core/kernels/batching_util/
shared_batch_scheduler.h`, without its priority-queue options).

Tasks join the open (last) batch until it would exceed the execution batch size; then a new
batch opens. A batch thread takes the front closed batch, or the open batch once it is full, or
once it has waited `batch_timeout_micros` since its first task (so with the default timeout of
0 a free thread takes whatever has gathered, and requests merge while all threads are busy).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import grpc

from serving.batch_task import BatchTask
from serving.batching_parameters import BatchingParameters
from serving.serving_error import ServingError

# TF's scheduler answers a full queue with UNAVAILABLE; this server answers RESOURCE_EXHAUSTED
# (HTTP 429 over REST), as issue 3 specifies. The texts are TF's.
QUEUE_FULL_CODE = grpc.StatusCode.RESOURCE_EXHAUSTED


class BatchQueue:
    """A queue of batches for one `TensorSignature`, served by a shared `BatchScheduler`.

    Args:
        parameters: The batching settings.
        process_batch: Runs one batch (a list of tasks) and finishes every task in it.
        notify: Tells the scheduler that a batch may have become schedulable.
    """

    def __init__(self, parameters: BatchingParameters,
                 process_batch: Callable[[list[BatchTask]], None],
                 notify: Callable[[], None]) -> None:
        self._parameters = parameters
        self._process_batch = process_batch
        self._notify = notify
        self._max_enqueued = parameters.effective_max_enqueued_batches
        self._execution_limit = parameters.execution_batch_size_limit
        self._timeout = parameters.batch_timeout_micros / 1e6
        self._batches: collections.deque[list[BatchTask]] = collections.deque([[]])
        self._open_size = 0
        self._open_start = 0.0
        self._in_progress = 0
        self._closed = False
        self._lock = threading.Lock()
        self._empty = threading.Condition(self._lock)

    # -- scheduling (request threads) --------------------------------------------------------

    def schedule(self, task: BatchTask) -> None:
        """Adds a task (split across batches when that is enabled and it does not fit).

        Raises:
            ServingError: INVALID_ARGUMENT for a task over `max_batch_size`; QUEUE_FULL_CODE when
                the queue has no room (TF's texts).
        """
        with self._lock:
            if self._closed:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   "The batch scheduling queue is closed")
            self._check_capacity(task)
            remaining = self._execution_limit - self._open_size
            if task.size <= remaining or not self._parameters.enable_large_batch_splitting:
                parts = [task]
            else:
                sizes = [remaining] if remaining > 0 else []
                left = task.size - max(remaining, 0)
                while left > 0:
                    sizes.append(min(left, self._execution_limit))
                    left -= sizes[-1]
                parts = task.split(sizes)
            now = time.monotonic()
            for part in parts:
                if self._open_size + part.size > self._execution_limit:
                    self._start_new_batch()
                if not self._batches[-1]:
                    self._open_start = now
                self._batches[-1].append(part)
                self._open_size += part.size
        self._notify()

    def _check_capacity(self, task: BatchTask) -> None:
        """TF's `ValidateBatchTaskQueueCapacity`, same texts."""
        parameters = self._parameters
        if task.size > parameters.max_batch_size:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Task size {task.size} is larger than maximum input batch size "
                               f"{parameters.max_batch_size}")
        if parameters.enable_large_batch_splitting:
            capacity = self._capacity()
            if task.size > capacity:
                raise ServingError(
                    QUEUE_FULL_CODE,
                    "The batch scheduling queue to which this task was submitted is full; task "
                    f"size is {task.size} but scheduling capacity is only {capacity} "
                    f"(num_enqueued_batches={len(self._batches)}, max_enqueued_batches="
                    f"{self._max_enqueued}, open_batch_size={self._open_size}, "
                    f"max_execution_batch_size={self._execution_limit})")
        elif (self._open_size + task.size > parameters.max_batch_size
              and len(self._batches) >= self._max_enqueued):
            raise ServingError(
                QUEUE_FULL_CODE,
                "The batch scheduling queue to which this task was submitted is full; currently "
                f"{len(self._batches)} batches enqueued and max_enqueued_batches is "
                f"{self._max_enqueued}")

    def _capacity(self) -> int:
        new_batches = self._max_enqueued - len(self._batches)
        return new_batches * self._execution_limit + (self._execution_limit - self._open_size)

    def _start_new_batch(self) -> None:
        self._batches.append([])
        self._open_size = 0

    # -- batch threads ---------------------------------------------------------------------------

    def take_batch(self, now: float) -> list[BatchTask] | None:
        """The next batch to process, or None when no batch is ready (TF's `ScheduleBatch`)."""
        with self._lock:
            if len(self._batches) == 1 and self._open_batch_ready(now):
                self._start_new_batch()
            if len(self._batches) < 2:
                return None
            self._in_progress += 1
            return self._batches.popleft()

    def _open_batch_ready(self, now: float) -> bool:
        return bool(self._batches[-1]) and (
            self._closed or self._open_size >= self._execution_limit
            or now >= self._open_start + self._timeout)

    def ready_at(self) -> float | None:
        """When the open batch becomes ready by timeout (None: no open batch waits)."""
        with self._lock:
            if len(self._batches) == 1 and self._batches[-1]:
                return self._open_start + self._timeout
            return None

    def process(self, batch: list[BatchTask]) -> None:
        """Runs a batch taken with `take_batch` (in a batch thread)."""
        try:
            self._process_batch(batch)
        finally:
            with self._lock:
                self._in_progress -= 1
                self._empty.notify_all()

    # -- state -----------------------------------------------------------------------------------

    @property
    def num_enqueued_tasks(self) -> int:
        """Tasks waiting (not yet taken by a batch thread)."""
        with self._lock:
            return sum(len(batch) for batch in self._batches)

    @property
    def num_batches_in_progress(self) -> int:
        """Batches taken by a batch thread and not finished yet."""
        with self._lock:
            return self._in_progress

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def is_empty(self) -> bool:
        with self._lock:
            return self._is_empty()

    def _is_empty(self) -> bool:
        return self._in_progress == 0 and len(self._batches) == 1 and not self._batches[-1]

    def close_and_wait_until_empty(self) -> None:
        """Refuses new tasks, lets the batch threads process the ones queued, and waits."""
        with self._lock:
            self._closed = True
        self._notify()
        with self._empty:
            self._empty.wait_for(self._is_empty)
