"""REST API on the test models: predict (row and columnar), classify, regress, status and
metadata, strings and binary data, versions, NaN/Infinity."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from tests.serving.models import expected_probabilities
from tests.serving.models import rest_json
from tests.serving.models import rest_request


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def test_predict_row_format(rest_port):
    status, body = rest_json(rest_port, "POST", "/v1/models/half:predict",
                             {"instances": [[1.0], [2.0], [5.0]]})

    assert status == 200
    assert body == {"predictions": [[2.5], [3.0], [4.5]]}


def test_predict_row_format_with_flat_instances_like_tf_serving(rest_port):
    """TF Serving does not check request shapes: [3] is fed to the [-1, 1] signature."""
    status, body = rest_json(rest_port, "POST", "/v1/models/half:predict",
                             {"instances": [1.0, 2.0, 5.0]})

    assert (status, body) == (200, {"predictions": [2.5, 3.0, 4.5]})


@pytest.mark.parametrize("inputs", [[[1.0], [3.0]], {"x": [[1.0], [3.0]]}],
                         ids=["plain", "named"])
def test_predict_columnar_format(rest_port, inputs):
    status, body = rest_json(rest_port, "POST", "/v1/models/half:predict", {"inputs": inputs})

    assert (status, body) == (200, {"outputs": [[2.5], [3.5]]})


def test_several_outputs_are_objects_per_row_and_named_columns(rest_port):
    row = rest_json(rest_port, "POST", "/v1/models/half:predict",
                    {"signature_name": "two_outputs", "instances": [[1.0], [2.0]]})
    column = rest_json(rest_port, "POST", "/v1/models/half:predict",
                       {"signature_name": "two_outputs", "inputs": [[1.0], [2.0]]})

    assert row == (200, {"predictions": [{"x_copy": [1.0], "y": [2.5]},
                                         {"x_copy": [2.0], "y": [3.0]}]})
    assert column == (200, {"outputs": {"x_copy": [[1.0], [2.0]], "y": [[2.5], [3.0]]}})


def test_several_inputs_as_objects_per_row_and_named_columns(rest_port):
    row = rest_json(rest_port, "POST", "/v1/models/half:predict",
                    {"signature_name": "add_with_default",
                     "instances": [{"left": 1.0, "right": 2.0}, {"left": 3.0, "right": 4.0}]})
    column = rest_json(rest_port, "POST", "/v1/models/half:predict",
                       {"signature_name": "add_with_default",
                        "inputs": {"left": [1.0, 3.0], "right": [2.0, 4.0]}})

    assert row == (200, {"predictions": [3.0, 7.0]})
    assert column == (200, {"outputs": [3.0, 7.0]})


def test_versions_and_the_latest_version(rest_port):
    latest = rest_json(rest_port, "POST", "/v1/models/tf2:predict", {"instances": [1.5]})
    pinned = rest_json(rest_port, "POST", "/v1/models/tf2/versions/2:predict",
                       {"instances": [1.5]})
    unloaded = rest_json(rest_port, "POST", "/v1/models/tf2/versions/1:predict",
                         {"instances": [1.5]})

    assert latest == pinned == (200, {"predictions": [3.0]})
    assert unloaded == (404, {"error": "Servable not found for request: Specific(tf2, 1)"})


def test_float32_outputs_are_written_in_their_shortest_form(rest_port):
    """0.1f is written 0.1 (TF Serving's WriteDecimal), not 0.10000000149011612."""
    status, _, payload = rest_request(rest_port, "POST", "/v1/models/tf2:predict",
                                      {"instances": [0.05, 3.0]})

    assert status == 200
    assert payload == b'{"predictions": [0.1, 6.0]}'


def test_nan_and_infinity_in_and_out(rest_port):
    status, _, payload = rest_request(rest_port, "POST", "/v1/models/half:predict",
                                      '{"instances": [NaN, Infinity, -Infinity]}')

    assert status == 200
    assert payload == b'{"predictions": [NaN, Infinity, -Infinity]}'
    values = json.loads(payload)["predictions"]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]


def test_string_signature_with_text_and_base64_inputs(rest_port):
    text = rest_json(rest_port, "POST", "/v1/models/tf2:predict",
                     {"signature_name": "greet", "instances": ["bob", "ann"]})
    binary = rest_json(rest_port, "POST", "/v1/models/tf2:predict",
                       {"signature_name": "greet", "inputs": [b64(b"bob"), b64(b"ann")]})

    assert text == (200, {"predictions": [{"greeting": "hello bob", "length": 3},
                                          {"greeting": "hello ann", "length": 3}]})
    assert binary == (200, {"outputs": {"greeting": ["hello bob", "hello ann"],
                                        "length": [3, 3]}})


def test_bytes_outputs_are_base64_objects(rest_port):
    data = bytes([0, 255, 10, 128])
    status, body = rest_json(rest_port, "POST", "/v1/models/bytes:predict",
                             {"instances": [b64(data), b64(b"")]})

    assert status == 200
    assert body == {"predictions": [{"echo_bytes": b64(data), "size": 4},
                                    {"echo_bytes": b64(b""), "size": 0}]}


def test_text_classifier_like_an_exported_tfinetune_model(rest_port):
    status, body = rest_json(rest_port, "POST", "/v1/models/text:predict",
                             {"instances": ["a good movie", "bad"]})

    assert status == 200
    first, second = body["predictions"]
    assert first["label"] == "positive" and second["label"] == "negative"
    assert first["label_id"] == 1 and first["classes"] == ["negative", "positive"]
    np.testing.assert_allclose(first["probabilities"], expected_probabilities("a good movie"),
                               rtol=1e-6)


def test_pair_classifier_with_named_instances(rest_port):
    status, body = rest_json(rest_port, "POST", "/v1/models/pair:predict", {
        "instances": [{"text": "fine", "text_pair": "good good"},
                      {"text": b64(b"bad"), "text_pair": "ok"}]})

    assert status == 200
    assert [row["label"] for row in body["predictions"]] == ["positive", "negative"]
    np.testing.assert_allclose(body["predictions"][0]["probabilities"],
                               expected_probabilities("fine", "good good"), rtol=1e-6)


def test_scalar_input_and_output_in_columnar_format(rest_port):
    status, body = rest_json(rest_port, "POST", "/v1/models/spin:predict", {"inputs": 5})

    assert (status, body) == (200, {"outputs": 5})


def test_classify(rest_port):
    status, body = rest_json(rest_port, "POST", "/v1/models/half:classify", {
        "signature_name": "classify_x_to_y", "examples": [{"x": 1.0}, {"x": [3.0]}]})

    assert status == 200
    assert body == {"results": [[["low", 2.5], ["high", 5.0]], [["low", 3.5], ["high", 7.0]]]}


def test_regress_with_context(rest_port):
    status, body = rest_json(rest_port, "POST", "/v1/models/half/versions/1:regress", {
        "signature_name": "regress_x_to_y", "context": {"unused": ["a", "b"]},
        "examples": [{"x": 2.0}, {"x": 80.0}]})

    assert (status, body) == (200, {"results": [3.0, 42.0]})


def test_status(rest_port):
    expected = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                          "error_message": ""}}]}

    assert rest_json(rest_port, "GET", "/v1/models/half") == (200, expected)
    assert rest_json(rest_port, "GET", "/v1/models/half/versions/1") == (200, expected)
    assert rest_json(rest_port, "GET", "/V1/MODELS/half/labels/any") == (200, expected)


def test_status_lists_every_version(rest_port):
    status, body = rest_json(rest_port, "GET", "/v1/models/tf2")

    assert status == 200
    assert [entry["version"] for entry in body["model_version_status"]] == ["2"]


def test_metadata_matches_grpc_get_model_metadata(rest_port, prediction_stub):
    status, body = rest_json(rest_port, "GET", "/v1/models/half/versions/1/metadata")

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half"
    response = prediction_stub.GetModelMetadata(request, timeout=30)
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_def_map)
    assert status == 200
    assert body["model_spec"] == {"name": "half", "signature_name": "", "version": "1"}
    assert body["metadata"]["signature_def"] == json_format.MessageToDict(
        signature_def_map, always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True)
    assert set(body["metadata"]["signature_def"]["signature_def"]) == {
        "serving_default", "two_outputs", "classify_x_to_y", "regress_x_to_y",
        "add_with_default"}


def test_url_encoded_model_name(rest_port):
    status, body = rest_json(rest_port, "GET", "/v1/models/h%61lf")

    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"


def test_version_labels_from_a_model_config_file(model_bases, tmp_path):
    from serving import Server
    from serving.server_options import ANY_FREE_PORT

    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{ config {{
        name: "tf2" base_path: "{model_bases['tf2']}" model_platform: "tensorflow"
        model_version_policy {{ all {{}} }}
        version_labels {{ key: "stable" value: 1 }} version_labels {{ key: "canary" value: 2 }}
    }} }}""")
    with Server(port=0, rest_api_port=ANY_FREE_PORT, file_system_poll_wait_seconds=0,
                model_config_file=str(config)) as server:
        port = server.rest_port
        stable = rest_json(port, "POST", "/v1/models/tf2/labels/stable:predict",
                           {"instances": [3.0]})
        canary = rest_json(port, "POST", "/v1/models/tf2/labels/canary:predict",
                           {"instances": [3.0]})
        metadata = rest_json(port, "GET", "/v1/models/tf2/labels/stable/metadata")
        status = rest_json(port, "GET", "/v1/models/tf2/labels/stable")

    assert stable == (200, {"predictions": [3.0]})
    assert canary == (200, {"predictions": [6.0]})
    assert metadata[1]["model_spec"]["version"] == "1"
    # As TF Serving's GetModelStatus, a label does not narrow the status.
    assert [v["version"] for v in status[1]["model_version_status"]] == ["2", "1"]
