"""`ScoreConfig`: the options of `tfinetune score`, validated before anything is read or sent."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from serving.server_targets import parse_targets  # pure Python: imports no TensorFlow

from tfinetune.errors import ConfigError
from tfinetune.errors import DataError
from tfinetune.table_reader import table_format

DEFAULT_SERVER = "localhost:8500"


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Options of one bulk-scoring run.

    Args:
        input: File to score: `.csv`, `.tsv`, `.jsonl`/`.json` or `.parquet`.
        output: Where to write the scored rows; the format follows its extension (same set).
        model_name: Name of the model on the server.
        server: gRPC target of the model server, `HOST:PORT`, or of several replicas (a
            sequence, or comma-separated): requests are spread over them and a failed one
            is retried on another (`serving.Client`). Other forms: `dns:///NAME:PORT` (every
            address of NAME), `ipv4:A:P,B:P`, `unix:PATH` (`serving.server_targets`). Kept
            as given, comma-joined; `servers` has the targets one by one.
        text_column: Input column holding the text; None = the model's default (`text`;
            question answering: `question`).
        text_pair_column: Optional input column holding the second text (pair models;
            question answering: the context, default `context`).
        label_column: Optional input column with true labels; enables metrics.
        batch_size: Rows per Predict request.
        concurrency: Requests in flight at once.
        timeout: Seconds per request attempt.
        retries: Retries of a request that fails with a transient error (UNAVAILABLE,
            DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED), with exponential backoff (done
            by the client).
        signature_name: Signature to call.
        model_version: Pin a model version; None = the server's latest.
        label_delimiter: Multi-label models: separator of the label names in one cell, both
            when reading true labels from `label_column` (as `fit --label-delimiter`; a JSON
            Lines/Parquet list works too) and when writing the predicted `labels` to CSV, TSV
            and Parquet (JSON Lines gets a list).
        sort_by_length: Send each `concurrency x batch_size` rows as requests of rows of
            similar text length (less padding in the model's batch: faster on texts of mixed
            lengths); rows are still written in input order.
        resume: Continue an interrupted run into the same output: the rows already in the
            partial output (`OUTPUT.partial`) are kept, checked against the input and not sent
            again. A complete output is checked and kept as it is.
        overwrite: Replace an existing output (and the partial output of an interrupted run).
            Without `resume` or `overwrite` an existing one is refused.
        tokenizer: An export (base path, version directory or its `assets.extra`) whose
            tokenizer tokenises on the client, for models exported with `--portable`; None
            for models that take text.
        pad_to_max_length: With `tokenizer`, pad every text to the export's max_length (one
            request shape, for servers that batch).

    Raises:
        ConfigError: An option is out of range or options conflict.
    """

    input: Path
    output: Path
    model_name: str
    server: str | Sequence[str] = DEFAULT_SERVER
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    batch_size: int = 64
    concurrency: int = 4
    timeout: float = 30.0
    retries: int = 3
    signature_name: str = "serving_default"
    model_version: int | None = None
    label_delimiter: str = ","
    sort_by_length: bool = False
    resume: bool = False
    overwrite: bool = False
    tokenizer: Path | None = None
    pad_to_max_length: bool = False
    #: The targets of `server`, one per replica (set from `server`).
    servers: tuple[str, ...] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", Path(self.input))
        object.__setattr__(self, "output", Path(self.output))
        try:
            servers = parse_targets(self.server, "--server")
        except ValueError as error:
            raise ConfigError(str(error)) from None
        object.__setattr__(self, "servers", servers)
        object.__setattr__(self, "server", ",".join(servers))
        if self.text_column is not None and (
                not isinstance(self.text_column, str) or not self.text_column.strip()):
            raise ConfigError(
                f"Expected a non-empty text_column. Received: text_column={self.text_column!r}")
        for name in ("model_name", "signature_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"Expected a non-empty {name}. Received: {name}={value!r}")
        if not isinstance(self.label_delimiter, str) or not self.label_delimiter:
            raise ConfigError(f"Expected a non-empty label_delimiter. Received: "
                              f"label_delimiter={self.label_delimiter!r}")
        if self.resume and self.overwrite:
            raise ConfigError("Expected either resume (continue the output) or overwrite "
                              "(replace it), not both. Received: resume=True, overwrite=True")
        _at_least("batch_size", self.batch_size, 1)
        _at_least("concurrency", self.concurrency, 1)
        _at_least("retries", self.retries, 0)
        if self.model_version is not None:
            _at_least("model_version", self.model_version, 1)
        if not self.timeout > 0:
            raise ConfigError(
                f"Expected a positive timeout in seconds. Received: timeout={self.timeout!r}")
        if self.text_pair_column is not None and self.text_pair_column == (
                self.text_column or "text"):
            raise ConfigError(
                "Expected different text and text pair columns. Received: "
                f"text_column={self.text_column!r}, text_pair_column={self.text_pair_column!r}"
            )
        try:
            table_format(self.output)
        except DataError as error:
            raise ConfigError(f"Output: {error}") from None
        if self.input.resolve() == self.output.resolve():
            raise ConfigError(
                f"The output would overwrite the input file {self.input}. "
                "Expected a different --output path."
            )


    @property
    def server_description(self) -> str:
        """`server at HOST:PORT`, or `servers at A, B` for several replicas."""
        if len(self.servers) == 1:
            return f"server at {self.servers[0]}"
        return f"servers at {', '.join(self.servers)}"


def _at_least(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"Expected an integer {name} >= {minimum}. Received: {name}={value!r}")
