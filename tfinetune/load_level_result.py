"""`LoadLevelResult`: what one concurrency level of `tfinetune bench serve` measured."""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class LoadLevelResult:
    """Throughput and latency of one closed-loop concurrency level.

    Attributes:
        concurrency: Requests kept in flight.
        requests: Successful requests measured.
        rows: Rows (texts) in those requests.
        errors: Failed requests measured.
        seconds: Measured wall time.
        rows_per_second: `rows / seconds`.
        requests_per_second: `requests / seconds`.
        latency_ms: "mean", "min", "max", "p50", "p90", "p95", "p99" in milliseconds (None when
            no request succeeded).
        error_codes: gRPC status name -> count of failed requests.
        first_error: The first failure's text ("" when none failed).
        client_cpu: CPU seconds the load generator's process used per measured second (its
            share of the machine, e.g. 0.3 = 30 % of one core).
    """

    concurrency: int
    requests: int
    rows: int
    errors: int
    seconds: float
    rows_per_second: float
    requests_per_second: float
    latency_ms: dict[str, float | None]
    error_codes: dict[str, int]
    first_error: str = ""
    client_cpu: float | None = None

    @classmethod
    def from_latencies(cls, concurrency: int, latencies_s: list[float], rows_per_request: int,
                       seconds: float, error_codes: dict[str, int],
                       first_error: str = "",
                       client_cpu: float | None = None) -> LoadLevelResult:
        """Summarises per-request latencies (seconds) measured over `seconds`."""
        requests = len(latencies_s)
        if latencies_s:
            values = np.asarray(latencies_s, dtype=np.float64) * 1e3
            latency: dict[str, float | None] = {
                "mean": float(values.mean()), "min": float(values.min()),
                "max": float(values.max())}
            for q, value in zip(PERCENTILES, np.percentile(values, PERCENTILES)):
                latency[f"p{q}"] = float(value)
        else:
            latency = dict.fromkeys(["mean", "min", "max"] + [f"p{q}" for q in PERCENTILES])
        seconds = max(seconds, 1e-9)
        return cls(concurrency=concurrency, requests=requests,
                   rows=requests * rows_per_request, errors=sum(error_codes.values()),
                   seconds=seconds, rows_per_second=requests * rows_per_request / seconds,
                   requests_per_second=requests / seconds, latency_ms=latency,
                   error_codes=dict(error_codes), first_error=first_error,
                   client_cpu=client_cpu)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """One CSV row: the scalar fields and `latency_<name>_ms` columns."""
        row: dict[str, Any] = {
            "concurrency": self.concurrency, "requests": self.requests, "rows": self.rows,
            "errors": self.errors, "seconds": round(self.seconds, 6),
            "rows_per_second": round(self.rows_per_second, 3),
            "requests_per_second": round(self.requests_per_second, 3),
            "client_cpu": None if self.client_cpu is None else round(self.client_cpu, 3)}
        for name, value in self.latency_ms.items():
            row[f"latency_{name}_ms"] = None if value is None else round(value, 4)
        return row
