"""`ReplicaSet`: the gRPC channels of a client to one or several model server replicas.

One channel per target given (`serving.server_targets.parse_targets`), each with gRPC's
`round_robin` load-balancing policy, so that a name resolving to several addresses (a
Kubernetes headless Service, `dns:///tfserving-headless:8500`) or an `ipv4:A,B` list is spread
over all of them by gRPC, which skips the addresses it cannot connect to. Calls rotate over
the channels; a replica whose call just failed with a transient code is avoided for a while
(1 s, doubling with each further failure up to 30 s; one success clears it), and a retry
prefers a replica not yet tried by that call, so it lands on another, healthy one.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from typing import Sequence

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

#: gRPC service config: spread calls over every address a target resolves to.
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
_FIRST_AVOIDANCE_SECONDS = 1.0
_MAX_AVOIDANCE_SECONDS = 30.0


@dataclasses.dataclass
class Replica:
    """One target: its channel and stub, and its recent transient failures."""

    index: int
    target: str
    channel: grpc.Channel
    stub: prediction_service_pb2_grpc.PredictionServiceStub
    failures: int = 0
    avoid_until: float = 0.0


class ReplicaSet:
    """Channels to `targets`, picked in turn, avoiding replicas that just failed.

    Args:
        targets: gRPC targets, one per replica (or per name standing for several).
        credentials: TLS channel credentials (the same for every replica), or None for
            plaintext.
        options: gRPC channel options of every channel (the `round_robin` service config is
            added).
    """

    def __init__(self, targets: Sequence[str], credentials: grpc.ChannelCredentials | None,
                 options: Sequence[tuple[str, object]] = ()) -> None:
        if not targets:
            raise ValueError("Expected at least one target. Received: []")
        options = [*options, ("grpc.service_config", ROUND_ROBIN)]
        self.replicas: list[Replica] = []
        for index, target in enumerate(targets):
            channel = (grpc.secure_channel(target, credentials, options=options)
                       if credentials is not None
                       else grpc.insecure_channel(target, options=options))
            self.replicas.append(Replica(
                index, target, channel,
                prediction_service_pb2_grpc.PredictionServiceStub(channel)))
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def pick(self, tried: set[int] = frozenset()) -> Replica:
        """The next replica in turn, preferring, in this order: one not in `tried` and not
        avoided, one not in `tried`, one not avoided, any."""
        now = time.monotonic()
        with self._lock:
            start = next(self._turn)
            ordered = [self.replicas[(start + i) % len(self.replicas)]
                       for i in range(len(self.replicas))]
            for wanted in (lambda r: r.index not in tried and r.avoid_until <= now,
                           lambda r: r.index not in tried,
                           lambda r: r.avoid_until <= now):
                for replica in ordered:
                    if wanted(replica):
                        return replica
            return ordered[0]

    def failed(self, replica: Replica) -> None:
        """Records a transient failure: the replica is avoided for a while."""
        with self._lock:
            replica.failures += 1
            pause = min(_FIRST_AVOIDANCE_SECONDS * 2 ** (replica.failures - 1),
                        _MAX_AVOIDANCE_SECONDS)
            replica.avoid_until = time.monotonic() + pause

    def succeeded(self, replica: Replica) -> None:
        """Records an answer: the replica is healthy again."""
        if replica.failures:
            with self._lock:
                replica.failures, replica.avoid_until = 0, 0.0

    def close(self) -> None:
        for replica in self.replicas:
            replica.channel.close()
