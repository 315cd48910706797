"""`BatchScheduler`: the batch threads shared by every batch queue of the server (TF's
`SharedBatchScheduler`, which `tensorflow_model_server` creates once for all models).

`num_batch_threads` threads visit the queues round-robin and each processes one ready batch at
a time; a thread with nothing to do sleeps until a queue reports new work or an open batch's
timeout expires. The threads run while the scheduler has queues: they start with the first
queue and stop when the last one is removed (when the last model version is unloaded).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from serving.batch_queue import BatchQueue
from serving.batch_task import BatchTask
from serving.batching_parameters import BatchingParameters

logger = logging.getLogger(__name__)

# Longest idle sleep: a safety net only, queues notify the threads of new work.
_MAX_IDLE_SECONDS = 1.0
_MIN_IDLE_SECONDS = 0.0005


class BatchScheduler:
    """Batch threads and the queues they serve.

    Example:
        scheduler = BatchScheduler(BatchingParameters(max_batch_size=32))
        queue = scheduler.add_queue(process_batch)   # starts the threads
        ...
        scheduler.remove_queue(queue)   # the last queue: stops the threads

    Args:
        parameters: The batching settings; `num_batch_threads` and `thread_pool_name` are used
            here, the rest by each queue.
    """

    def __init__(self, parameters: BatchingParameters) -> None:
        self.parameters = parameters
        self._queues: list[BatchQueue] = []
        self._next = 0
        self._work = threading.Condition()
        self._generation = 0  # threads of an older generation exit
        self._threads: list[threading.Thread] = []

    @property
    def running_threads(self) -> int:
        """How many batch threads are running (0 while there is no queue)."""
        with self._work:
            return sum(thread.is_alive() for thread in self._threads)

    def add_queue(self, process_batch: Callable[[list[BatchTask]], None]) -> BatchQueue:
        """A new queue whose batches are processed by `process_batch` on the batch threads."""
        queue = BatchQueue(self.parameters, process_batch, self._notify)
        with self._work:
            self._queues.append(queue)
            if not self._threads:
                self._start_threads()
        return queue

    def _start_threads(self) -> None:
        generation = self._generation
        self._threads = [
            threading.Thread(target=self._thread_logic, args=(generation,), daemon=True,
                             name=f"{self.parameters.thread_pool_name}_{i}")
            for i in range(self.parameters.num_batch_threads)]
        for thread in self._threads:
            thread.start()
        logger.info("Started %d batch threads: %s", len(self._threads), self.parameters)

    def remove_queue(self, queue: BatchQueue) -> None:
        """Closes a queue, waits until its batches are processed, and forgets it; removing the
        last queue stops the threads."""
        queue.close_and_wait_until_empty()
        stopped: list[threading.Thread] = []
        with self._work:
            if queue in self._queues:
                index = self._queues.index(queue)
                self._queues.pop(index)
                if index < self._next:
                    self._next -= 1
                if self._next >= len(self._queues):
                    self._next = 0
            if not self._queues and self._threads:
                self._generation += 1
                stopped, self._threads = self._threads, []
                self._work.notify_all()
        for thread in stopped:
            if thread is not threading.current_thread():
                thread.join()

    def close(self) -> None:
        """Processes what is queued, removes every queue and stops the threads."""
        with self._work:
            queues = list(self._queues)
        for queue in queues:
            self.remove_queue(queue)

    def _notify(self) -> None:
        with self._work:
            self._work.notify()

    def _thread_logic(self, generation: int) -> None:
        while True:
            with self._work:
                while True:
                    if self._generation != generation:
                        return
                    queue, batch = self._next_batch()
                    if batch is not None:
                        break
                    self._work.wait(self._idle_seconds())
            try:
                queue.process(batch)
            except Exception:  # noqa: BLE001  (a batch thread must survive any batch)
                logger.exception("Processing a batch failed")

    def _next_batch(self) -> tuple[BatchQueue | None, list[BatchTask] | None]:
        """Round-robin over the queues for a ready batch (TF's `GetNextWorkItem_Locked`)."""
        now = time.monotonic()
        for _ in range(len(self._queues)):
            queue = self._queues[self._next]
            self._next = (self._next + 1) % len(self._queues)
            batch = queue.take_batch(now)
            if batch is not None:
                return queue, batch
        return None, None

    def _idle_seconds(self) -> float:
        ready = [at for at in (queue.ready_at() for queue in self._queues) if at is not None]
        if not ready:
            return _MAX_IDLE_SECONDS
        return min(_MAX_IDLE_SECONDS, max(_MIN_IDLE_SECONDS, min(ready) - time.monotonic()))
