"""`BenchServeConfig`: the settings of `tfinetune bench serve` (one load-generator run)."""

from __future__ import annotations

from dataclasses import dataclass

from tfinetune.errors import ConfigError

DEFAULT_CONCURRENCY = (1, 4, 16, 32)


def parse_concurrency(text: str) -> tuple[int, ...]:
    """`"1,4,16"` -> `(1, 4, 16)`.

    Raises:
        ConfigError: An entry is not a positive integer, or the list is empty.
    """
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigError(f"--concurrency expects a comma-separated list of positive integers "
                          f"such as 1,4,16,32. Received: {text!r}")
    levels = []
    for part in parts:
        try:
            level = int(part)
        except ValueError:
            level = 0
        if level < 1:
            raise ConfigError(f"--concurrency expects positive integers such as 1,4,16,32. "
                              f"Received: {part!r} in {text!r}")
        levels.append(level)
    return tuple(levels)


@dataclass(frozen=True)
class BenchServeConfig:
    """What to send, where, and for how long.

    Attributes:
        server: gRPC address `HOST:PORT` of a TF-Serving-compatible server.
        model_name: Model name on the server.
        data: CSV/TSV/JSONL/Parquet file whose rows are sent.
        text_column: Column of `data` holding the texts.
        concurrency: Closed-loop levels: that many requests in flight, one level after another.
        rows_per_request: Texts per Predict request.
        warmup_seconds: Load sent at each level before measuring (not counted).
        duration_seconds: Measured time per level (ignored when `requests` is set).
        requests: Measured requests per level instead of a duration.
        max_rows: Rows read from `data` (they are cycled through).
        input_name: Signature input that receives the texts.
        signature_name: Signature to call.
        model_version: Version to call (None: the latest).
        timeout: Seconds per request.
    """

    server: str
    model_name: str
    data: str
    text_column: str = "text"
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    rows_per_request: int = 1
    warmup_seconds: float = 2.0
    duration_seconds: float = 10.0
    requests: int | None = None
    max_rows: int = 10000
    input_name: str = "text"
    signature_name: str = "serving_default"
    model_version: int | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.concurrency or any(level < 1 for level in self.concurrency):
            raise ConfigError(f"concurrency must be positive integers. Received: "
                              f"{list(self.concurrency)}")
        if ":" not in self.server or not self.server.rsplit(":", 1)[1].isdigit():
            raise ConfigError(f"--server expects HOST:PORT. Received: {self.server!r}")
        if not self.model_name:
            raise ConfigError("--model-name must not be empty")
        for name, value, minimum in (("rows_per_request", self.rows_per_request, 1),
                                     ("max_rows", self.max_rows, 1)):
            if value < minimum:
                raise ConfigError(f"{name} must be at least {minimum}. Received: {value}")
        if self.requests is not None and self.requests < 1:
            raise ConfigError(f"requests must be at least 1. Received: {self.requests}")
        if self.warmup_seconds < 0:
            raise ConfigError(f"warmup_seconds must be >= 0. Received: {self.warmup_seconds}")
        if self.requests is None and self.duration_seconds <= 0:
            raise ConfigError(f"duration_seconds must be > 0. Received: {self.duration_seconds}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0. Received: {self.timeout}")
