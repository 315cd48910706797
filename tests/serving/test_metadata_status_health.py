"""GetModelMetadata, GetModelStatus, Classify/Regress results, gRPC health and reflection."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import regression_pb2


def metadata(stub, name, version=None):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    response = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    return response, signatures


def test_metadata_packs_every_signature_in_a_signature_def_map(prediction_stub):
    response, signatures = metadata(prediction_stub, "tf2")

    assert response.model_spec.name == "tf2"
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == ""  # TF Serving leaves it unset here
    assert set(signatures.signature_def) == {"serving_default", "greet", "__saved_model_init_op"}
    x = signatures.signature_def["serving_default"].inputs["x"]
    assert x.dtype == 1 and [d.size for d in x.tensor_shape.dim] == [-1]


def test_status_lists_the_loaded_versions_like_tf_serving_json(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tf2"

    response = model_stub.GetModelStatus(request, timeout=30)

    assert json_format.MessageToDict(
        response, always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True) == {"model_version_status": [
            {"version": "2", "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}]}


def test_status_of_one_version(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half"
    request.model_spec.version.value = 1

    response = model_stub.GetModelStatus(request, timeout=30)

    assert [(s.version, s.state) for s in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


def test_classify_returns_classes_and_scores_per_example(prediction_stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half"
    request.model_spec.signature_name = "classify_x_to_y"
    for x in (2.0, 4.0):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)

    response = prediction_stub.Classify(request, timeout=30)

    assert [[(c.label, c.score) for c in row.classes]
            for row in response.result.classifications] == [
        [("low", 3.0), ("high", 6.0)], [("low", 4.0), ("high", 8.0)]]
    assert response.model_spec.signature_name == "classify_x_to_y"
    assert response.model_spec.version.value == 1


def test_regress_with_a_context_prefixed_to_each_example(prediction_stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half"
    request.model_spec.signature_name = "regress_x_to_y"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.append(100.0)  # overridden
    for x in (2.0, 6.0):
        with_context.examples.add().features.feature["x"].float_list.value.append(x)

    response = prediction_stub.Regress(request, timeout=30)

    assert [r.value for r in response.result.regressions] == [3.0, 5.0]


@pytest.mark.parametrize("service", [
    "", "PredictionService", "ModelService", "tensorflow.serving.PredictionService"])
def test_health_is_serving_when_every_model_is_available(channel, service):
    stub = health_pb2_grpc.HealthStub(channel)

    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)

    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(channel):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase)

    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "grpc.health.v1.Health"} <= services


def test_messages_bigger_than_grpc_default_4mb_are_accepted_and_sent(server):
    import numpy as np
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tests.serving.models import predict_request

    x = np.ones((1_200_000, 1), np.float32)  # ~4.8 MB each way
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request("half", {"x": x}), timeout=60)

    assert len(response.outputs["y"].float_val) == 1_200_000
