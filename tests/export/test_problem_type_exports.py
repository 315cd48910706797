"""Exports of multi-label and regression runs: signatures, parity, warm-up, TF1-session load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.export.conftest import CHECK_TEXTS
from tests.export.reference import TOLERANCE
from tests.export.reference import decode
from tests.export.reference import reference_logits
from tests.export.reference import serialized_examples
from tests.export.test_signatures import _meta_graph
from tests.export.test_signatures import _tensor_infos
from tests.export.test_tf1_session import Tf1Session
from tests.export.test_warmup_requests import read_logs

PREDICT = "tensorflow/serving/predict"
C = 2  # labels of the multi-label fixture: neg, pos
MULTI_LABELS = ["neg", "pos"]
TOKEN_INPUTS = {name: ("int32", [-1, -1])
                for name in ("input_ids", "attention_mask", "token_type_ids")}
EXPECTED = {
    "multi_label": {
        "serving_default": {
            "inputs": {"text": ("string", [-1])},
            "outputs": {"scores": ("float32", [-1, C]), "classes": ("string", [-1, C]),
                        "predicted": ("int64", [-1, C])},
            "method_name": PREDICT},
        "tokens": {"inputs": TOKEN_INPUTS,
                   "outputs": {"logits": ("float32", [-1, C]), "scores": ("float32", [-1, C])},
                   "method_name": PREDICT},
        "classify": {"inputs": {"inputs": ("string", [-1])},
                     "outputs": {"classes": ("string", [-1, C]), "scores": ("float32", [-1, C])},
                     "method_name": "tensorflow/serving/classify"},
    },
    "regression": {
        "serving_default": {"inputs": {"text": ("string", [-1])},
                            "outputs": {"value": ("float32", [-1])}, "method_name": PREDICT},
        "tokens": {"inputs": TOKEN_INPUTS,
                   "outputs": {"logits": ("float32", [-1, 1]), "value": ("float32", [-1])},
                   "method_name": PREDICT},
        "regress": {"inputs": {"inputs": ("string", [-1])},
                    "outputs": {"outputs": ("float32", [-1])},
                    "method_name": "tensorflow/serving/regress"},
    },
}


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


@pytest.fixture(scope="module")
def tf1_multi_label(multi_label_export):
    loaded = Tf1Session(multi_label_export.path)
    yield loaded
    loaded.session.close()


@pytest.fixture(scope="module")
def tf1_regression(regression_export):
    loaded = Tf1Session(regression_export.path)
    yield loaded
    loaded.session.close()


@pytest.mark.parametrize("kind", ["multi_label", "regression"])
def test_signature_defs_per_problem_type(kind, request):
    result = request.getfixturevalue(f"{kind}_export")
    meta_graph = _meta_graph(result.path)

    public = {name: sig for name, sig in meta_graph.signature_def.items()
              if not name.startswith("__")}
    assert set(public) == set(EXPECTED[kind])
    assert result.signatures == tuple(EXPECTED[kind])
    for name, signature in public.items():
        expected = EXPECTED[kind][name]
        assert signature.method_name == expected["method_name"], name
        assert _tensor_infos(signature.inputs) == expected["inputs"], name
        assert _tensor_infos(signature.outputs) == expected["outputs"], name


def test_export_config_records_problem_type_and_threshold(multi_label_export,
                                                          regression_export):
    def config(result):
        return json.loads((result.path / "assets.extra" / "export_config.json").read_text())

    multi = config(multi_label_export)
    assert (multi["problem_type"], multi["threshold"]) == ("multi-label", 0.5)
    assert multi["labels"] == MULTI_LABELS
    assert multi["signatures"] == ["serving_default", "tokens", "classify"]
    regression = config(regression_export)
    assert (regression["problem_type"], regression["threshold"]) == ("regression", None)
    assert regression["labels"] == ["score"]
    assert regression["signatures"] == ["serving_default", "tokens", "regress"]


def test_parity_passes_for_both_problem_types(multi_label_export, regression_export):
    assert multi_label_export.max_abs_difference <= TOLERANCE
    assert regression_export.max_abs_difference <= TOLERANCE


def test_multi_label_threshold_is_applied_in_the_graph(
        tmp_path, sensitive_multi_label_run_dir, multi_label_reference):
    """A run with another threshold exports other `predicted` for the same scores."""
    import shutil

    import yaml

    import export

    run = tmp_path / "run"
    shutil.copytree(sensitive_multi_label_run_dir, run)
    config = yaml.safe_load((run / "fit_config.yaml").read_text())
    logits = reference_logits(*multi_label_reference, CHECK_TEXTS)
    scores = sigmoid(logits)
    # A threshold between the scores, so some labels flip compared with 0.5.
    threshold = float(np.round(np.median(scores), 3))
    config["threshold"] = threshold
    (run / "fit_config.yaml").write_text(yaml.safe_dump(config))

    result = export.export_model(run, tmp_path / "models")

    loaded = tf.saved_model.load(str(result.path))
    outputs = loaded.signatures["serving_default"](text=tf.constant(CHECK_TEXTS))
    np.testing.assert_array_equal(outputs["predicted"].numpy(),
                                  (scores >= threshold).astype(np.int64))
    assert json.loads((result.path / "assets.extra" / "export_config.json").read_text())[
        "threshold"] == threshold


def test_multi_label_in_a_tf1_session(tf1_multi_label, multi_label_reference):
    texts = np.array([t.encode() for t in CHECK_TEXTS], dtype=object)
    scores = sigmoid(reference_logits(*multi_label_reference, CHECK_TEXTS))

    outputs = tf1_multi_label.run("serving_default", {"text": texts})

    np.testing.assert_allclose(outputs["scores"], scores, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(outputs["predicted"], (scores >= 0.5).astype(np.int64))
    assert outputs["predicted"].dtype == np.int64
    assert decode(outputs["classes"].tolist()) == [MULTI_LABELS] * len(CHECK_TEXTS)
    assert 0 < outputs["predicted"].sum() < outputs["predicted"].size  # text-dependent
    classify = tf1_multi_label.run(
        "classify", {"inputs": np.array(serialized_examples(CHECK_TEXTS), dtype=object)})
    np.testing.assert_allclose(classify["scores"], scores, rtol=0, atol=TOLERANCE)
    assert decode(classify["classes"].tolist()) == [MULTI_LABELS] * len(CHECK_TEXTS)


def test_regression_in_a_tf1_session(tf1_regression, regression_reference):
    texts = np.array([t.encode() for t in CHECK_TEXTS], dtype=object)
    values = reference_logits(*regression_reference, CHECK_TEXTS)[:, 0]

    outputs = tf1_regression.run("serving_default", {"text": texts})

    np.testing.assert_allclose(outputs["value"], values, rtol=0, atol=TOLERANCE)
    assert outputs["value"].shape == (len(CHECK_TEXTS),)
    assert np.ptp(values) > 0.05  # text-dependent
    regress = tf1_regression.run(
        "regress", {"inputs": np.array(serialized_examples(CHECK_TEXTS), dtype=object)})
    np.testing.assert_allclose(regress["outputs"], values, rtol=0, atol=TOLERANCE)


def test_regression_warmup_requests_predict_then_regress(regression_export):
    logs = read_logs(regression_export.path)

    assert [log.WhichOneof("log_type") for log in logs] == [
        "predict_log", "predict_log", "predict_log", "regress_log"]
    regress = logs[3].regress_log.request
    assert regress.model_spec.signature_name == "regress"
    loaded = tf.saved_model.load(str(regression_export.path))
    outputs = loaded.signatures["regress"](inputs=tf.constant(
        [example.SerializeToString() for example in regress.input.example_list.examples]))
    assert outputs["outputs"].shape == (len(regress.input.example_list.examples),)


def test_multi_label_warmup_requests_predict_then_classify(multi_label_export):
    logs = read_logs(multi_label_export.path)

    assert [log.WhichOneof("log_type") for log in logs] == [
        "predict_log", "predict_log", "predict_log", "classify_log"]
    loaded = tf.saved_model.load(str(multi_label_export.path))
    for log in logs[:3]:
        predict = log.predict_log.request
        outputs = loaded.signatures["serving_default"](
            text=tf.constant(tf.make_ndarray(predict.inputs["text"])))
        assert outputs["scores"].shape[1] == C


def test_run_dir_with_mismatched_problem_type_is_refused(tmp_path, sensitive_regression_run_dir):
    import shutil

    import yaml

    import export
    from export.errors import RunDirError

    run = tmp_path / "run"
    shutil.copytree(sensitive_regression_run_dir, run)
    config = yaml.safe_load((run / "fit_config.yaml").read_text())
    config["problem_type"] = "banana"
    (run / "fit_config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(RunDirError, match="Unknown problem_type in fit_config.yaml"):
        export.export_model(run, tmp_path / "models")
    assert not (tmp_path / "models").exists()
