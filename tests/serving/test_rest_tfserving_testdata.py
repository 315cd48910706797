"""TF Serving's own test SavedModels over the REST API, with the requests and answers of its
`http_rest_api_handler_test.cc` and `g3doc/api_rest.md`.

Skipped when ../shared/tfserving-testdata is absent."""

from __future__ import annotations

import json

import pytest

from tests.serving.models import TESTDATA
from tests.serving.models import rest_json
from tests.serving.models import tfserving_testdata

TWO_VERSIONS = "saved_model_half_plus_two_2_versions"


@pytest.fixture(scope="module")
def port():
    from serving import Server
    from serving.server_options import ANY_FREE_PORT
    from serving.version_policy import VersionPolicy

    server = Server({"default": tfserving_testdata("saved_model_half_plus_two_cpu"),
                     TWO_VERSIONS: tfserving_testdata(TWO_VERSIONS),
                     "tf2": tfserving_testdata("saved_model_half_plus_two_tf2_cpu")},
                    version_policy=VersionPolicy.parse("all"), port=0,
                    rest_api_port=ANY_FREE_PORT, file_system_poll_wait_seconds=0).start()
    yield server.rest_port
    server.stop(grace=5)


def test_predict_instances(port):
    assert rest_json(port, "POST", "/v1/models/default:predict",
                     {"instances": [1.0, 2.0, 5.0]}) == (200, {"predictions": [2.5, 3.0, 4.5]})


@pytest.mark.parametrize("path", [f"/v1/models/{TWO_VERSIONS}:predict",
                                  f"/v1/models/{TWO_VERSIONS}/versions/123:predict"])
def test_predict_as_tf_serving_tests_do(port, path):
    assert rest_json(port, "POST", path, {"instances": [[1.0, 2.0], [3.0, 4.0]]}) == (
        200, {"predictions": [[2.5, 3.0], [3.5, 4.0]]})
    assert rest_json(port, "POST", path, {"signature_name": "serving_default",
                                          "inputs": [3.0, 4.0]}) == (
        200, {"outputs": [3.5, 4.0]})


def test_predict_tf2_model(port):
    assert rest_json(port, "POST", "/v1/models/tf2:predict", {"instances": [[2.0]]}) == (
        200, {"predictions": [[3.0]]})


def test_classify_through_classify_x_to_y(port):
    assert rest_json(port, "POST", "/v1/models/default:classify", {
        "signature_name": "classify_x_to_y", "examples": [{"x": 20.0}, {"x": 10.0}]}) == (
        200, {"results": [[["", 12.0]], [["", 7.0]]]})


def test_regress_through_regress_x_to_y(port):
    assert rest_json(port, "POST", f"/v1/models/{TWO_VERSIONS}/versions/123:regress", {
        "signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}) == (
        200, {"results": [42.0]})


def test_status(port):
    assert rest_json(port, "GET", "/v1/models/default") == (200, {"model_version_status": [
        {"version": "123", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]})
    status, body = rest_json(port, "GET", f"/v1/models/{TWO_VERSIONS}")
    assert status == 200
    assert [v["version"] for v in body["model_version_status"]] == ["124", "123"]


@pytest.mark.parametrize("path, expected_file", [
    ("/v1/models/default/metadata", "half_plus_two_model_metadata.json"),
    (f"/v1/models/{TWO_VERSIONS}/versions/123/metadata",
     "saved_model_half_plus_two_2_versions_metadata.json"),
])
def test_metadata_equals_tf_servings_json(port, path, expected_file):
    expected = json.loads((TESTDATA / expected_file).read_text())

    assert rest_json(port, "GET", path) == (200, expected)
