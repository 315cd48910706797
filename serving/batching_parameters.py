"""`BatchingParameters`: `--batching_parameters_file`, read and checked the way
`tensorflow_model_server` reads it.

The file is TF Serving's text `BatchingParameters` proto
(`servables/tensorflow/session_bundle_config.proto`), e.g. TF Serving's own
`testdata/batching_config.txt`:

    max_batch_size { value: 128 }
    batch_timeout_micros { value: 0 }
    max_enqueued_batches { value: 1000000 }
    num_batch_threads { value: 8 }

Unset fields take the defaults of TF's `SharedBatchScheduler` options
(`input_batch_size_limit` 1000, `batch_timeout_micros` 0, `max_enqueued_batches` 10,
`num_batch_threads` = the number of CPUs), as `GetQueueOptions` and `CreateBatchScheduler`
(`servables/tensorflow/bundle_factory_util.h`) leave them. The checks and their texts are TF
Serving's and TF's (`bundle_factory_util.cc`, `shared_batch_scheduler.h`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import grpc
from google.protobuf import text_format

from serving.config_protos import batching_parameters_message
from serving.serving_error import ServingError

# TF's SharedBatchScheduler<T>::QueueOptions / Options defaults.
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10
DEFAULT_THREAD_POOL_NAME = "batch_threads"
# What server.cc names the pool when --enable_batching comes without a parameters file.
MODEL_SERVER_THREAD_POOL_NAME = "model_server_batch_threads"


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """Resolved batching settings (every field set, TF's defaults filled in).

    Attributes:
        max_batch_size: The largest request (and, without splitting, batch) in rows
            (`input_batch_size_limit`).
        batch_timeout_micros: How long an open batch waits for more requests once a thread is free.
        max_enqueued_batches: Batches (the open one included) a queue holds before refusing.
        num_batch_threads: Threads processing batches, shared by every model and signature.
        thread_pool_name: The name of those threads.
        allowed_batch_sizes: Batch sizes to pad up to (empty: no padding).
        pad_variable_length_inputs: Pad inputs whose dimensions after the first differ.
        enable_large_batch_splitting: Split a request across batches of
            `max_execution_batch_size` rows.
        max_execution_batch_size: The largest batch run when splitting (default `max_batch_size`).
    """

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = DEFAULT_MAX_BATCH_SIZE

    def __post_init__(self) -> None:
        self._validate()

    @property
    def execution_batch_size_limit(self) -> int:
        """The largest batch that is run (TF's `max_execution_batch_size()` of a queue)."""
        if self.enable_large_batch_splitting:
            return self.max_execution_batch_size
        return self.max_batch_size

    @classmethod
    def for_model_server(cls) -> "BatchingParameters":
        """`--enable_batching` without a parameters file: TF's defaults, server.cc's pool name."""
        return cls(thread_pool_name=MODEL_SERVER_THREAD_POOL_NAME)

    @classmethod
    def from_file(cls, path: str | Path) -> "BatchingParameters":
        """Reads a text `BatchingParameters` file.

        Raises:
            ServingError: INVALID_ARGUMENT when the file cannot be read, does not parse, or holds
                settings TF Serving refuses (with TF Serving's text).
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise _invalid(f"Could not read the batching parameters file {path}: "
                           f"{error}") from None
        try:
            return cls.from_text(text)
        except ServingError as error:
            raise _invalid(f"Invalid batching parameters file {path}: {error.message}") from None

    @classmethod
    def from_text(cls, text: str) -> "BatchingParameters":
        """Parses text-format `BatchingParameters` (see `from_file`)."""
        proto = batching_parameters_message()()
        try:
            text_format.Parse(text, proto)
        except text_format.ParseError as error:
            raise _invalid(f"not a text BatchingParameters proto: {error}") from None
        return cls.from_proto(proto)

    @classmethod
    def from_proto(cls, proto) -> "BatchingParameters":
        """Resolves a `BatchingParameters` message: TF's defaults for unset fields."""
        def wrapped(name: str, default):
            return getattr(proto, name).value if proto.HasField(name) else default

        max_batch_size = wrapped("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
        splitting = wrapped("enable_large_batch_splitting", False)
        # bundle_factory_util.h GetQueueOptions: unset -> max_batch_size().value().
        max_execution = wrapped("max_execution_batch_size", max_batch_size)
        return cls(
            max_batch_size=max_batch_size,
            batch_timeout_micros=wrapped("batch_timeout_micros", DEFAULT_BATCH_TIMEOUT_MICROS),
            max_enqueued_batches=wrapped("max_enqueued_batches", DEFAULT_MAX_ENQUEUED_BATCHES),
            num_batch_threads=wrapped("num_batch_threads", os.cpu_count() or 1),
            thread_pool_name=wrapped("thread_pool_name", DEFAULT_THREAD_POOL_NAME),
            allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
            pad_variable_length_inputs=proto.pad_variable_length_inputs,
            enable_large_batch_splitting=splitting,
            max_execution_batch_size=max_execution if splitting else DEFAULT_MAX_BATCH_SIZE,
        )

    def _validate(self) -> None:
        if self.allowed_batch_sizes and self.allowed_batch_sizes[-1] != self.max_batch_size:
            raise _invalid(  # bundle_factory_util.cc WrapSessionForBatching
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{self.allowed_batch_sizes[-1]}; expected {self.max_batch_size}")
        if self.num_batch_threads < 1:  # SharedBatchScheduler::Create
            raise _invalid(f"num_batch_threads must be positive; was {self.num_batch_threads}")
        if self.max_batch_size <= 0:  # SharedBatchScheduler::AddQueue
            raise _invalid(
                f"input_batch_size_limit must be positive; was {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise _invalid("batch_timeout_micros must be non-negative; was "
                           f"{self.batch_timeout_micros}")
        # AddQueue rewrites 0 to 1 without splitting ("many existing models rely on it").
        if self.max_enqueued_batches < 0 or (
                self.max_enqueued_batches == 0 and self.enable_large_batch_splitting):
            raise _invalid(f"max_enqueued_batches must be positive; was "
                           f"{self.max_enqueued_batches}")
        if self.enable_large_batch_splitting:
            if self.max_execution_batch_size <= 0:
                raise _invalid("max_execution_batch_size must be positive; was "
                               f"{self.max_execution_batch_size}")
            if self.max_batch_size < self.max_execution_batch_size:
                # TF's text, with StrCat's unseparated values appended as TF appends them.
                raise _invalid(
                    "When enable_large_batch_splitting is true, input_batch_size_limit must be "
                    "greater than or equal to max_execution_batch_size."
                    f"1{self.max_batch_size}{self.max_execution_batch_size}")

    @property
    def effective_max_enqueued_batches(self) -> int:
        """`max_enqueued_batches`, with AddQueue's rewrite of 0 to 1 (no splitting)."""
        return max(self.max_enqueued_batches, 1)
