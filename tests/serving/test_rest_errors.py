"""REST API errors: TF Serving's texts in `{"error": ...}` with its HTTP code per status."""

from __future__ import annotations

import contextlib
import json

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.json_tensor import PredictFormat
from serving.json_tensor import predict_response_json
from serving.rest_api_handler import HTTP_STATUS
from serving.rest_api_handler import RestApiHandler
from serving.serving_error import ServingError
from tests.serving.models import rest_request

PREDICT = "/v1/models/half:predict"


def error(port: int, method: str, path: str, body=None) -> tuple[int, str]:
    status, headers, payload = rest_request(port, method, path, body)
    assert headers["Content-Type"] == "application/json"
    document = json.loads(payload)
    assert list(document) == ["error"], document
    return status, document["error"]


def pretty(value) -> str:
    """A JSON value as TF Serving's error texts print it (rapidjson's PrettyWriter)."""
    return json.dumps(value, indent=4)


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/foo"), ("POST", "/v1/foo"), ("POST", "/v1/models"),
    ("GET", "/v1/models/half:predict"), ("GET", "/v1/models/half/version/1"),
    ("POST", "/v1/models/half/versions/one:predict"), ("POST", "/v1/models/half/metadata"),
    ("POST", "/v1/models/half/versions/1/labels/a:regress"), ("PUT", "/v1/models/half"),
    ("DELETE", "/v1/models/half"), ("POST", "/v1/models/half:Predict"),
])
def test_malformed_requests(rest_port, method, path):
    assert error(rest_port, method, path) == (400, f"Malformed request: {method} {path}")


def test_missing_model_name(rest_port):
    assert error(rest_port, "GET", "/v1/models") == (400, "Missing model name in request.")


def test_version_out_of_int64_range(rest_port):
    path = "/v1/models/half/versions/18446744073709551615:predict"
    assert error(rest_port, "POST", path, {"instances": [1.0]}) == (
        400, "Failed to convert version: 18446744073709551615 to numeric.")


@pytest.mark.parametrize("path, body, expected", [
    ("/v1/models/nope:predict", {"instances": [1.0]},
     "Servable not found for request: Latest(nope)"),
    ("/v1/models/half/versions/7:predict", {"instances": [1.0]},
     "Servable not found for request: Specific(half, 7)"),
    ("/v1/models/nope:classify", {"examples": [{"x": 1.0}]},
     "Servable not found for request: Latest(nope)"),
    ("/v1/models/nope/versions/3:regress", {"examples": [{"x": 1.0}]},
     "Servable not found for request: Specific(nope, 3)"),
])
def test_unknown_model_or_version_is_404(rest_port, path, body, expected):
    assert error(rest_port, "POST", path, body) == (404, expected)


def test_status_and_metadata_of_unknown_models_are_404(rest_port):
    assert error(rest_port, "GET", "/v1/models/nope") == (
        404, "Could not find any versions of model nope")
    assert error(rest_port, "GET", "/v1/models/half/versions/9") == (
        404, "Could not find version 9 of model half")
    assert error(rest_port, "GET", "/v1/models/nope/metadata") == (
        404, "Servable not found for request: Latest(nope)")


def test_unknown_version_label_is_checked_before_the_body(rest_port):
    """As TF Serving's test: a bad label wins over values of the wrong type."""
    assert error(rest_port, "POST", "/v1/models/half/labels/nolabel:predict",
                 {"instances": ["x", "y"]}) == (
        400, "Unrecognized servable version label: nolabel")


@pytest.mark.parametrize("body, expected", [
    ("", "JSON Parse error: The document is empty"),
    ("instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
    ('{"instances": [1.0,]}', "JSON Parse error: Invalid value. at offset: 19"),
    ('{"instances": [1.0]} x', "JSON Parse error: The document root must not be followed by "
                               "other values. at offset: 21"),
    ("[1.0]", f"JSON Value: {pretty([1.0])} Is not object"),
    ({}, "Missing 'inputs' or 'instances' key"),
    ({"signature_name": 100, "instances": [1.0]},
     f"JSON Value: {pretty({'signature_name': 100, 'instances': [1.0]})} not formatted "
     f"correctly. 'signature_name' key must be a string value."),
    ({"instances": [1.0], "inputs": [1.0]},
     f"JSON Value: {pretty({'instances': [1.0], 'inputs': [1.0]})} Not formatted correctly "
     f"expecting only one of 'inputs' or 'instances' keys to exist "),
    ({"instances": 1.0}, f"JSON Value: {pretty({'instances': 1.0})} Excepting 'instances' "
                         f"to be an list/array"),
    ({"instances": []}, f"JSON Value: {pretty({'instances': []})} No values in 'instances' "
                        f"array"),
])
def test_body_format_errors(rest_port, body, expected):
    assert error(rest_port, "POST", PREDICT, body) == (400, expected)


def test_unknown_signature_is_400_over_rest(rest_port):
    """REST looks the signature up before Predict (GetInfoMap): INVALID_ARGUMENT, not gRPC's
    FAILED_PRECONDITION."""
    assert error(rest_port, "POST", PREDICT, {"signature_name": "nope", "instances": [1.0]}) == (
        400, 'Serving signature name: "nope" not found in signature def')


@pytest.mark.parametrize("body, expected", [
    ({"instances": ["x", "y"]},
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     "\"x\" Type: String is not of expected type: float"),
    ({"inputs": {"x": [[1.0], [True]]}},
     "JSON Value: true Type: True is not of expected type: float"),
    ({"inputs": [[None]]}, "JSON Value: null Type: Null is not of expected type: float"),
    ({"inputs": [{"a": 1}]}, 'JSON Value: {\n    "a": 1\n} Type: Object is not of expected '
                             'type: float'),
    ({"instances": [[1e39]]},
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Cannot "
     "convert JSON value: 1e+39 to float without loss of precision."),
    ('{"instances": [1%s]}' % ("0" * 400),
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Cannot "
     "convert JSON value: 1%s to float without loss of precision." % ("0" * 400)),
    ({"instances": [16777217]},
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Cannot "
     "convert JSON value: 16777217 to float without loss of precision."),
    ({"instances": [[1.0], [1.0, 2.0]]},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "tensor size: 1 but got: 2"),
    ({"instances": [[1.0, 2.0], [[1.0], [2.0]]]},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "shape [2] but got: [2,1]"),
    ({"instances": [[1.0, [2.0]]]},
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Encountered "
     "list at unexpected level: 1 expected < 1"),
    ({"inputs": [[1.0, 2.0], [3.0]]},
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ({"inputs": [[1.0], 2.0]},
     "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ({"inputs": {"y": [1.0]}}, "Missing named input: x in 'inputs' object."),
    ({"instances": [{"x": 1.0}, [2.0]]}, "Expecting object but got list at item 1 of input list"),
    ({"instances": [[1.0], {"x": 2.0}]},
     "Expecting value/list but got object at item 1 of input list"),
    ({"instances": [{"x": 1.0, "z": 2.0}]},
     "Failed to process element: 0 key: z of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "object: does not have named input: z"),
])
def test_value_errors(rest_port, body, expected):
    assert error(rest_port, "POST", PREDICT, body) == (400, expected)


def test_several_inputs_need_objects(rest_port):
    path = PREDICT
    body = {"signature_name": "add_with_default"}
    assert error(rest_port, "POST", path, {**body, "instances": [1.0, 2.0]}) == (
        400, "instances is a plain list, but expecting list of objects as multiple input "
             "tensors required as per tensorinfo_map")
    assert error(rest_port, "POST", path, {**body, "inputs": [1.0, 2.0]}) == (
        400, "inputs is a plain value/list, but expecting an object as multiple input tensors "
             "required as per tensorinfo_map")
    assert error(rest_port, "POST", path, {**body, "inputs": {"left": [1.0]}}) == (
        400, "Missing named input: right in 'inputs' object.")
    assert error(rest_port, "POST", path, {**body, "instances": [{"left": 1.0}]}) == (
        400, f"Failed to process element: 0 of 'instances' list. JSON object: "
             f"{pretty({'left': 1.0})} must only have keys: left,right")


def test_string_input_errors(rest_port):
    path = "/v1/models/text:predict"
    assert error(rest_port, "POST", path, {"instances": [{"b64": "%%%"}]}) == (
        400, "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
             "Unable to base64 decode")
    assert error(rest_port, "POST", path, {"inputs": [{"b64": "YQ==", "x": 1}]}) == (
        400, 'JSON Value: {\n    "b64": "YQ==",\n    "x": 1\n} not formatted correctly for '
             'base64 data')
    assert error(rest_port, "POST", path, {"inputs": {"text": [1]}}) == (
        400, "JSON Value: 1 Type: Number is not of expected type: string")
    assert error(rest_port, "POST", path, {"inputs": [["a"], {"b64": 1}]}) == (
        400, "JSON Value: {\n    \"b64\": 1\n} found at incorrect level: 2 in the JSON DOM. "
             "Expected at level: 2")


def test_errors_from_the_session_run_keep_their_code_and_text(rest_port):
    """The row format adds a batch dimension, which the scalar-input model refuses (the text is
    TensorFlow's, as over gRPC)."""
    status, message = error(rest_port, "POST", "/v1/models/spin:predict", {"instances": [3]})

    assert status == 400
    assert message.startswith("The second input must be a scalar, but it has shape [1]")


@pytest.mark.parametrize("body, expected", [
    ({"signature_name": "classify_x_to_y"},
     f"JSON Value: {pretty({'signature_name': 'classify_x_to_y'})} When method is classify, key "
     f"'examples' is expected and was not found"),
    ({"examples": {"x": 1.0}},
     f"JSON Value: {pretty({'examples': {'x': 1.0}})} Expecting 'examples' value to be an "
     f"list/array"),
    ({"examples": []}, f"JSON Value: {pretty({'examples': []})} 'examples' value is an empty "
                       f"array"),
    ({"examples": [1.0]}, "Example must be JSON object but got JSON Number"),
    ({"context": [1], "examples": [{}]}, "Example must be JSON object but got JSON Array"),
    ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
    ({"examples": [{"x": [[1.0]]}]}, "Feature: x has element with unexpected JSON type: Array"),
    ({"examples": [{"x": {"a": 1}}]}, "Feature: x has element with unexpected JSON type: Object"),
    ({"examples": [{"x": [1, "a"]}]},
     "Unexpected element type in feature: x expecting type: int64"),
    ({"examples": [{"x": ["a", 1.5]}]},
     "Unexpected element type in feature: x expecting type: bytes"),
    ({"examples": [{"x": [1.5, True]}]},
     "Unexpected element type in feature: x expecting type: float"),
    ({"examples": [{"x": 18446744073709551615}]},
     "Feature: x has uint64 element. Only int64 is supported."),
    ({"examples": [{"x": 1e39}]},
     "Cannot convert JSON value: 1e+39 to float without loss of precision."),
    ({"signature_name": "nope", "examples": [{"x": 1.0}]},
     "No signature was found with the name: nope"),
])
def test_classify_errors(rest_port, body, expected):
    assert error(rest_port, "POST", "/v1/models/half:classify", body) == (400, expected)


def test_regress_errors(rest_port):
    status, message = error(rest_port, "POST", "/v1/models/half:regress",
                            {"examples": [{"x": 1.0}]})
    assert status == 400  # FAILED_PRECONDITION: serving_default is a predict signature
    assert message.startswith("No regression inputs found in SignatureDef: inputs {")
    assert error(rest_port, "POST", "/v1/models/half:regress",
                 {"signature_name": "nope", "examples": [{"x": 1.0}]}) == (
        400, "No signature was found with the name: nope")
    assert error(rest_port, "POST", "/v1/models/half:regress", {}) == (
        400, "JSON Value: {} When method is classify, key 'examples' is expected and was not "
             "found")


class _FailingManager:
    """A ModelManager whose every servable lookup fails with one status."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    @contextlib.contextmanager
    def servable(self, model_spec):
        raise ServingError(self.code, f"failed with {self.code.name}")
        yield


@pytest.mark.parametrize("code, http_status", [
    (grpc.StatusCode.CANCELLED, 499), (grpc.StatusCode.UNKNOWN, 500),
    (grpc.StatusCode.INVALID_ARGUMENT, 400), (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.NOT_FOUND, 404), (grpc.StatusCode.ALREADY_EXISTS, 409),
    (grpc.StatusCode.PERMISSION_DENIED, 403), (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.FAILED_PRECONDITION, 400), (grpc.StatusCode.ABORTED, 409),
    (grpc.StatusCode.OUT_OF_RANGE, 400), (grpc.StatusCode.UNIMPLEMENTED, 501),
    (grpc.StatusCode.INTERNAL, 500), (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.DATA_LOSS, 500), (grpc.StatusCode.UNAUTHENTICATED, 401),
])
def test_http_status_of_every_code(code, http_status):
    """TF Serving's ToHTTPStatusCode, through the handler's error path."""
    from serving.metrics import Metrics

    handler = RestApiHandler(_FailingManager(code), metrics=Metrics())
    response = handler.handle("POST", "/v1/models/m:predict", b'{"instances": [1]}')

    assert HTTP_STATUS[code] == http_status
    assert (response.status, response.code) == (http_status, code)
    assert json.loads(response.body) == {"error": f"failed with {code.name}"}


@pytest.mark.parametrize("outputs, expected", [
    ({}, "Cannot convert empty tensor map to JSON"),
    ({"count": np.int64(3)}, "Tensor name: count has no shape information "),
    ({"y": np.zeros([0, 2], np.float32)}, "Tensor name: y has invalid batch size: 0"),
    ({"a": np.zeros([2], np.float32), "b": np.zeros([3], np.float32)},
     "Tensor name: b has inconsistent batch size: 3 expecting: 2"),
    ({"h": np.zeros([1], np.float16)}, "Failed to write JSON value for tensor type: half"),
])
def test_row_format_output_errors(outputs, expected):
    """TF Serving's MakeRowFormatJsonFromTensors checks, on outputs no test model makes."""
    protos = {name: tf.make_tensor_proto(value) for name, value in outputs.items()}
    with pytest.raises(ServingError) as raised:
        predict_response_json(protos, PredictFormat.ROW)
    assert (raised.value.code, raised.value.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                         expected)
