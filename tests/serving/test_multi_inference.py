"""`PredictionService.MultiInference`: several classify/regress signatures of one model over the
same examples in one call, with TF Serving's results and every error text of
multi_inference.cc (cases mirror its multi_inference_test.cc)."""

from __future__ import annotations

import grpc
import pytest
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from tests.serving.lifecycle_models import build_half_plus_two_heads
from tests.serving.models import tfserving_testdata

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
PREDICT = "tensorflow/serving/predict"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    base = tmp_path_factory.mktemp("multi") / "heads"
    build_half_plus_two_heads(base / "7")
    server = Server({"heads": base}, port=0, file_system_poll_wait_seconds=0).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    server.stop(grace=5)


def multi_request(*tasks, examples=({"x": 2.0},), name="heads", context=None):
    """tasks: (signature, method) or (signature, method, model name) tuples."""
    request = inference_pb2.MultiInferenceRequest()
    for task in tasks:
        signature, method, *model = task
        added = request.tasks.add(method_name=method)
        added.model_spec.name = model[0] if model else name
        added.model_spec.signature_name = signature
    target = (request.input.example_list_with_context if context is not None
              else request.input.example_list)
    for features in examples:
        example = target.examples.add()
        for key, value in features.items():
            example.features.feature[key].float_list.value.append(value)
    if context is not None:
        for key, value in context.items():
            target.context.features.feature[key].float_list.value.append(value)
    return request


def results(response):
    found = []
    for result in response.results:
        kind = result.WhichOneof("result")
        if kind == "regression_result":
            values = [r.value for r in result.regression_result.regressions]
        else:
            values = [[(c.label, c.score) for c in row.classes]
                      for row in result.classification_result.classifications]
        found.append((result.model_spec.signature_name, kind, values))
    return found


def error(stub, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        stub.MultiInference(request, timeout=30)
    return raised.value.code(), raised.value.details()


def test_a_single_regression(stub):
    response = stub.MultiInference(multi_request(("regress_x_to_y", REGRESS)), timeout=30)

    assert results(response) == [("regress_x_to_y", "regression_result", [3.0])]
    spec = response.results[0].model_spec
    assert (spec.name, spec.version.value) == ("heads", 7)


def test_two_regressions_and_a_classification_in_one_call(stub):
    response = stub.MultiInference(multi_request(
        ("regress_x_to_y", REGRESS), ("regress_x_to_y2", REGRESS),
        ("classify_x_to_y", CLASSIFY), examples=[{"x": 2.0}, {"x": 4.0}]), timeout=30)

    assert results(response) == [
        ("regress_x_to_y", "regression_result", [3.0, 4.0]),
        ("regress_x_to_y2", "regression_result", [4.0, 5.0]),
        ("classify_x_to_y", "classification_result", [[("", 3.0)], [("", 4.0)]])]


def test_signatures_on_different_input_tensors_get_the_same_examples(stub):
    response = stub.MultiInference(multi_request(
        ("regress_x_to_y", REGRESS), ("regress_x2_to_y3", REGRESS),
        examples=[{"x": 2.0, "x2": 10.0}]), timeout=30)

    assert results(response) == [("regress_x_to_y", "regression_result", [3.0]),
                                 ("regress_x2_to_y3", "regression_result", [8.0])]


def test_examples_with_context(stub):
    response = stub.MultiInference(multi_request(
        ("regress_x2_to_y3", REGRESS), examples=[{"x2": 2.0}, {"x2": 4.0}], context={"x": 1.0}),
        timeout=30)

    assert results(response) == [("regress_x2_to_y3", "regression_result", [4.0, 5.0])]


@pytest.mark.parametrize("request_, expected", [
    (multi_request(("regress_x_to_y", REGRESS), examples=()), (INVALID, "Input is empty.")),
    (multi_request(("ThisSignatureDoesNotExist", REGRESS)),
     (INVALID, "Requested signature not found in model graph: ThisSignatureDoesNotExist")),
    (multi_request(("regress_x_to_y", REGRESS), ("regress_x_to_y", REGRESS, "ModelDoesNotExist")),
     (INVALID, "All ModelSpecs in a MultiInferenceRequest must access the same model name.")),
    (multi_request(("regress_x_to_y", REGRESS), ("regress_x_to_y2", REGRESS, "")),
     (INVALID, "Found ModelSpec with an empty model name.")),
    (multi_request(("regress_x_to_y", REGRESS), ("regress_x_to_y", CLASSIFY)),
     (INVALID, "Duplicate evaluation of signature: regress_x_to_y")),
    (multi_request(("serving_default", PREDICT)),
     (grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {PREDICT}")),
    (multi_request(("regress_x_to_y", "")),
     (grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: ")),
    (multi_request(("regress_x_to_y", REGRESS, "")), (INVALID, "ModelSpec has no name specified.")),
    (multi_request(("regress_x_to_y", REGRESS, "nope")),
     (grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")),
], ids=["no-examples", "unknown-signature", "two-models", "empty-name", "duplicate",
        "predict-method", "no-method", "no-model-name", "unknown-model"])
def test_errors_have_tf_servings_code_and_text(stub, request_, expected):
    assert error(stub, request_) == expected


def test_the_first_tasks_version_and_label_pick_the_servable(stub):
    request = multi_request(("regress_x_to_y", REGRESS))
    request.tasks[0].model_spec.version.value = 8
    assert error(stub, request) == (grpc.StatusCode.NOT_FOUND,
                                    "Servable not found for request: Specific(heads, 8)")
    request.tasks[0].model_spec.version_label = "stable"
    assert error(stub, request) == (INVALID, "Unrecognized servable version label: stable")


def test_a_method_that_does_not_fit_the_signature(stub):
    classify_on_regression = error(stub, multi_request(("regress_x_to_y", CLASSIFY)))
    regress_on_predict = error(stub, multi_request(("serving_default", REGRESS)))

    assert classify_on_regression[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert classify_on_regression[1].startswith(
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: ')
    assert regress_on_predict[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert regress_on_predict[1].startswith("No regression inputs found in SignatureDef: ")


@pytest.mark.parametrize("name", ["saved_model_half_plus_two_cpu",
                                  "saved_model_half_plus_two_tf2_cpu"])
def test_tf_servings_half_plus_two(name):
    server = Server({"m": tfserving_testdata(name)}, port=0,
                    file_system_poll_wait_seconds=0).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).MultiInference(
                multi_request(("regress_x_to_y", REGRESS), ("regress_x_to_y2", REGRESS),
                              ("classify_x_to_y", CLASSIFY), name="m"), timeout=30)
    finally:
        server.stop(grace=5)

    assert results(response) == [("regress_x_to_y", "regression_result", [3.0]),
                                 ("regress_x_to_y2", "regression_result", [4.0]),
                                 ("classify_x_to_y", "classification_result", [[("", 3.0)]])]
    assert {r.model_spec.version.value for r in response.results} == {123}


def test_the_signature_method_name_check_applies_to_tasks(tmp_path):
    """With --enable_signature_method_name_check a task's signature must carry its method
    (PreProcessClassification/Regression); off by default, so TF2 signatures stamped
    "predict" serve, as in TF Serving."""
    import tensorflow as tf

    from serving.servable import Servable
    from serving.servable_options import ServableOptions
    from serving.serving_error import ServingError

    class Heads(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
            return {"outputs": 0.5 * x + 2}

    module = Heads()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"regress": module.regress})
    request = multi_request(("regress", REGRESS), name="m")
    unchecked = Servable.load("m", 1, tmp_path / "1")
    checked = Servable.load("m", 1, tmp_path / "1",
                            options=ServableOptions(signature_method_name_check=True))
    try:
        answered = results(unchecked.multi_inference(request))
        with pytest.raises(ServingError) as raised:
            checked.multi_inference(request)
    finally:
        unchecked.close()
        checked.close()

    assert answered == [("regress", "regression_result", [3.0])]
    assert (raised.value.code, raised.value.message) == (
        INVALID, f"Expected regression signature method_name to be {REGRESS}. Was: {PREDICT}")
