"""Every error status of the server: exact gRPC code and TF Serving's message text."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2

from tests.serving.models import predict_request
from tests.serving.models import rpc_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT
X = {"x": np.array([[1.0]], np.float32)}


def float_tensor(shape, values, dtype=types_pb2.DT_FLOAT):
    return tensor_pb2.TensorProto(
        dtype=dtype, float_val=values,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]))


@pytest.mark.parametrize("request_, code, message", [
    (predict_pb2.PredictRequest(), INVALID, "Missing ModelSpec"),
    (predict_request("", X), INVALID, "ModelSpec has no name specified."),
    (predict_request("nope", X), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    (predict_request("tf2", X, version=5), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(tf2, 5)"),
    (predict_request("nope", X, version=1), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(nope, 1)"),
    (predict_request("half", X, signature="nope"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    (predict_request("half", {}), INVALID,
     "input size does not match signature: 0!=1 len({}) != len({x}). Sent extra: {}. "
     "Missing but required: {x}."),
    (predict_request("half", {**X, "z": np.array([1.0])}), INVALID,
     "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. "
     "Missing but required: {}."),
    (predict_request("half", {"z": np.array([[1.0]], np.float32)}), INVALID,
     "Signature input alias: x(feed name: x:0) not found in request and no default value "
     "provided. Inputs expected to be in the request {z}, or default input alias set: "),
    (predict_request("half", {"left": np.array([1.0], np.float32), "z": np.array([1.0])},
                     signature="add_with_default"), INVALID,
     "Inputs contains invalid name. Used request inputs: left, request input: left,z"),
    (predict_request("half", {"x": float_tensor([1], [1.0, 2.0])}), INVALID,
     "tensor parsing error: x"),
    (predict_request("half", {"x": float_tensor([-1], [1.0])}), INVALID,
     "tensor parsing error: x"),
    (predict_request("half", {"x": float_tensor([1 << 40], [1.0])}), INVALID,
     "tensor parsing error: x"),
    (predict_request("half", {"x": float_tensor([1], [1.0], dtype=types_pb2.DT_INVALID)}),
     INVALID, "tensor parsing error: x"),
    (predict_request("half", X, output_filter=["nope"]), INVALID,
     "output tensor alias not found in signature: nope Outputs expected to be in the set {y}."),
    (predict_request("half", X, output_filter=["y", "y"]), INVALID,
     "duplicate output tensor alias: y"),
    (predict_request("tf2", X, version_label="stable"), INVALID,
     "Unrecognized servable version label: stable"),
], ids=lambda value: None)
def test_predict_errors(prediction_stub, request_, code, message):
    assert rpc_error(prediction_stub.Predict, request_) == (code, message)


def test_wrong_dtype_is_the_tf_runtime_invalid_argument(prediction_stub):
    request = predict_request("half", {"x": np.array([b"two"])})

    code, message = rpc_error(prediction_stub.Predict, request)

    assert code == INVALID
    # What tensorflow_model_server answers (tensorflow/serving#927, #1495): the C++ session's text.
    assert message.splitlines()[0] == "Expects arg[0] to be float but string is provided"


def test_long_messages_are_truncated_like_tf_serving(prediction_stub):
    code, message = rpc_error(prediction_stub.Predict,
                              predict_request("half", X, output_filter=["o" * 2000]))

    assert code == INVALID
    assert len(message) == 1024 + len("...TRUNCATED")
    assert message.startswith("output tensor alias not found in signature: ooo")
    assert message.endswith("...TRUNCATED")


def test_unexpected_exceptions_become_internal_with_their_message(prediction_stub, monkeypatch):
    from serving.servable import Servable

    def explode(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr(Servable, "predict", explode)

    assert rpc_error(prediction_stub.Predict, predict_request("half", X)) == (
        grpc.StatusCode.INTERNAL, "RuntimeError: boom")


def test_the_server_still_answers_after_bad_requests(prediction_stub):
    response = prediction_stub.Predict(predict_request("half", X), timeout=30)

    assert list(response.outputs["y"].float_val) == [2.5]


def metadata_request(name="half", fields=("signature_def",)):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    if name is not None:
        request.model_spec.name = name
    return request


@pytest.mark.parametrize("request_, code, message", [
    (metadata_request(name=None), INVALID, "Missing ModelSpec"),
    (metadata_request(fields=()), INVALID,
     "GetModelMetadataRequest must specify at least one metadata_field"),
    (metadata_request(fields=("signature_def", "nope")), INVALID,
     "Metadata field nope is not supported"),
    (metadata_request(name="nope"), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    (metadata_request(name=""), INVALID, "ModelSpec has no name specified."),
], ids=lambda value: None)
def test_metadata_errors(prediction_stub, request_, code, message):
    assert rpc_error(prediction_stub.GetModelMetadata, request_) == (code, message)


def status_request(name="tf2", version=None):
    request = get_model_status_pb2.GetModelStatusRequest()
    if name is not None:
        request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


@pytest.mark.parametrize("request_, code, message", [
    (status_request(name=None), INVALID, "Missing ModelSpec"),
    (status_request(name="nope"), grpc.StatusCode.NOT_FOUND,
     "Could not find any versions of model nope"),
    (status_request(version=9), grpc.StatusCode.NOT_FOUND, "Could not find version 9 of model tf2"),
], ids=lambda value: None)
def test_status_errors(model_stub, request_, code, message):
    assert rpc_error(model_stub.GetModelStatus, request_) == (code, message)


def example_request(kind, name="half", signature="classify_x_to_y", examples=1):
    request = kind()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for i in range(examples):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(i)
    return request


@pytest.mark.parametrize("kind, method, signature", [
    (classification_pb2.ClassificationRequest, "Classify", "classify_x_to_y"),
    (regression_pb2.RegressionRequest, "Regress", "regress_x_to_y"),
])
def test_classify_and_regress_common_errors(prediction_stub, kind, method, signature):
    call = getattr(prediction_stub, method)

    assert rpc_error(call, kind()) == (INVALID, "Missing ModelSpec")
    assert rpc_error(call, example_request(kind, name="nope")) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")
    assert rpc_error(call, example_request(kind, signature="nope")) == (
        INVALID, "No signature was found with the name: nope")
    assert rpc_error(call, example_request(kind, signature=signature, examples=0)) == (
        INVALID, "Input is empty.")
    assert rpc_error(call, example_request(kind, signature="add_with_default")) == (
        INVALID, "Expected one input Tensor.")


def test_classify_and_regress_signature_shape_errors(prediction_stub):
    code, message = rpc_error(prediction_stub.Classify, example_request(
        classification_pb2.ClassificationRequest, signature="serving_default"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message.startswith("No classification inputs found in SignatureDef: ")

    assert rpc_error(prediction_stub.Regress, example_request(
        regression_pb2.RegressionRequest, signature="two_outputs")) == (
        INVALID, "Expected one output Tensor.")


def test_unparseable_examples_are_the_tf_runtime_invalid_argument(prediction_stub):
    request = example_request(classification_pb2.ClassificationRequest, examples=0)
    request.input.example_list.examples.add().features.feature["y"].float_list.value.append(1)

    code, message = rpc_error(prediction_stub.Classify, request)

    assert code == INVALID
    assert "Feature: x (data type: float) is required but could not be found." in message


def test_multi_inference_without_tasks_has_no_model_name(prediction_stub):
    code, message = rpc_error(prediction_stub.MultiInference,
                              inference_pb2.MultiInferenceRequest())

    assert (code, message) == (INVALID, "ModelSpec has no name specified.")


def test_reload_without_a_model_config_list_is_refused(model_stub):
    code, message = rpc_error(model_stub.HandleReloadConfigRequest,
                              model_management_pb2.ReloadConfigRequest())

    assert (code, message) == (INVALID, "ServerModelConfig type not supported by "
                                        "HandleReloadConfigRequest. Only ModelConfigList is "
                                        "currently supported")
