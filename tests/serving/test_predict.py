"""Predict over a real gRPC channel with the official stub."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tests.serving.models import expected_probabilities
from tests.serving.models import predict_request


def test_tf1_model_predicts_and_echoes_the_resolved_model_spec(prediction_stub):
    x = np.array([[1.0], [2.0], [4.0]], np.float32)

    response = prediction_stub.Predict(predict_request("half", {"x": x}), timeout=30)

    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [[2.5], [3.0], [4.0]])
    assert response.model_spec.name == "half"
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value == 1


def test_outputs_are_written_as_typed_fields_like_tf_serving(prediction_stub):
    response = prediction_stub.Predict(
        predict_request("half", {"x": np.array([[2.0]], np.float32)}), timeout=30)

    y = response.outputs["y"]
    assert y.dtype == types_pb2.DT_FLOAT
    assert list(y.float_val) == [3.0]
    assert not y.tensor_content
    assert [d.size for d in y.tensor_shape.dim] == [1, 1]


def test_shapes_are_not_checked_like_the_cpp_server(prediction_stub):
    """TF Serving's own test sends x of shape [1] to half_plus_two's [-1, 1] signature."""
    response = prediction_stub.Predict(
        predict_request("half", {"x": np.array([2.0], np.float32)}), timeout=30)

    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [3.0])


def test_no_version_means_the_highest_loaded_and_a_version_pins_it(prediction_stub):
    x = {"x": np.array([3.0], np.float32)}

    latest = prediction_stub.Predict(predict_request("tf2", x), timeout=30)
    pinned = prediction_stub.Predict(predict_request("tf2", x, version=2), timeout=30)

    assert latest.model_spec.version.value == 2
    np.testing.assert_allclose(tf.make_ndarray(latest.outputs["y"]), [6.0])
    assert pinned.model_spec.version.value == 2


def test_string_signature_of_a_tf2_model(prediction_stub):
    request = predict_request("tf2", {"name": np.array([b"ada", "grace".encode()])},
                              signature="greet")

    response = prediction_stub.Predict(request, timeout=30)

    assert list(response.outputs["greeting"].string_val) == [b"hello ada", b"hello grace"]
    assert list(response.outputs["length"].int_val) == [3, 5]
    assert response.model_spec.signature_name == "greet"


def test_signature_defaults_fill_missing_inputs(prediction_stub):
    left = {"left": np.array([1.0, 2.0], np.float32)}

    defaulted = prediction_stub.Predict(
        predict_request("half", left, signature="add_with_default"), timeout=30)
    given = prediction_stub.Predict(
        predict_request("half", {**left, "right": np.array([1.0], np.float32)},
                        signature="add_with_default"), timeout=30)

    np.testing.assert_allclose(tf.make_ndarray(defaulted.outputs["sum"]), [11.0, 12.0])
    np.testing.assert_allclose(tf.make_ndarray(given.outputs["sum"]), [2.0, 3.0])


def test_output_filter_fetches_only_the_named_outputs(prediction_stub):
    x = {"x": np.array([[2.0]], np.float32)}

    everything = prediction_stub.Predict(
        predict_request("half", x, signature="two_outputs"), timeout=30)
    filtered = prediction_stub.Predict(
        predict_request("half", x, signature="two_outputs", output_filter=["x_copy"]),
        timeout=30)

    assert sorted(everything.outputs) == ["x_copy", "y"]
    assert list(filtered.outputs) == ["x_copy"]
    assert list(filtered.outputs["x_copy"].float_val) == [2.0]


def test_raw_text_through_a_tensorflow_text_model(prediction_stub):
    texts = ["a good good film", "bad", "nothing to say"]
    request = predict_request("text", {"text": np.array([t.encode() for t in texts])})

    response = prediction_stub.Predict(request, timeout=30)

    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    np.testing.assert_allclose(probabilities, [expected_probabilities(t) for t in texts],
                               atol=1e-6)
    assert list(response.outputs["label"].string_val) == [b"positive", b"negative", b"negative"]
    assert list(response.outputs["label_id"].int64_val) == [1, 0, 0]
    assert tf.make_ndarray(response.outputs["classes"]).tolist() == [
        [b"negative", b"positive"]] * 3


def test_concurrent_requests_all_get_their_own_answer(prediction_stub):
    def predict(i: int) -> float:
        request = predict_request("half", {"x": np.array([[float(i)]], np.float32)})
        response = prediction_stub.Predict(request, timeout=30)
        return float(tf.make_ndarray(response.outputs["y"]).item())

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(predict, range(64)))

    assert results == pytest.approx([0.5 * i + 2 for i in range(64)])
