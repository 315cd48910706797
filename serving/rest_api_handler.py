"""`RestApiHandler`: TF Serving's REST API (`model_servers/http_rest_api_handler.cc`) over a
`ModelManager`, independent of the HTTP server that carries it.

    GET  /v1/models/NAME[/versions/N | /labels/L]             -> GetModelStatus JSON
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata    -> GetModelMetadata JSON
    POST /v1/models/NAME[/versions/N | /labels/L]:predict     -> {"predictions"|"outputs": ...}
    POST /v1/models/NAME[/versions/N | /labels/L]:classify    -> {"results": [[[label, score]]]}
    POST /v1/models/NAME[/versions/N | /labels/L]:regress     -> {"results": [value, ...]}

Requests run through the same code as the gRPC services: `ModelManager.servable(model_spec)`
with `Servable.predict/classify/regress`, and `get_model_status` / `get_model_metadata`, so the
status codes and texts are the same. A failure answers `{"error": "<status message>"}` with
the HTTP code TF Serving maps the status code to (`ToHTTPStatusCode`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import urllib.parse

import grpc

from serving import json_example
from serving import json_tensor
from serving.metrics import Metrics
from serving.model_metadata import SIGNATURE_DEF
from serving.model_metadata import get_model_metadata
from serving.model_status import get_model_status
from serving.request_deadline import RequestDeadline
from serving.servable import DEFAULT_SIGNATURE
from serving.serving_error import ServingError

logger = logging.getLogger(__name__)

ENTRYPOINT = "REST"
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)", re.IGNORECASE)
_MODEL_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
_INT64_MAX = (1 << 63) - 1

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


@dataclasses.dataclass(frozen=True)
class RestResponse:
    """What to send back.

    Attributes:
        status: The HTTP status code.
        body: The JSON body (UTF-8).
        code: The status code of the request, as gRPC would report it.
        model_name: The model the request named ("" if none).
        api: The API for metrics: `predict`, `classify`, `regress`, `metadata` or `status`.
    """

    status: int
    body: bytes
    code: grpc.StatusCode = grpc.StatusCode.OK
    model_name: str = ""
    api: str = ""


@dataclasses.dataclass
class _Route:
    model_name: str = ""
    version: int | None = None
    label: str | None = None
    api: str = ""

    def fill(self, model_spec) -> None:
        """TF Serving's `FillModelSpecWithNameVersionAndLabel` (the path regexes make version
        and label exclusive)."""
        model_spec.name = self.model_name
        if self.version is not None:
            model_spec.version.value = self.version
        if self.label is not None:
            model_spec.version_label = self.label


def error_body(message: str) -> bytes:
    """TF Serving's `MakeJsonFromStatus`: `{"error": "<message>"}`."""
    return json.dumps({"error": message}, indent=4, ensure_ascii=False).encode("utf-8")


def _parse_route(method: str, path: str) -> _Route | None:
    """TF Serving's `ParseModelInfo`: the route, or None when the path does not match."""
    if method == "POST":
        match = _PREDICTION_PATH.fullmatch(path)
    elif method == "GET":
        match = _MODEL_PATH.fullmatch(path)
    else:
        return None
    if match is None:
        return None
    name, version, label, verb = match.groups()
    route = _Route(model_name=urllib.parse.unquote(name or ""))
    if version is not None:
        # More digits than an int64 has: refused before int() (which refuses thousands).
        number = int(version) if len(version.lstrip("0")) <= 19 else _INT64_MAX + 1
        if number > _INT64_MAX:
            raise json_tensor.invalid(f"Failed to convert version: {version} to numeric.")
        route.version = number
    if label is not None:
        route.label = urllib.parse.unquote(label)
    if method == "POST":
        route.api = verb  # compared case-sensitively below, as TF Serving does
    else:
        route.api = "metadata" if verb else "status"
    return route


def _json_text(message) -> dict:
    from google.protobuf import json_format

    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                     preserving_proto_field_name=True)


class RestApiHandler:
    """Answers REST requests the way `tensorflow_model_server`'s REST API does.

    Args:
        manager: The `ModelManager` serving the models.
        timeout_in_ms: `--rest_api_timeout_in_ms`: the deadline of a request's session runs
            (0 or less: none).
        metrics: Where requests are counted; default `Metrics.default()`.
    """

    def __init__(self, manager, *, timeout_in_ms: int = 30000,
                 metrics: Metrics | None = None) -> None:
        self._manager = manager
        self._timeout_seconds = timeout_in_ms / 1000 if timeout_in_ms > 0 else None
        self._metrics = metrics or Metrics.default()

    def handle(self, method: str, path: str, body: bytes) -> RestResponse:
        """Runs one request (`path` without the query string) and counts it in the metrics."""
        start = time.perf_counter()
        route = None
        try:
            route = _parse_route(method, path)
            with RequestDeadline.scope(self._timeout_seconds):
                payload = self._dispatch(method, path, route, body)
            response = RestResponse(200, payload, grpc.StatusCode.OK)
        except ServingError as error:
            response = RestResponse(HTTP_STATUS.get(error.code, 500), error_body(error.message),
                                    error.code)
        except Exception as error:  # noqa: BLE001  (every request gets an answer)
            logger.exception("REST request %s %s failed", method, path)
            response = RestResponse(500, error_body(f"{type(error).__name__}: {error}"),
                                    grpc.StatusCode.INTERNAL)
        if route is not None:
            response = dataclasses.replace(response, model_name=route.model_name, api=route.api)
        self._metrics.record_request(response.model_name, response.api, ENTRYPOINT,
                                     response.code, time.perf_counter() - start)
        return response

    def _dispatch(self, method: str, path: str, route: _Route | None, body: bytes) -> bytes:
        if route is not None and method == "POST":
            if route.api == "predict":
                return self._predict(route, body)
            if route.api in ("classify", "regress"):
                return self._classify_or_regress(route, body)
        elif route is not None and method == "GET":
            if not route.model_name:
                raise json_tensor.invalid("Missing model name in request.")
            if route.api == "metadata":
                return self._metadata(route)
            return self._status(route)
        raise json_tensor.invalid(f"Malformed request: {method} {path}")

    def _predict(self, route: _Route, body: bytes) -> bytes:
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        route.fill(request.model_spec)
        doc = json_tensor.parse_json(body)
        json_tensor.read_signature_name(doc, request.model_spec)
        with self._manager.servable(request.model_spec) as servable:

            def input_infos(signature_name: str):  # TF Serving's GetInfoMap
                name = signature_name or DEFAULT_SIGNATURE
                signatures = servable.signature_def_map.signature_def
                if name not in signatures:
                    raise json_tensor.invalid(
                        f'Serving signature name: "{name}" not found in signature def')
                return signatures[name].inputs

            response_format = json_tensor.fill_predict_request(doc, input_infos, request)
            response = servable.predict(request)
        return json_tensor.dumps(
            json_tensor.predict_response_json(response.outputs, response_format))

    def _classify_or_regress(self, route: _Route, body: bytes) -> bytes:
        from tensorflow_serving.apis import classification_pb2
        from tensorflow_serving.apis import regression_pb2

        classify = route.api == "classify"
        request = (classification_pb2.ClassificationRequest() if classify
                   else regression_pb2.RegressionRequest())
        route.fill(request.model_spec)
        json_example.fill_example_request(json_tensor.parse_json(body), request)
        with self._manager.servable(request.model_spec) as servable:
            if classify:
                result = json_example.classification_json(servable.classify(request).result)
            else:
                result = json_example.regression_json(servable.regress(request).result)
        model_input = request.input
        examples = getattr(model_input, model_input.WhichOneof("kind")).examples
        self._metrics.record_example_count(route.model_name, len(examples))
        return json_tensor.dumps(result)

    def _status(self, route: _Route) -> bytes:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        route.fill(request.model_spec)
        response = get_model_status(self._manager, request)
        return json.dumps(_json_text(response), indent=1).encode("utf-8")

    def _metadata(self, route: _Route) -> bytes:
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF])
        route.fill(request.model_spec)
        response = get_model_metadata(self._manager, request)
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata[SIGNATURE_DEF].Unpack(signature_def_map):
            raise ServingError(grpc.StatusCode.INTERNAL,
                               "Failed to unpack 'Any' object to 'SignatureDefMap'.")
        document = {"model_spec": _json_text(response.model_spec),
                    "metadata": {SIGNATURE_DEF: _json_text(signature_def_map)}}
        return json.dumps(document, indent=1).encode("utf-8")
