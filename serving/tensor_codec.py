"""Conversions between `TensorProto` and numpy arrays, the way TF Serving's C++ does them.

Responses are written like `Tensor::AsProtoField` (TF Serving's default): values in the typed
repeated field (`float_val`, `int64_val`, `string_val`, ...), never `tensor_content`, so that
clients reading `outputs["y"].float_val` work. Requests are read with `tf.make_ndarray`, which
follows `Tensor::FromProto` (short repeated fields are padded with their last value).
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
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001  (TypeError, ValueError from numpy)
        raise ValueError(str(error)) from error


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Writes a response tensor like `Tensor::AsProtoField`."""
    array = np.asarray(array)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape])
    if array.dtype.kind in ("O", "S", "U"):
        values = [value if isinstance(value, bytes) else str(value).encode("utf-8")
                  for value in array.ravel().tolist()]
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values)
    encoding = _FIELD_ENCODINGS.get(array.dtype)
    if encoding is None:  # bfloat16, quantized types, ...: TF's own encoder
        return tf.make_tensor_proto(array)
    dtype, field, convert = encoding
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape)
    getattr(proto, field).extend(convert(np.ascontiguousarray(array).ravel()))
    return proto
