"""`assets.extra/tf_serving_warmup_requests`: TF Serving's warm-up file, written by every export.

Each record must be a `PredictionLog` whose request runs on the exported signatures (the serving
tests check that the server replays the file)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from export.warmup_requests import WARMUP_TEXTS
from export.warmup_requests import warmup_logs
from export.warmup_requests import warmup_texts


def read_logs(version_dir) -> list:
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    return [prediction_log_pb2.PredictionLog.FromString(record)
            for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_export_writes_predict_and_classify_warmup_requests(kind, request):
    result = request.getfixturevalue(f"{kind}_export")

    logs = read_logs(result.path)

    assert [log.WhichOneof("log_type") for log in logs] == [
        "predict_log", "predict_log", "predict_log", "classify_log"]
    predicts = [log.predict_log.request for log in logs[:3]]
    assert {p.model_spec.signature_name for p in predicts} == {"serving_default"}
    expected_inputs = {"text", "text_pair"} if kind == "pair" else {"text"}
    assert all(set(p.inputs) == expected_inputs for p in predicts)
    sizes = [tf.make_ndarray(p.inputs["text"]).shape for p in predicts]
    assert sizes == [(1,), (2,), (len(WARMUP_TEXTS) + 1,)]
    classify = logs[3].classify_log.request
    assert classify.model_spec.signature_name == "classify"
    assert len(classify.input.example_list.examples) == len(WARMUP_TEXTS) + 1


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_warmup_requests_run_on_the_exported_signatures(kind, request):
    loaded = request.getfixturevalue(f"loaded_{kind}")
    logs = read_logs(request.getfixturevalue(f"{kind}_export").path)

    for log in logs[:3]:
        predict = log.predict_log.request
        inputs = {alias: tf.constant(tf.make_ndarray(tensor))
                  for alias, tensor in predict.inputs.items()}
        outputs = loaded.signatures[predict.model_spec.signature_name](**inputs)
        assert outputs["probabilities"].shape[0] == inputs["text"].shape[0]
        assert np.allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    examples = logs[3].classify_log.request.input.example_list.examples
    outputs = loaded.signatures["classify"](
        inputs=tf.constant([example.SerializeToString() for example in examples]))
    assert outputs["scores"].shape == (len(examples), 2)


def test_one_warmup_text_is_longer_than_max_length():
    texts = warmup_texts(max_length=32)

    assert len(texts[-1].split()) > 32
    assert texts[:-1] == list(WARMUP_TEXTS)


def test_pair_requests_pair_each_text_with_the_next():
    logs = warmup_logs(["a", "b", "c"], text_pair=True)

    batch = logs[2].predict_log.request.inputs
    assert tf.make_ndarray(batch["text_pair"]).tolist() == [b"b", b"c", b"a"]
    features = logs[3].classify_log.request.input.example_list.examples[0].features.feature
    assert (features["text"].bytes_list.value[0], features["text_pair"].bytes_list.value[0]) == (
        b"a", b"b")
