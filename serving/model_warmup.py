"""`ModelWarmup`: replays a version's `assets.extra/tf_serving_warmup_requests` before the version
becomes AVAILABLE, as TF Serving's `RunSavedModelWarmup` (saved_model_warmup_util.cc) does."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import grpc

from serving.metrics import Metrics
from serving.servable import Servable
from serving.serving_error import ServingError

logger = logging.getLogger(__name__)

ASSETS_EXTRA = "assets.extra"  # kSavedModelAssetsExtraDirectory
WARMUP_REQUESTS_FILE = "tf_serving_warmup_requests"  # WarmupConsts::kRequestsFileName
MAX_NUM_RECORDS = 1000  # WarmupConsts::kMaxNumRecords

# PredictionLog.log_type fields without a warm-up runner here (TF Serving refuses them too).
_UNSUPPORTED_LOG_TYPES = ("session_run_log", "predict_streamed_log")


@dataclasses.dataclass(frozen=True)
class ModelWarmup:
    """Runs the warm-up requests stored with a version (`--enable_model_warmup`).

    The file is a TFRecord of `tensorflow.serving.PredictionLog`; each record's predict,
    classify, regress or multi-inference request runs `num_request_iterations` times on the
    freshly loaded servable. A missing file is fine. Any failure fails the load of the version,
    as in TF Serving.

    Example:
        ModelWarmup(num_request_iterations=3).run(servable)

    Attributes:
        enabled: Whether to replay anything (`--enable_model_warmup`, default true).
        num_request_iterations: Times each record is replayed
            (`--num_request_iterations_for_warmup`, default 1).
    """

    enabled: bool = True
    num_request_iterations: int = 1

    def __post_init__(self) -> None:
        if self.num_request_iterations < 1:
            raise ValueError("num_request_iterations must be at least 1. Received: "
                             f"num_request_iterations={self.num_request_iterations}")

    @staticmethod
    def requests_path(version_dir: str | Path) -> Path:
        """Where a version keeps its warm-up requests."""
        return Path(version_dir) / ASSETS_EXTRA / WARMUP_REQUESTS_FILE

    def run(self, servable: Servable) -> int:
        """Replays the servable's warm-up requests.

        Returns:
            The number of warm-up records read (0 when disabled or without a file).

        Raises:
            ServingError: TF Serving's texts: a record that is not a `PredictionLog`
                (INVALID_ARGUMENT `Failed to parse warmup record: ...`), an unsupported log type
                (UNIMPLEMENTED `Unsupported log_type for warmup: <n>`), more than 1000 records
                (INVALID_ARGUMENT), a file that is not a TFRecord (DATA_LOSS), or the error of a
                request that failed.
        """
        if not self.enabled:
            return 0
        path = self.requests_path(servable.path)
        if not path.is_file():
            logger.info("No warmup data file found at %s", path)
            return 0
        logger.info("Starting to read warmup data for model at %s with model-warmup-options "
                    "num_request_iterations: %d", path, self.num_request_iterations)
        start = time.monotonic()
        count = 0
        code = grpc.StatusCode.UNKNOWN
        try:
            for record in _records(path):
                log = _parse(record, path)
                for _ in range(self.num_request_iterations):
                    _run(servable, log)
                count += 1
                if count > MAX_NUM_RECORDS:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"Number of warmup records exceeds the maximum "
                                       f"({MAX_NUM_RECORDS}) at {path}")
            code = grpc.StatusCode.OK
        except ServingError as error:
            code = error.code
            raise
        finally:  # TF Serving's model_warmup_latency{model_path,status}
            Metrics.default().record_warmup(str(servable.path), code, time.monotonic() - start)
        logger.info("Finished reading warmup data for model at %s. Number of warmup records "
                    "read: %d. Elapsed time (microseconds): %d.", path, count,
                    (time.monotonic() - start) * 1e6)
        return count


def _records(path: Path):
    """The records of a TFRecord file; a malformed file raises DATA_LOSS (TF Serving's text)."""
    import tensorflow as tf

    try:
        from tensorflow.python.util import deprecation

        silenced = deprecation.silence()
    except (ImportError, AttributeError):
        silenced = contextlib.nullcontext()
    with silenced:  # tf_record_iterator is deprecated for eager code; its errors read better
        records = tf.compat.v1.io.tf_record_iterator(str(path))
    try:
        yield from records
    except tf.errors.DataLossError as error:
        raise ServingError(grpc.StatusCode.DATA_LOSS,
                           f"{error.message}. Please verify your warmup data is in TFRecord "
                           "format.") from None
    except tf.errors.OpError as error:
        raise ServingError.from_op_error(error) from None


def _parse(record: bytes, path: Path):
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    try:
        log.ParseFromString(record)
    except DecodeError:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Failed to parse warmup record: {record!r} from {path}") from None
    return log


def _run(servable: Servable, log) -> None:
    """TF Serving's `RunWarmupRequest`: one logged request on the servable, response dropped."""
    log_type = log.WhichOneof("log_type")
    if log_type == "predict_log":
        servable.predict(log.predict_log.request)
    elif log_type == "classify_log":
        servable.classify(log.classify_log.request)
    elif log_type == "regress_log":
        servable.regress(log.regress_log.request)
    elif log_type == "multi_inference_log":
        servable.multi_inference(log.multi_inference_log.request)
    elif log_type in _UNSUPPORTED_LOG_TYPES:
        number = log.DESCRIPTOR.fields_by_name[log_type].number  # PredictionLog::LogTypeCase
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           f"Unsupported log_type for warmup: {number}")
    # A record without a log type (log_metadata only) is skipped, as in TF Serving.
