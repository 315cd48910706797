"""JSON <-> tensors for REST Predict, following TF Serving's `util/json_tensor.cc`.

Requests are read in the row format (`{"instances": [...]}`) or the columnar format
(`{"inputs": ...}`) and turned into the `TensorProto`s of a `PredictRequest`, typed by the
signature's `TensorInfo` (TF Serving's `GetInfoMap`). Responses are written as
`{"predictions": [...]}` or `{"outputs": ...}`. Binary strings travel as `{"b64": "..."}`
(inputs of a string signature input, outputs whose alias ends in `_bytes`); `NaN`,
`Infinity` and `-Infinity` are accepted and written. Error texts are TF Serving's.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
from typing import Any, Callable, Mapping

import grpc
import numpy as np

from serving import tensor_codec
from serving.serving_error import ServingError

SIGNATURE_KEY = "signature_name"
_INSTANCES = "instances"
_INPUTS = "inputs"
_BASE64_KEY = "b64"
_BYTES_SUFFIX = "_bytes"
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT32_MAX = (1 << 32) - 1
_UINT64_MAX = (1 << 64) - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# The largest integers a float / double holds exactly (IsLosslessDecimal's kMaxInt).
_MAX_EXACT_INT = {"float": (1 << 24) - 1, "double": (1 << 53) - 1}
# Longest text of a request value quoted in an error message (TF Serving quotes it whole).
MAX_VALUE_TEXT = 16 * 1024
_PRETTY = json.JSONEncoder(indent=4, ensure_ascii=False)
# A tensor has at most `_MAX_RANK` dimensions (numpy's limit; TF allows 254): a deeper JSON list
# is refused before it is walked.
_MAX_RANK = 64
_LONG_NUMBER = re.compile(r"[0-9]{1000,}")
# rapidjson's messages for the parse errors Python's json module reports.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Extra data": "The document root must not be followed by other values.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
}


class PredictFormat(enum.Enum):
    """Which request format a Predict used; the response is written in the same one."""

    ROW = "instances"  # -> {"predictions": [...]}
    COLUMNAR = "inputs"  # -> {"outputs": ...}


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def status_text(error: ServingError) -> str:
    """A nested status as `absl::Status::ToString` prints it: `INVALID_ARGUMENT: <message>`."""
    return f"{error.code.name}: {error.message}"


def dtype_string(dtype: int) -> str:
    """TF's `DataTypeString`: `DT_FLOAT` -> `float`, `DT_INT64` -> `int64`."""
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(dtype)[len("DT_"):].lower()
    except ValueError:
        return f"unknown dtype enum ({dtype})"


# -- reading JSON ------------------------------------------------------------------------------

def parse_json(body: bytes | str) -> dict:
    """TF Serving's `ParseJson`: a JSON object, with NaN/Infinity allowed.

    Raises:
        ServingError: INVALID_ARGUMENT `JSON Parse error: ...` or `JSON Value: ... Is not object`.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise invalid(f"JSON Parse error: Invalid encoding in string. at offset: "
                          f"{error.start}") from None
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    if not body.strip():
        raise invalid(f"JSON Parse error: The document is empty. at offset: {len(body)}")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as error:
        message = _PARSE_ERRORS.get(error.msg, error.msg)
        raise invalid(f"JSON Parse error: {message} at offset: {error.pos}") from None
    except RecursionError:
        raise invalid("JSON Parse error: Invalid value. at offset: 0 (the document is nested "
                      "too deeply)") from None
    except ValueError:  # an integer of more digits than Python converts (sys.int_info)
        digits = _LONG_NUMBER.search(body)
        raise invalid(f"JSON Parse error: Number too big to be stored in double. at offset: "
                      f"{digits.start() if digits else 0}") from None
    if not isinstance(doc, dict):
        raise format_error(doc, "Is not object")
    return doc


def value_string(value: Any) -> str:
    """TF Serving's `JsonValueToString`: the value as rapidjson's PrettyWriter writes it.

    Error messages quote request values with it: past `MAX_VALUE_TEXT` characters the text is
    cut (`...TRUNCATED`), so that a huge or deeply nested request cannot make its error message
    cost more than the request.
    """
    parts, size = [], 0
    try:
        for chunk in _PRETTY.iterencode(value):  # lazily: stops at the limit
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_VALUE_TEXT:
                break
    except (RecursionError, ValueError):
        parts.append(" ...")
        size = MAX_VALUE_TEXT + 1
    text = "".join(parts)
    return text[:MAX_VALUE_TEXT] + "...TRUNCATED" if size > MAX_VALUE_TEXT else text


def json_type(value: Any) -> str:
    """TF Serving's `JsonTypeString`."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def format_error(value: Any, *parts: str) -> ServingError:
    return invalid(f"JSON Value: {value_string(value)} " + "".join(parts))


def _type_error(value: Any, dtype: int) -> ServingError:
    return invalid(f"JSON Value: {value_string(value)} Type: {json_type(value)} is not of "
                   f"expected type: {dtype_string(dtype)}")


def read_signature_name(doc: dict, model_spec) -> None:
    """TF Serving's `FillSignature`: the optional `signature_name` into `model_spec`."""
    if SIGNATURE_KEY in doc:
        name = doc[SIGNATURE_KEY]
        if not isinstance(name, str):
            raise invalid(f"JSON Value: {value_string(doc)} not formatted correctly. "
                          f"'signature_name' key must be a string value.")
        model_spec.signature_name = name


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An integer as rapidjson stores it (integers beyond uint64 become doubles)."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and _INT64[0] <= value <= _UINT64_MAX)


def lossy_decimal_error(value: Any, target: str) -> ServingError | None:
    """TF Serving's `IsLosslessDecimal` check for `target` ("float" or "double")."""
    if is_integer(value):
        if abs(value) <= _MAX_EXACT_INT[target]:
            return None
    elif isinstance(value, float) and (not math.isfinite(value) or target == "double"
                                       or -_FLOAT32_MAX <= value <= _FLOAT32_MAX):
        return None
    return invalid(f"Cannot convert JSON value: {value_string(value)} to {target} without "
                   f"loss of precision.")


def is_base64_object(value: Any) -> bool:
    """`{"b64": "<string>"}` and nothing else."""
    return (isinstance(value, dict) and len(value) == 1
            and isinstance(value.get(_BASE64_KEY), str))


def decode_base64_object(value: Any) -> bytes:
    """TF Serving's `JsonDecodeBase64Object`."""
    if not is_base64_object(value):
        raise invalid(f"JSON Value: {value_string(value)} not formatted correctly for base64 "
                      f"data")
    text = value[_BASE64_KEY]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Unable to base64 decode") from None


def _checked_value(value: Any, dtype: int):
    """TF Serving's `AddValueToTensor`: the value to store, or a ServingError."""
    from tensorflow.core.framework import types_pb2 as t

    if dtype in (t.DT_FLOAT, t.DT_DOUBLE):
        if not is_number(value):
            raise _type_error(value, dtype)
        error = lossy_decimal_error(value, "float" if dtype == t.DT_FLOAT else "double")
        if error is not None:
            raise error
        return float(value)
    if dtype in (t.DT_INT32, t.DT_INT16, t.DT_INT8, t.DT_UINT8):
        ok = is_integer(value) and _INT32[0] <= value <= _INT32[1]
    elif dtype == t.DT_INT64:
        ok = is_integer(value) and value <= _INT64[1]
    elif dtype == t.DT_UINT32:
        ok = is_integer(value) and 0 <= value <= _UINT32_MAX
    elif dtype == t.DT_UINT64:
        ok = is_integer(value) and value >= 0
    elif dtype == t.DT_BOOL:
        ok = isinstance(value, bool)
    elif dtype == t.DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    else:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           f"Conversion of JSON Value: {value_string(value)} to type: "
                           f"{dtype_string(dtype)}")
    if not ok:
        raise _type_error(value, dtype)
    return value


def _dense_shape(value: Any) -> list[int]:
    """TF Serving's `GetDenseTensorShape`: sizes of the first elements, level by level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill_values(value: Any, level: int, shape: list[int], dtype: int, out: list) -> None:
    """TF Serving's `FillTensorProto`: flattens `value`, checking it is dense with `shape`."""
    from tensorflow.core.framework import types_pb2

    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid(f"JSON Value: {value_string(value)} found at incorrect level: "
                          f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        if isinstance(value, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(value, dtype)
            out.append(decode_base64_object(value))
        else:
            out.append(_checked_value(value, dtype))
        return
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid(f"Encountered list at unexpected size: {len(value)} at level: {level} "
                      f"expected size: {shape[level]}")
    for item in value:
        _fill_values(item, level + 1, shape, dtype, out)


def _dense_values(value: Any, dtype: int) -> tuple[list[int], list]:
    shape = _dense_shape(value)
    if len(shape) > _MAX_RANK:
        raise invalid(f"JSON Value: a list nested {len(shape)} levels deep; a tensor has at "
                      f"most {_MAX_RANK} dimensions")
    values: list = []
    _fill_values(value, 0, shape, dtype, values)
    return shape, values


def _tensor_proto(shape: list[int], values: list, dtype: int):
    """Typed values -> `TensorProto` (typed repeated field, like TF Serving's JSON reader)."""
    import tensorflow as tf

    np_dtype = object if dtype == tf.string.as_datatype_enum else (
        tf.dtypes.as_dtype(dtype).as_numpy_dtype)
    try:
        array = np.array(values, dtype=np_dtype).reshape(shape)
    except (OverflowError, ValueError) as error:
        raise invalid(f"Cannot convert JSON values to {dtype_string(dtype)}: {error}") from None
    return tensor_codec.to_tensor_proto(array)


def _fill_from_instances(instances: list, infos: Mapping, inputs) -> None:
    """TF Serving's `FillTensorMapFromInstancesList`."""
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple "
                      "input tensors required as per tensorinfo_map")

    def is_element_object(value: Any) -> bool:
        return isinstance(value, dict) and not is_base64_object(value)

    objects = is_element_object(instances[0])
    names = sorted(infos)
    collected: dict[str, list] = {}
    shapes: dict[str, list[int]] = {}

    def add(item: Any, name: str) -> None:  # AddInstanceItem
        if name not in infos:
            raise invalid(f"JSON object: does not have named input: {name}")
        shape, values = _dense_values(item, infos[name].dtype)
        if name not in shapes:
            shapes[name] = shape
            collected[name] = values
            return
        expected = math.prod(shapes[name])
        if expected != len(values):
            raise invalid(f"Expecting tensor size: {expected} but got: {len(values)}")
        if shapes[name] != shape:
            raise invalid(f"Expecting shape {_shape_text(shapes[name])} but got: "
                          f"{_shape_text(shape)}")
        collected[name].extend(values)

    for index, element in enumerate(instances):
        if objects:
            if not is_element_object(element):
                raise invalid(f"Expecting object but got list at item {index} of input list")
            for name, item in element.items():
                try:
                    add(item, name)
                except ServingError as error:
                    raise invalid(f"Failed to process element: {index} key: {name} of "
                                  f"'instances' list. Error: {status_text(error)}") from None
            if set(element) != set(names):
                raise invalid(f"Failed to process element: {index} of 'instances' list. JSON "
                              f"object: {value_string(element)} must only have keys: "
                              f"{','.join(names)}")
        else:
            if is_element_object(element):
                raise invalid(f"Expecting value/list but got object at item {index} of input "
                              f"list")
            try:
                add(element, names[0])
            except ServingError as error:
                raise invalid(f"Failed to process element: {index} of 'instances' list. "
                              f"Error: {status_text(error)}") from None
    for name, values in collected.items():
        inputs[name].CopyFrom(_tensor_proto([len(instances)] + shapes[name], values,
                                            infos[name].dtype))


def _fill_from_inputs(value: Any, infos: Mapping, inputs) -> None:
    """TF Serving's `FillTensorMapFromInputsMap`."""
    if not isinstance(value, dict) or is_base64_object(value):
        if len(infos) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as multiple "
                          "input tensors required as per tensorinfo_map")
        (name,) = infos
        dtype = infos[name].dtype
        inputs[name].CopyFrom(_tensor_proto(*_dense_values(value, dtype), dtype))
        return
    for name in sorted(infos):
        if name not in value:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        dtype = infos[name].dtype
        inputs[name].CopyFrom(_tensor_proto(*_dense_values(value[name], dtype), dtype))


def fill_predict_request(doc: dict, get_input_infos: Callable[[str], Mapping],
                         request) -> PredictFormat:
    """TF Serving's `FillPredictRequestFromJson` (after the signature name was read).

    Args:
        doc: The parsed request body.
        get_input_infos: Signature name -> its inputs' `TensorInfo` map (`GetInfoMap`).
        request: The `PredictRequest` whose `model_spec` is filled; its inputs are set here.

    Returns:
        The request format, which the response must use.
    """
    signature_name = request.model_spec.signature_name
    infos = get_input_infos(signature_name)
    if not infos:
        raise invalid(f"Failed to get input map for signature: "
                      f"{signature_name or 'DEFAULT'}")
    if _INSTANCES in doc:
        if _INPUTS in doc:
            raise format_error(doc, "Not formatted correctly expecting only one of 'inputs' or "
                                    "'instances' keys to exist ")
        instances = doc[_INSTANCES]
        if not isinstance(instances, list):
            raise format_error(doc, "Excepting 'instances' to be an list/array")
        if not instances:
            raise format_error(doc, "No values in 'instances' array")
        _fill_from_instances(instances, infos, request.inputs)
        return PredictFormat.ROW
    if _INPUTS in doc:
        _fill_from_inputs(doc[_INPUTS], infos, request.inputs)
        return PredictFormat.COLUMNAR
    raise invalid("Missing 'inputs' or 'instances' key")


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


# -- writing JSON ------------------------------------------------------------------------------

def float32_values(array: np.ndarray) -> np.ndarray:
    """float32 values as the doubles of their shortest decimal form, so that JSON shows
    `0.1` (as TF Serving's `WriteDecimal`) and not `0.10000000149011612`."""
    return np.asarray(array, dtype=np.float32).astype(str).astype(np.float64)


def _json_values(name: str, array: np.ndarray) -> Any:
    """A tensor as nested lists of JSON values (TF Serving's `AddTensorValues`)."""
    kind = array.dtype
    if kind == np.float32:
        return float32_values(array).tolist()
    if kind in (np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32,
                np.uint64, np.bool_):
        return array.tolist()
    if kind.kind in ("O", "S", "U"):
        as_bytes = name.endswith(_BYTES_SUFFIX)

        def convert(value):
            if isinstance(value, str):
                value = value.encode("utf-8")
            if as_bytes:
                return {_BASE64_KEY: base64.b64encode(value).decode("ascii")}
            return value.decode("utf-8", errors="replace")

        return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else (
            array.tolist())
    import tensorflow as tf

    raise invalid(f"Failed to write JSON value for tensor type: "
                  f"{dtype_string(tf.as_dtype(kind).as_datatype_enum)}")


def predict_response_json(outputs: Mapping, response_format: PredictFormat) -> dict:
    """TF Serving's `MakeJsonFromTensors`: the JSON object of a `PredictResponse.outputs`."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    arrays = {name: tensor_codec.to_ndarray(outputs[name]) for name in sorted(outputs)}
    if response_format is PredictFormat.COLUMNAR:
        values = {name: _json_values(name, array) for name, array in arrays.items()}
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    batch_size = 0
    for name, array in arrays.items():
        if array.ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information ")
        if array.shape[0] < 1:
            raise invalid(f"Tensor name: {name} has invalid batch size: {array.shape[0]}")
        if batch_size and array.shape[0] != batch_size:
            raise invalid(f"Tensor name: {name} has inconsistent batch size: "
                          f"{array.shape[0]} expecting: {batch_size}")
        batch_size = array.shape[0]
    values = {name: _json_values(name, array) for name, array in arrays.items()}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: rows[i] for name, rows in values.items()}
                            for i in range(batch_size)]}


def dumps(value: Any) -> bytes:
    """The response body: JSON with NaN/Infinity tokens, UTF-8."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8")
