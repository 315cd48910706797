"""`write_warmup_requests`: the `assets.extra/tf_serving_warmup_requests` file of an export.

TF Serving (and `tfinetune serve`) replays this file before a version becomes AVAILABLE
(`--enable_model_warmup`, on by default), so the first real request does not pay for graph
optimisation, tokenizer table initialisation and the first allocation of every batch shape. The
format is TF Serving's: a TFRecord of `tensorflow.serving.PredictionLog`
(g3doc/saved_model_warmup.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import classification_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402
from tensorflow_serving.apis import regression_pb2  # noqa: E402

from export.classifier_serving_module import CLASSIFY  # noqa: E402
from export.classifier_serving_module import REGRESS  # noqa: E402
from export.classifier_serving_module import REGRESSION  # noqa: E402
from export.classifier_serving_module import SINGLE_LABEL  # noqa: E402
from export.classifier_serving_module import SERVING_DEFAULT  # noqa: E402
from export.classifier_serving_module import TEXT  # noqa: E402
from export.classifier_serving_module import TEXT_PAIR  # noqa: E402

logger = logging.getLogger(__name__)

WARMUP_REQUESTS_FILE = "tf_serving_warmup_requests"  # TF Serving's WarmupConsts::kRequestsFileName

#: Sample texts of the warm-up requests: short, accented, empty, and (see `warmup_texts`) one
#: longer than `max_length`, so the truncation path is warmed up too.
WARMUP_TEXTS = (
    "This movie was great!",
    "The plot was dull and the acting was awful.",
    "A naïve but charming café story.",
    "",
)


def warmup_texts(max_length: int) -> list[str]:
    """`WARMUP_TEXTS` plus one text longer than `max_length` tokens."""
    return [*WARMUP_TEXTS, " ".join(["a long and very detailed review"] * (max_length // 5 + 1))]


def warmup_logs(
    texts: Sequence[str], *, text_pair: bool, problem_type: str = SINGLE_LABEL
) -> list[prediction_log_pb2.PredictionLog]:
    """The warm-up requests: Predict on `serving_default` with batches of one, two and all
    `texts`, then one Classify on `classify` (regression: one Regress on `regress`) over all
    `texts` as tf.Examples.

    For pair models the second segments are the texts rotated by one.
    """
    texts = list(texts)
    pairs = [*texts[1:], *texts[:1]] if text_pair else None
    logs = []
    for size in (1, 2, len(texts)):
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = SERVING_DEFAULT
        request.inputs[TEXT].CopyFrom(tf.make_tensor_proto(texts[:size], dtype=tf.string))
        if pairs is not None:
            request.inputs[TEXT_PAIR].CopyFrom(tf.make_tensor_proto(pairs[:size], dtype=tf.string))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))

    examples = []
    for i, text in enumerate(texts):
        example = tf.train.Example()
        example.features.feature[TEXT].bytes_list.value.append(text.encode("utf-8"))
        if pairs is not None:
            example.features.feature[TEXT_PAIR].bytes_list.value.append(pairs[i].encode("utf-8"))
        examples.append(example)
    logs.append(example_log(examples, problem_type))
    return logs


def example_log(examples: Sequence[tf.train.Example],
                problem_type: str) -> prediction_log_pb2.PredictionLog:
    """One Classify on `classify` (regression: one Regress on `regress`) over `examples`."""
    if problem_type == REGRESSION:
        request = regression_pb2.RegressionRequest()
        request.model_spec.signature_name = REGRESS
        request.input.example_list.examples.extend(examples)
        return prediction_log_pb2.PredictionLog(
            regress_log=prediction_log_pb2.RegressLog(request=request))
    request = classification_pb2.ClassificationRequest()
    request.model_spec.signature_name = CLASSIFY
    request.input.example_list.examples.extend(examples)
    return prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=request))


def predict_log(inputs: Mapping[str, Any], dtype: tf.DType = tf.int32,
                signature_name: str = SERVING_DEFAULT) -> prediction_log_pb2.PredictionLog:
    """A warm-up Predict request on `signature_name` with `inputs` (name → values of `dtype`),
    e.g. the token ids a portable export's clients send."""
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    for name, values in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))


def write_logs(path: str | Path, logs: Sequence[prediction_log_pb2.PredictionLog]) -> Path:
    """Writes `logs` as TF Serving's warm-up file (a TFRecord of `PredictionLog`s)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    logger.debug("Wrote %d warm-up requests to %s", len(logs), path)
    return Path(path)


def write_warmup_requests(
    assets_extra: str | Path, *, max_length: int, text_pair: bool,
    problem_type: str = SINGLE_LABEL,
) -> Path:
    """Writes `assets_extra/tf_serving_warmup_requests` for an exported classifier.

    Args:
        assets_extra: The version's `assets.extra` directory (created if missing).
        max_length: The export's maximum tokens per input (one sample text is longer).
        text_pair: Whether the model classifies text pairs (`text` + `text_pair`).
        problem_type: `single-label`, `multi-label` or `regression` (Regress, not Classify).

    Returns:
        The written file.
    """
    directory = Path(assets_extra)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WARMUP_REQUESTS_FILE
    return write_logs(path, warmup_logs(warmup_texts(max_length), text_pair=text_pair,
                                        problem_type=problem_type))
