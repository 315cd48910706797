"""`parse_targets`: the gRPC targets of one or several model server replicas.

Pure Python (no TensorFlow), so that command-line options can be checked before anything
heavy is imported.

Accepted, alone or several at once (a sequence, or one string with commas):

- `HOST:PORT`: a host name (resolved by gRPC's DNS resolver: every address it resolves to is
  used, round-robin), an IPv4 address, or an IPv6 address in brackets (`[::1]:8500`);
- `dns:///NAME:PORT` or `dns://DNS-SERVER/NAME:PORT`: a name resolved by gRPC (through that DNS
  server), as gRPC's naming docs spell it;
- `ipv4:ADDR:PORT,ADDR:PORT,...` and `ipv6:[ADDR]:PORT,...`: gRPC's own address lists, kept
  whole (their commas are gRPC's, not a list of replicas);
- `unix:PATH` and `unix-abstract:NAME` (TF Serving's `--grpc_socket_path`).
"""

from __future__ import annotations

import re
from typing import Sequence

#: gRPC target schemes passed through as they are (https://grpc.github.io/grpc/core/md_doc_naming.html).
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")
#: Schemes whose value is itself a comma-separated address list in gRPC's syntax.
_LIST_SCHEMES = ("ipv4:", "ipv6:")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.%a-zA-Z]+\]|[^\s:/,\[\]@]+):(\d{1,5})")
_DNS = re.compile(r"dns:(//[^/]*/)?(?P<name>.+)")
_EXPECTED = ("HOST:PORT ([IPV6]:PORT for IPv6), dns:///NAME:PORT, ipv4:ADDR:PORT[,ADDR:PORT...], "
             "ipv6:[ADDR]:PORT[,...] or unix:PATH; several replicas as several values or "
             "separated by commas")


def parse_targets(value: str | Sequence[str], name: str = "target") -> tuple[str, ...]:
    """The gRPC targets in `value`, one per replica (a `dns:`/host name target may stand for
    several replicas: gRPC spreads over the addresses it resolves to).

    Args:
        value: One target, one string of comma-separated targets, or a sequence of either.
        name: How to name `value` in errors (e.g. `--server`).

    Raises:
        ValueError: `value` is empty, or one of its targets is not in an accepted form; the
            message names `name`, the target and the whole value.
    """
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(item, str) for item in items):
        raise ValueError(f"Expected {name} {_EXPECTED}. Received: {name}={value!r}")
    targets: list[str] = []
    for item in items:
        stripped = item.strip()
        if stripped.lower().startswith(_LIST_SCHEMES):
            parts = [stripped]
        else:
            parts = [part.strip() for part in item.split(",")]
        for part in parts:
            problem = _problem(part)
            if problem:
                raise ValueError(f"Invalid {name} address {part!r}: {problem}. Expected "
                                 f"{_EXPECTED}. Received: {name}={value!r}")
            targets.append(part)
    return tuple(targets)


def _problem(target: str) -> str | None:
    """What is wrong with one target, or None."""
    if not target:
        return "it is empty"
    lowered = target.lower()
    if lowered.startswith(_SCHEMES):
        scheme, _, rest = target.partition(":")
        if not rest.strip("/"):
            return f"nothing follows '{scheme}:'"
        if lowered.startswith("dns:"):
            found = _DNS.fullmatch(target)
            return _host_port_problem(found.group("name")) if found else "not dns:///NAME:PORT"
        if lowered.startswith(_LIST_SCHEMES):
            for address in rest.split(","):
                problem = _host_port_problem(address.strip())
                if problem:
                    return problem
        return None
    return _host_port_problem(target)


def _host_port_problem(address: str) -> str | None:
    found = _HOST_PORT.fullmatch(address)
    if found is None:
        if ":" not in address:
            return f"no port in {address!r}"
        return f"{address!r} is not HOST:PORT"
    port = int(found.group(2))
    if not 1 <= port <= 65535:
        return f"port {port} is not in 1..65535"
    return None
