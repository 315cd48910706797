"""`DnsResponder`: a tiny DNS server on 127.0.0.1 (UDP, port 0) that answers A queries for one
name with several IPv4 addresses, as a Kubernetes headless Service does for its pods. gRPC's
resolver asks it through the target's authority: `dns://127.0.0.1:PORT/NAME:GRPC_PORT`, so
a test of "one name, several replicas" needs no network and no /etc/hosts change."""

from __future__ import annotations

import socket
import struct
import threading

_A, _IN = 1, 1


class DnsResponder:
    """Answers `name` with `addresses` (A records); other names get NXDOMAIN, other types of
    `name` (AAAA, ...) an empty answer.

    Use as a context manager; `authority` is `127.0.0.1:PORT` and `queries` the (name, type)
    of every query seen.
    """

    def __init__(self, name: str, addresses: list[str]) -> None:
        self.name = name.lower().rstrip(".")
        self.addresses = addresses
        self.queries: list[tuple[str, int]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.authority = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "DnsResponder":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._socket.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self._socket.recvfrom(512)
            except OSError:  # closed
                return
            try:
                self._socket.sendto(self._answer(query), peer)
            except (OSError, IndexError, struct.error):
                continue

    def _answer(self, query: bytes) -> bytes:
        ident = struct.unpack(">H", query[:2])[0]
        offset, labels = 12, []
        while query[offset]:
            length = query[offset]
            labels.append(query[offset + 1:offset + 1 + length].decode("ascii"))
            offset += 1 + length
        qtype = struct.unpack(">H", query[offset + 1:offset + 3])[0]
        question = query[12:offset + 5]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        records = b""
        if name == self.name and qtype == _A:
            for address in self.addresses:
                # A pointer to the question's name, type A, class IN, TTL 5 s, 4 bytes.
                records += b"\xc0\x0c" + struct.pack(">HHIH", _A, _IN, 5, 4)
                records += socket.inet_aton(address)
        count = len(self.addresses) if records else 0
        rcode = 0 if name == self.name else 3  # NXDOMAIN
        header = struct.pack(">HHHHHH", ident, 0x8180 | rcode, 1, count, 0, 0)
        return header + question + records
