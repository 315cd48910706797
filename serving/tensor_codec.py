"""Conversions between `TensorProto` and numpy arrays, the way TF Serving's C++ does them.

Responses are written like `Tensor::AsProtoField` (TF Serving's default): values in the typed
repeated field (`float_val`, `int64_val`, `string_val`, ...), so that clients reading
`outputs["y"].float_val` work; with `--enable_serialization_as_tensor_content`, like
`Tensor::AsProtoTensorContent`: the raw little-endian values in `tensor_content` (strings as
TF's `EncodeStringList`: every length as a varint32, then the bytes). Requests are read with
`tf.make_ndarray`, which follows `Tensor::FromProto` (short repeated fields are padded with their
last value), and string `tensor_content` is decoded as `Tensor::FromProto` decodes it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2

# Padding a few values up to a huge declared shape must not exhaust memory (C++ would fail the
# allocation and report a parsing error).
_MAX_ELEMENTS = 1 << 31

# numpy dtype -> (DataType, repeated field, conversion of the flat array to field values)
_FIELD_ENCODINGS = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val", lambda a: a.tolist()),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val", lambda a: a.tolist()),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val", lambda a: a.tolist()),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val", lambda a: a.tolist()),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val", lambda a: a.tolist()),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val", lambda a: a.tolist()),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val", lambda a: a.tolist()),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val", lambda a: a.tolist()),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val", lambda a: a.tolist()),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val", lambda a: a.tolist()),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val", lambda a: a.tolist()),
    np.dtype(np.float16): (types_pb2.DT_HALF, "half_val", lambda a: a.view(np.uint16).tolist()),
    np.dtype(np.complex64): (
        types_pb2.DT_COMPLEX64, "scomplex_val", lambda a: a.view(np.float32).tolist()),
    np.dtype(np.complex128): (
        types_pb2.DT_COMPLEX128, "dcomplex_val", lambda a: a.view(np.float64).tolist()),
}


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Reads a request tensor.

    Raises:
        ValueError: when the proto cannot be turned into a tensor (bad dtype, negative or
            oversized shape, more values than the shape holds, truncated `tensor_content`).
    """
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(size < 0 for size in dims):
        raise ValueError(f"invalid tensor shape {dims}")
    if int(np.prod(dims, dtype=np.float64)) > _MAX_ELEMENTS:
        raise ValueError(f"tensor shape {dims} has too many elements")
    if proto.dtype == types_pb2.DT_STRING and proto.tensor_content:
        return _decode_string_list(proto.tensor_content, dims)
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001  (TypeError, ValueError from numpy)
        raise ValueError(str(error)) from error


def _encode_varint32(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _encode_string_list(values: list[bytes]) -> bytes:
    """TF's `port::EncodeStringList`: all lengths (varint32), then all bytes."""
    out = bytearray()
    for value in values:
        _encode_varint32(len(value), out)
    for value in values:
        out += value
    return bytes(out)


def _decode_string_list(content: bytes, dims: list[int]) -> np.ndarray:
    """TF's `port::DecodeStringList` into an object array of `dims`.

    Raises:
        ValueError: the content is truncated or does not hold `prod(dims)` strings.
    """
    count = int(np.prod(dims, dtype=np.int64))
    lengths, position = [], 0
    for _ in range(count):
        length, shift = 0, 0
        while True:
            if position >= len(content) or shift > 28:
                raise ValueError("truncated string tensor_content")
            byte = content[position]
            position += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        lengths.append(length)
    if position + sum(lengths) != len(content):
        raise ValueError("string tensor_content does not match its shape")
    array = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        array[i] = bytes(content[position:position + length])
        position += length
    return array.reshape(dims)


def to_tensor_proto(array: np.ndarray, *,
                    as_tensor_content: bool = False) -> tensor_pb2.TensorProto:
    """Writes a response tensor like `Tensor::AsProtoField`, or with `as_tensor_content` like
    `Tensor::AsProtoTensorContent`."""
    array = np.asarray(array)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape])
    if array.dtype.kind in ("O", "S", "U"):
        values = [value if isinstance(value, bytes) else str(value).encode("utf-8")
                  for value in array.ravel().tolist()]
        if as_tensor_content:
            return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape,
                                          tensor_content=_encode_string_list(values))
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values)
    if as_tensor_content:
        dtype = tf.as_dtype(array.dtype).as_datatype_enum
        return tensor_pb2.TensorProto(
            dtype=dtype, tensor_shape=shape,
            tensor_content=np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
    encoding = _FIELD_ENCODINGS.get(array.dtype)
    if encoding is None:  # bfloat16, quantized types, ...: TF's own encoder
        return tf.make_tensor_proto(array)
    dtype, field, convert = encoding
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape)
    getattr(proto, field).extend(convert(np.ascontiguousarray(array).ravel()))
    return proto
