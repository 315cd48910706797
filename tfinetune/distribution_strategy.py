"""`DistributionStrategy`: the `tf.distribute` strategy `fit --strategy` trains with, and this
process's place in the cluster (worker index, chief or not)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any
from typing import Mapping
from typing import Sequence

from tfinetune.errors import ConfigError

logger = logging.getLogger(__name__)

#: `fit --strategy` choices.
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
#: TF_CONFIG task types that train (TensorFlow's "evaluator" and "ps" are not supported).
_TRAINING_TASKS = ("chief", "worker")

# Strategies made in this process, by kind and devices: TensorFlow numbers the collective
# operations of each strategy from the same start, so two strategies over the same devices in
# one process mix up their collectives (a second `fit` reuses the first one's strategy).
_STRATEGIES: dict = {}

_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\'')


class DistributionStrategy:
    """How `fit` spreads training over devices and machines.

    - `one-device`: TensorFlow's default strategy (one device, as without a strategy).
    - `mirrored`: `tf.distribute.MirroredStrategy` over this machine's GPUs, or over its
      logical CPU devices when there are several (`tf.config.set_logical_device_configuration`).
    - `multi-worker`: `tf.distribute.MultiWorkerMirroredStrategy` configured from the
      `TF_CONFIG` environment variable: every worker runs the same command; worker 0 (or the
      `chief` task) is the chief, which alone writes the run directory.
    - `auto`: multi-worker when `TF_CONFIG` names more than one task in its cluster, mirrored
      when there is more than one GPU, else one-device.

    Create it with `create` before any other TensorFlow operation runs (MultiWorkerMirrored
    configures the TensorFlow runtime when it is created).

    Args:
        name: The resolved strategy name (never `auto`).
        strategy: The `tf.distribute.Strategy`.
        worker_index: This worker's index in the cluster (0 for the chief; 0 without a cluster).
        num_workers: Workers in the cluster (1 without one).
    """

    def __init__(self, name: str, strategy: Any, worker_index: int = 0,
                 num_workers: int = 1) -> None:
        self.name = name
        self.strategy = strategy
        self.worker_index = worker_index
        self.num_workers = num_workers
        self._broadcast_fn = None
        self._any_fn = None

    # --- construction -----------------------------------------------------------------------

    @staticmethod
    def resolve(requested: str, environ: Mapping[str, str] | None = None) -> str:
        """The strategy `requested` (one of `STRATEGIES`) stands for, with `TF_CONFIG` checked
        when it matters. Pure Python: safe before TensorFlow is initialised.

        Raises:
            ConfigError: an unknown strategy, or `TF_CONFIG` missing or invalid (naming what
                is wrong) for `multi-worker` (or for `auto` when TF_CONFIG is set).
        """
        environ = os.environ if environ is None else environ
        if requested not in STRATEGIES:
            raise ConfigError(f"Unknown strategy. Expected one of {list(STRATEGIES)}. "
                              f"Received: strategy={requested!r}")
        text = environ.get("TF_CONFIG")
        if requested == "multi-worker":
            cluster_tasks(text)
            return requested
        if requested == "auto":
            if text is not None and text.strip():
                _, workers = cluster_tasks(text)
                if workers > 1:
                    return "multi-worker"
            return "mirrored" if _gpu_count() > 1 else "one-device"
        return requested

    @classmethod
    def create(cls, requested: str, environ: Mapping[str, str] | None = None
               ) -> "DistributionStrategy":
        """The strategy for `fit --strategy requested` (see the class docstring)."""
        environ = os.environ if environ is None else environ
        name = cls.resolve(requested, environ)
        import tensorflow as tf

        if name == "multi-worker":
            worker_index, num_workers = cluster_tasks(environ.get("TF_CONFIG"))
            if environ is not os.environ:
                os.environ["TF_CONFIG"] = environ["TF_CONFIG"]
            options = tf.distribute.experimental.CommunicationOptions(
                implementation=(tf.distribute.experimental.CommunicationImplementation.NCCL
                                if _gpu_count() else
                                tf.distribute.experimental.CommunicationImplementation.RING))
            key = ("multi-worker", environ["TF_CONFIG"])
            if key not in _STRATEGIES:
                _STRATEGIES[key] = tf.distribute.MultiWorkerMirroredStrategy(
                    communication_options=options)
            result = cls(name, _STRATEGIES[key], worker_index, num_workers)
        elif name == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [device.name for device in
                       (gpus or tf.config.list_logical_devices("CPU"))]
            if len(devices) < 2:
                logger.warning("--strategy mirrored found one device (%s): training on it "
                               "alone. Mirrored training needs several GPUs, or logical CPU "
                               "devices set up with tf.config.set_logical_device_configuration",
                               devices[0])
            key = ("mirrored", tuple(devices))
            if key not in _STRATEGIES:
                _STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=devices)
            result = cls(name, _STRATEGIES[key])
        else:
            result = cls(name, tf.distribute.get_strategy())
        logger.info("Strategy %s: %d replica(s)%s", name, result.num_replicas,
                    f", worker {result.worker_index} of {result.num_workers}"
                    + (" (chief)" if result.is_chief else "")
                    if result.num_workers > 1 else "")
        return result

    # --- properties -------------------------------------------------------------------------

    @property
    def num_replicas(self) -> int:
        """Replicas training in sync, over all workers."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        """True on the worker that writes the run directory (always, without a cluster)."""
        return self.worker_index == 0

    @property
    def is_multi_worker(self) -> bool:
        return self.num_workers > 1

    def scope(self):
        """The strategy's scope: variables created inside are distributed."""
        if self.name == "one-device":
            return contextlib.nullcontext()
        return self.strategy.scope()

    # --- agreement between workers ------------------------------------------------------------

    def broadcast_from_chief(self, values: Sequence[int]) -> list[int]:
        """The chief's `values` (integers), on every worker. Every worker must call it at the
        same point (it is a collective operation); without a cluster it returns `values`."""
        if not self.is_multi_worker:
            return [int(value) for value in values]
        import tensorflow as tf

        local = tf.constant([int(value) for value in values], tf.int64)
        if self._broadcast_fn is None:
            self._broadcast_fn = tf.function(
                lambda tensor: self.strategy.run(self._chief_sum, args=(tensor,)))
        result = self.strategy.experimental_local_results(self._broadcast_fn(local))[0]
        return [int(value) for value in result.numpy()]

    def any_worker(self, flag: bool) -> bool:
        """True when `flag` is true on any worker (a collective: every worker calls it)."""
        if not self.is_multi_worker:
            return bool(flag)
        import tensorflow as tf

        if self._any_fn is None:
            def any_of(tensor):
                def replica(value):
                    context = tf.distribute.get_replica_context()
                    # tf.identity puts the value on the replica's device (all_reduce's
                    # destination); a tensor passed to `run` as it is has none.
                    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(value))
                return self.strategy.run(replica, args=(tensor,))
            self._any_fn = tf.function(any_of)
        result = self.strategy.experimental_local_results(
            self._any_fn(tf.constant([1 if flag else 0], tf.int64)))[0]
        return bool(int(result.numpy()[0]))

    def sync_from_chief(self, variables: Sequence[Any]) -> None:
        """Gives every worker the chief's values of `variables` (mirrored variables created in
        `scope()`, the same list in the same order on every worker)."""
        if not self.is_multi_worker or not variables:
            return
        import tensorflow as tf

        @tf.function
        def chief_values(values):
            return self.strategy.run(lambda *tensors: [self._chief_sum(t) for t in tensors],
                                     args=tuple(values))

        values = [tf.identity(variable.read_value()) for variable in variables]
        results = chief_values(values)
        for variable, result in zip(variables, results, strict=True):
            variable.assign(self.strategy.experimental_local_results(result)[0])

    def _chief_sum(self, tensor):
        """In a replica: `tensor` of the chief's first replica (a sum where the others add 0)."""
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return context.all_reduce(tf.distribute.ReduceOp.SUM,
                                  tf.where(first, tensor, tf.zeros_like(tensor)))


def cluster_tasks(text: str | None) -> tuple[int, int]:
    """`(worker_index, num_workers)` of a `TF_CONFIG` value: the chief (the `chief` task, or
    worker 0 without one) has index 0.

    Raises:
        ConfigError: naming TF_CONFIG and what is wrong with it.
    """
    if text is None or not text.strip():
        raise ConfigError(
            "--strategy multi-worker is configured by the TF_CONFIG environment variable, the "
            "same on every worker except for its task, e.g. " + _TF_CONFIG_EXAMPLE
            + f". Received: TF_CONFIG {'unset' if text is None else 'empty'}")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({error}). Expected e.g. "
                          f"{_TF_CONFIG_EXAMPLE}. Received: TF_CONFIG={text!r}") from error
    if not isinstance(config, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'. "
                          f"Received: TF_CONFIG={text!r}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError(
            "TF_CONFIG has no 'cluster' (a mapping of task types to lists of host:port "
            f"addresses), e.g. {_TF_CONFIG_EXAMPLE}. Received: TF_CONFIG={text!r}")
    for kind, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(address, str) and ":" in address
                           for address in addresses)):
            raise ConfigError(
                f"TF_CONFIG cluster['{kind}'] must be a non-empty list of host:port "
                f"addresses. Received: {addresses!r}")
    unsupported = sorted(set(cluster) - set(_TRAINING_TASKS))
    if unsupported:
        raise ConfigError(
            "TF_CONFIG cluster may hold 'worker' tasks (and one 'chief'): tfinetune trains "
            "with MultiWorkerMirroredStrategy, without parameter servers or evaluators. "
            f"Received task types: {unsupported}")
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError("TF_CONFIG cluster may have one 'chief'. "
                          f"Received: {cluster['chief']!r}")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise ConfigError(
            "TF_CONFIG has no 'task' ({\"type\": \"worker\", \"index\": N}: which of the "
            f"cluster's tasks this process is). Received: TF_CONFIG={text!r}")
    kind, index = task.get("type"), task.get("index", 0)
    if (kind not in cluster or isinstance(index, bool) or not isinstance(index, int)
            or not 0 <= index < len(cluster[kind])):
        sizes = ", ".join(f"{len(addresses)} '{name}'" for name, addresses in cluster.items())
        raise ConfigError(
            f"TF_CONFIG task {json.dumps(task)} is not in its cluster ({sizes} task(s); "
            "indices start at 0). Received: TF_CONFIG=" + repr(text))
    chiefs = len(cluster.get("chief", []))
    worker_index = 0 if kind == "chief" else chiefs + index
    return worker_index, chiefs + len(cluster.get("worker", []))


def _gpu_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))
