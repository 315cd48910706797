"""`BatchingSession`: merges concurrent session runs of one model version into batched runs,
as TF Serving's `BatchingSession` (`batching/batching_session.cc`) wraps a SavedModel's session
with `--enable_batching`.

* Every SignatureDef gets a queue, keyed by its `TensorSignature` (the set of input tensor names
  and the set of output tensor names). A run whose feeds and fetches match one is batched; any
  other run (e.g. a Predict with an `output_filter` subset) runs directly, as in TF Serving.
* A run's inputs must share dimension 0 (its size). Tasks are concatenated along it, padded up
  to the next `allowed_batch_sizes` entry with the first row of the last task, and with
  `pad_variable_length_inputs` padded in their other dimensions with their first element.
* Every output must have dimension 0 equal to the batch size; it is split back per task.
  Otherwise the batch fails (TF Serving's FAILED_PRECONDITION texts); nothing is mis-split.
* The batch runs with the latest deadline of its tasks as the session timeout; tasks whose
  deadline passed while they waited in the queue are dropped before the run (TF Serving drops
  them only when every task of the batch expired), and a waiting request gives up at its
  deadline.

One deliberate difference: a run whose input dtypes differ from the signature's runs directly
(the session then reports TF's own dtype error for that request alone) instead of joining a
batch where TF Serving's concatenation would fail every request in it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import grpc
import numpy as np

from serving.batch_scheduler import BatchScheduler
from serving.batch_task import BatchTask
from serving.metrics import Metrics
from serving.request_deadline import RequestDeadline
from serving.serving_error import ServingError

logger = logging.getLogger(__name__)

# (feed names, fetch names, timeout_in_ms) -> fetched values; the servable's direct session run.
RunSession = Callable[[Sequence[str], Sequence[np.ndarray], Sequence[str], int],
                      list[np.ndarray]]

_BYPASS_WARNING_SECONDS = 120.0  # TF Serving: LOG_EVERY_N_SEC(WARNING, 120)
_MAX_PADDED_RANK = 6


@dataclass(frozen=True)
class _TensorSignature:
    inputs: frozenset
    outputs: frozenset


def _failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def _invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def input_batch_size(values: Sequence[np.ndarray]) -> int:
    """Dimension 0 shared by every input (TF Serving's `ComputeTensorBatchSize`, same texts).

    Raises:
        ServingError: INVALID_ARGUMENT when there is no input, an input is a scalar, or the
            inputs disagree on dimension 0.
    """
    if not values:
        raise _invalid_argument("Batching Run() must have at least one input tensor")
    size = None
    for value in values:
        if value.ndim == 0:
            raise _invalid_argument(
                "Batching Run() input tensors must have at least one dimension")
        if size is None:
            size = value.shape[0]
        elif value.shape[0] != size:
            raise _invalid_argument(
                "Batching Run() input tensors must have equal 0th-dimension size")
    return int(size)


def _round_to_allowed(allowed: Sequence[int], size: int) -> int:
    """TF Serving's `RoundToLowestAllowedBatchSize`."""
    for allowed_size in allowed:
        if allowed_size >= size:
            return allowed_size
    if allowed:
        logger.error("Batch size %d is greater than the largest allowed size; ignoring "
                     "allowed batch sizes constraint.", size)
    return size


class BatchingSession:
    """Batches a servable's session runs, one queue per signature, on a shared scheduler.

    Args:
        run_session: The direct session run: (feeds, values, fetches, timeout_in_ms) -> values.
        signatures: The model's SignatureDefs.
        scheduler: The server's shared `BatchScheduler` (its `parameters` apply).
        name: For log messages, e.g. `model/3`.
    """

    def __init__(self, run_session: RunSession, signatures: Iterable, scheduler: BatchScheduler,
                 name: str = "") -> None:
        self._run_session = run_session
        self._scheduler = scheduler
        self._parameters = scheduler.parameters
        self._name = name
        self._queues = {}
        self._dtypes: dict[_TensorSignature, dict[str, np.dtype]] = {}
        for signature in signatures:
            key, dtypes = self._tensor_signature(signature)
            if key is not None and key not in self._queues:
                self._queues[key] = scheduler.add_queue(
                    lambda batch, key=key: self._process_batch(key, batch))
                self._dtypes[key] = dtypes
        self._stats_lock = threading.Lock()
        self._wrapped_runs = 0
        self._batched_tasks = 0
        self._last_bypass_warning = -math.inf

    @staticmethod
    def _tensor_signature(signature) -> tuple[_TensorSignature | None, dict[str, np.dtype]]:
        import tensorflow as tf

        infos = list(signature.inputs.values()) + list(signature.outputs.values())
        if not signature.inputs or any(not info.name for info in infos):
            return None, {}  # sparse/composite tensors cannot be batched by name
        dtypes = {}
        for info in signature.inputs.values():
            try:
                dtypes[info.name] = np.dtype(tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
            except TypeError:
                pass
        return _TensorSignature(frozenset(info.name for info in signature.inputs.values()),
                                frozenset(info.name for info in signature.outputs.values())), dtypes

    # -- statistics (for tests, benchmarks and monitoring) ---------------------------------------

    @property
    def wrapped_run_count(self) -> int:
        """Batched session runs so far (TF Serving's `batching_session/wrapped_run_count`)."""
        with self._stats_lock:
            return self._wrapped_runs

    @property
    def batched_task_count(self) -> int:
        """Tasks processed by those runs (a split request counts once per part)."""
        with self._stats_lock:
            return self._batched_tasks

    @property
    def num_enqueued_tasks(self) -> int:
        """Tasks waiting in this version's queues."""
        return sum(queue.num_enqueued_tasks for queue in self._queues.values())

    @property
    def num_batches_in_progress(self) -> int:
        """Batches of this version being processed by batch threads right now."""
        return sum(queue.num_batches_in_progress for queue in self._queues.values())

    # -- running ---------------------------------------------------------------------------------

    def run(self, feed_names: Sequence[str], feed_values: Sequence[np.ndarray],
            fetch_names: Sequence[str], deadline: float | None) -> list[np.ndarray]:
        """Runs feeds -> fetches, batched with concurrent runs of the same signature.

        Raises:
            ServingError: TF Serving's batching errors, or the session's.
        """
        key = _TensorSignature(frozenset(feed_names), frozenset(fetch_names))
        queue = self._queues.get(key)
        if queue is None:
            self._warn_bypass(feed_names, fetch_names)
            return self._direct(feed_names, feed_values, fetch_names, deadline)
        size = input_batch_size(feed_values)
        expected = self._dtypes[key]
        if any(name in expected and value.dtype != expected[name]
               for name, value in zip(feed_names, feed_values)):
            return self._direct(feed_names, feed_values, fetch_names, deadline)
        task = BatchTask(dict(zip(feed_names, feed_values)), size, deadline)
        queue.schedule(task)
        outputs = task.wait()
        return [outputs[name] for name in fetch_names]

    def _direct(self, feed_names, feed_values, fetch_names, deadline) -> list[np.ndarray]:
        return self._run_session(feed_names, feed_values, fetch_names,
                                 RequestDeadline.timeout_in_ms(deadline))

    def _warn_bypass(self, feed_names, fetch_names) -> None:
        now = time.monotonic()
        if now - self._last_bypass_warning >= _BYPASS_WARNING_SECONDS:
            self._last_bypass_warning = now
            logger.warning(
                "Request doesn't match any declared signature and no default scheduler creator "
                "specified. Bypassing batcher. Request signature is: {input_tensors: <%s>, "
                "output_tensors: <%s>}", ", ".join(sorted(feed_names)),
                ", ".join(sorted(fetch_names)))

    def close(self) -> None:
        """Waits for the queued runs, then removes this version's queues from the scheduler."""
        for queue in self._queues.values():
            self._scheduler.remove_queue(queue)

    # -- one batch (batch threads) ---------------------------------------------------------------

    def _process_batch(self, key: _TensorSignature, tasks: list[BatchTask]) -> None:
        """TF Serving's `ProcessBatch`: merge, run once, split; every task gets the outcome.

        Tasks whose deadline passed while they waited are dropped, not run (TF Serving runs
        them along with the live ones, and skips only a batch in which every task expired).
        """
        now = time.monotonic()
        expired = [task for task in tasks if task.deadline is not None and task.deadline <= now]
        if expired:
            timed_out = ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     "Run() timeout exceeded while waiting in batching queue")
            for task in expired:
                task.finish(error=timed_out)
            tasks = [task for task in tasks if not (task.deadline is not None
                                                    and task.deadline <= now)]
            if not tasks:
                return
        try:
            outputs = self._run_batch(key, tasks)
        except ServingError as error:
            for task in tasks:
                task.finish(error=error)
            return
        except Exception as error:  # noqa: BLE001  (every waiting request must be answered)
            logger.exception("Batch of %s failed", self._name)
            failure = ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
            for task in tasks:
                task.finish(error=failure)
            return
        for task, task_outputs in zip(tasks, outputs):
            task.finish(task_outputs)

    def _run_batch(self, key: _TensorSignature,
                   tasks: list[BatchTask]) -> list[dict[str, np.ndarray]]:
        now = time.monotonic()
        deadlines = [task.deadline for task in tasks]
        timeout = RequestDeadline.timeout_in_ms(None if None in deadlines else max(deadlines), now)
        sizes = [task.size for task in tasks]
        batch_size = sum(sizes)
        # No row to pad with in a batch of empty requests: it runs as it is.
        padded_size = (_round_to_allowed(self._parameters.allowed_batch_sizes, batch_size)
                       if batch_size else 0)
        feed_names = sorted(key.inputs)
        fetch_names = sorted(key.outputs)
        merged = [self._merge(name, [task.inputs[name] for task in tasks], padded_size - batch_size)
                  for name in feed_names]
        combined = self._run_session(feed_names, merged, fetch_names, timeout)
        with self._stats_lock:
            self._wrapped_runs += 1
            self._batched_tasks += len(tasks)
        Metrics.default().record_batch(  # TF Serving's batching_session metrics
            batch_size, padded_size, [now - task.enqueue_time for task in tasks],
            self._parameters.thread_pool_name)
        return self._split(fetch_names, combined, sizes, padded_size)

    def _merge(self, name: str, tensors: list[np.ndarray], padding: int) -> np.ndarray:
        """TF Serving's `MergeInputTensors` for one input tensor name."""
        if self._parameters.pad_variable_length_inputs:
            tensors = self._pad_to_common_shape(name, tensors)
        else:
            reference = tensors[0].shape[1:]
            for tensor in tensors[1:]:
                if tensor.shape[1:] != reference:
                    raise _failed_precondition(
                        f"Tensors with name '{name}' from different tasks have different shapes "
                        "and padding is turned off.Set pad_variable_length_inputs to true, or "
                        "ensure that all tensors with the same namehave equal dimensions "
                        "starting with the first dim.")
        if padding > 0:
            rows = next((tensor for tensor in reversed(tensors) if len(tensor)), None)
            if rows is not None:
                tensors = tensors + [np.repeat(rows[:1], padding, axis=0)]
        if len(tensors) == 1:
            return tensors[0]
        return np.concatenate(tensors, axis=0)

    @staticmethod
    def _pad_to_common_shape(name: str, tensors: list[np.ndarray]) -> list[np.ndarray]:
        """TF Serving's `CalculateMaxDimSizes` + `AddPadding`: pad every dimension but the
        first up to the largest size in the batch, with the tensor's first element."""
        rank = tensors[0].ndim
        if any(tensor.ndim != rank for tensor in tensors):
            raise _failed_precondition(
                f"Tensors with name '{name}' from different tasks have different ranks and "
                "cannot be padded to one shape.")
        largest = [max(tensor.shape[d] for tensor in tensors) for d in range(rank)]
        padded = []
        for tensor in tensors:
            target = (tensor.shape[0], *largest[1:])
            if tensor.shape == target:
                padded.append(tensor)
                continue
            if rank > _MAX_PADDED_RANK:
                raise _invalid_argument("Only tensors with rank from 1 to 6 can be padded.")
            if tensor.size < 1:
                raise _invalid_argument("Got empty tensor in batch of non-empty tensors.")
            out = np.full(target, tensor.flat[0], dtype=tensor.dtype)
            out[tuple(slice(0, size) for size in tensor.shape)] = tensor
            padded.append(out)
        return padded

    @staticmethod
    def _split(fetch_names: list[str], combined: list[np.ndarray], sizes: list[int],
               padded_size: int) -> list[dict[str, np.ndarray]]:
        """TF Serving's `SplitOutputTensors`: refuses outputs not batched along dimension 0."""
        offsets = np.cumsum(sizes)[:-1]
        per_task: list[dict[str, np.ndarray]] = [{} for _ in sizes]
        for name, tensor in zip(fetch_names, combined):
            tensor = np.asarray(tensor)
            if tensor.ndim == 0:
                raise _failed_precondition("Batched output tensor has 0 dimensions")
            if tensor.shape[0] != padded_size:
                raise _failed_precondition(
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    "dimension sizes of the input tensors")
            parts = np.split(tensor[:sum(sizes)], offsets, axis=0)
            for outputs, part in zip(per_task, parts):
                outputs[name] = part
        return per_task
