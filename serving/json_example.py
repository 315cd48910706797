"""JSON <-> Classify/Regress for the REST API, following TF Serving's `util/json_tensor.cc`.

Requests are `{"signature_name"?: str, "context"?: {feature: value}, "examples": [{feature:
value | [values]}, ...]}`; each object becomes a `tf.Example` (strings and `{"b64": ...}` ->
bytes_list, integers and booleans -> int64_list, decimals -> float_list). Responses are
`{"results": [[[label, score], ...], ...]}` (classify) and `{"results": [value, ...]}`
(regress).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving import json_tensor
from serving.json_tensor import invalid

_CONTEXT = "context"
_EXAMPLES = "examples"
_RESULTS = "results"  # kClassifyRegressResponseKey
_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64",
               None: "UNKNOWN"}


def _unexpected_type(name: str, value: Any):
    return invalid(f"Feature: {name} has element with unexpected JSON type: "
                   f"{json_tensor.json_type(value)}")


def _add_value(value: Any, name: str, feature) -> None:
    """TF Serving's `AddValueToFeature`."""

    def require(kind: str) -> None:
        current = feature.WhichOneof("kind")
        if current not in (None, kind):
            raise invalid(f"Unexpected element type in feature: {name} expecting type: "
                          f"{_KIND_NAMES[current]}")

    if value is None or isinstance(value, list):
        raise _unexpected_type(name, value)
    if isinstance(value, bool):
        require("int64_list")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, dict):
        if not json_tensor.is_base64_object(value):
            raise _unexpected_type(name, value)
        require("bytes_list")
        feature.bytes_list.value.append(json_tensor.decode_base64_object(value))
    elif isinstance(value, str):
        require("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif json_tensor.is_integer(value):
        require("int64_list")
        if value > (1 << 63) - 1:
            raise invalid(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(value)
    else:  # a decimal (or an integer too large for uint64, a double to rapidjson)
        require("float_list")
        error = json_tensor.lossy_decimal_error(value, "float")
        if error is not None:
            raise error
        feature.float_list.value.append(float(value))


def _fill_example(value: Any, example) -> None:
    """TF Serving's `MakeExampleFromJsonObject`."""
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_tensor.json_type(value)}")
    for name, content in value.items():
        feature = example.features.feature[name]
        feature.Clear()
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, name, feature)
        feature.SetInParent()


def fill_example_request(doc: dict, request) -> None:
    """TF Serving's `FillClassifyRegressRequestFromJson` into a Classification- or
    RegressionRequest (whose `model_spec` name/version are already set)."""
    json_tensor.read_signature_name(doc, request.model_spec)
    model_input = request.input
    has_context = _CONTEXT in doc
    if has_context:
        _fill_example(doc[_CONTEXT], model_input.example_list_with_context.context)
    if _EXAMPLES not in doc:
        raise json_tensor.format_error(
            doc, f"When method is classify, key '{_EXAMPLES}' is expected and was not found")
    examples = doc[_EXAMPLES]
    if not isinstance(examples, list):
        raise json_tensor.format_error(doc, f"Expecting '{_EXAMPLES}' value to be an list/array")
    if not examples:
        raise json_tensor.format_error(doc, f"'{_EXAMPLES}' value is an empty array")
    target = (model_input.example_list_with_context.examples if has_context
              else model_input.example_list.examples)
    for value in examples:
        _fill_example(value, target.add())


def _scores(values) -> list[float]:
    return json_tensor.float32_values(np.array(values, dtype=np.float32)).tolist()


def classification_json(result) -> dict:
    """TF Serving's `MakeJsonFromClassificationResult`."""
    if not result.classifications:
        raise invalid("Cannot convert empty ClassificationResults to JSON")
    return {_RESULTS: [
        [[cls.label, score] for cls, score in zip(
            classifications.classes, _scores([cls.score for cls in classifications.classes]))]
        for classifications in result.classifications]}


def regression_json(result) -> dict:
    """TF Serving's `MakeJsonFromRegressionResult`."""
    if not result.regressions:
        raise invalid("Cannot convert empty RegressionResults to JSON")
    return {_RESULTS: _scores([regression.value for regression in result.regressions])}
