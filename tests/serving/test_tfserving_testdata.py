"""TF Serving's own test SavedModels (TF1 and TF2 era), served and queried like its tests do.

Skipped when ../shared/tfserving-testdata is absent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from tests.serving.models import TESTDATA
from tests.serving.models import predict_request
from tests.serving.models import tfserving_testdata

MODELS = ["saved_model_half_plus_two_cpu", "saved_model_half_plus_two_tf2_cpu",
          "saved_model_half_plus_two_2_versions"]


@pytest.fixture(scope="module")
def stub():
    import grpc

    from serving import Server

    bases = {name: tfserving_testdata(name) for name in MODELS}
    server = Server(bases, port=0, file_system_poll_wait_seconds=0).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    server.stop(grace=5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("x", [np.array([2.0], np.float32), np.array([[2.0]], np.float32)],
                         ids=["shape-1", "shape-1x1"])
def test_half_plus_two(stub, name, x):
    response = stub.Predict(predict_request(name, {"x": x}), timeout=30)

    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]).ravel(), [3.0])


def test_two_versions_serves_the_highest_of_zero_padded_directories(stub):
    response = stub.Predict(predict_request("saved_model_half_plus_two_2_versions",
                                            {"x": np.array([2.0], np.float32)}), timeout=30)

    assert response.model_spec.version.value == 124


def test_tf2_signature_default_is_fed_when_the_input_is_missing(stub):
    response = stub.Predict(predict_request("saved_model_half_plus_two_tf2_cpu", {}), timeout=30)

    assert list(response.outputs["y"].float_val) == [2.0]  # default x = 0


def test_metadata_equals_tf_servings_recorded_json(stub):
    expected = json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "saved_model_half_plus_two_cpu"

    response = stub.GetModelMetadata(request, timeout=30)

    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert signatures == json_format.ParseDict(expected["metadata"]["signature_def"],
                                               get_model_metadata_pb2.SignatureDefMap())
    assert response.model_spec.version.value == int(expected["model_spec"]["version"])


@pytest.mark.parametrize("name", ["saved_model_half_plus_two_cpu",
                                  "saved_model_half_plus_two_tf2_cpu"])
def test_classify_and_regress_over_tf_examples(stub, name):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = name
    classify.model_spec.signature_name = "classify_x_to_y"
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = name
    regress.model_spec.signature_name = "regress_x_to_y"
    for request in (classify, regress):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2)

    classes = stub.Classify(classify, timeout=30).result.classifications
    regressions = stub.Regress(regress, timeout=30).result.regressions

    assert [[(c.label, c.score) for c in row.classes] for row in classes] == [[("", 3.0)]]
    assert [r.value for r in regressions] == [3.0]
