"""Conversions between `TensorProto` and numpy arrays, the way TF Serving's C++ does them.

Responses are written like `Tensor::AsProtoField` (TF Serving's default): values in the typed
repeated field (`float_val`, `int64_val`, `string_val`, ...), so that clients reading
`outputs["y"].float_val` work; with `--enable_serialization_as_tensor_content`, like
`Tensor::AsProtoTensorContent`: the raw little-endian values in `tensor_content` (strings as
TF's `EncodeStringList`: every length as a varint32, then the bytes). Requests are read with
`tf.make_ndarray`, which follows `Tensor::FromProto` (short repeated fields are padded with their
last value, up to `MAX_PADDED_BYTES`), and string `tensor_content` is decoded as
`Tensor::FromProto` decodes it. Hostile shapes (negative or 2^40 dimensions, more than 64 of
them) are refused before anything is allocated.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2

# A request tensor holds at most this many elements (C++ would fail the allocation and report a
# parsing error), and has at most numpy's number of dimensions (TF allows 254).
_MAX_ELEMENTS = 1 << 31
_MAX_RANK = 64
# A typed field shorter than its shape is padded with its last value (`Tensor::FromProto`). The
# padded tensor may hold at most this many bytes: a request of a few bytes declaring a huge
# shape must not make the server allocate gigabytes. Tensors that carry all their values are
# bounded by the gRPC message size instead. An empty tensor counts its non-zero dimensions
# ([1048576, 0] is 1048576 elements here).
MAX_PADDED_BYTES = 4 << 20
_REPEATED_FIELDS = ("half_val", "float_val", "double_val", "int_val", "string_val",
                    "scomplex_val", "int64_val", "bool_val", "dcomplex_val", "uint32_val",
                    "uint64_val", "float8_val", "resource_handle_val", "variant_val")
_OBJECT_ITEM_BYTES = 16  # a padded string element: a pointer in the list and in the array

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
        ValueError: when the proto cannot be turned into a tensor (bad dtype, negative, unknown
            or oversized shape, more values than the shape holds, truncated `tensor_content`,
            or a short field whose padding would exceed `MAX_PADDED_BYTES`).
    """
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(size < 0 for size in dims):
        raise ValueError(f"invalid tensor shape {dims}")
    if len(dims) > _MAX_RANK:
        raise ValueError(f"tensor shape has {len(dims)} dimensions; at most {_MAX_RANK} are "
                         f"supported")
    # The elements the shape declares, a zero dimension not hiding huge others: a model
    # computing from the shape ([2^62, 0] -> tf.tile by dim 0) must not be handed one.
    # Exact (Python integers): no overflow.
    declared = math.prod(max(size, 1) for size in dims)
    if declared > _MAX_ELEMENTS:
        raise ValueError(f"tensor shape {dims} declares too many elements ({declared}); at "
                         f"most {_MAX_ELEMENTS} are supported")
    try:
        dtype = tf.dtypes.as_dtype(proto.dtype)
    except (TypeError, ValueError):
        raise ValueError(f"unsupported tensor dtype {proto.dtype}") from None
    if proto.dtype == types_pb2.DT_STRING and proto.tensor_content:
        return _decode_string_list(proto.tensor_content, dims)
    try:
        if not proto.tensor_content:
            _check_padding(proto, dtype, dims, declared)
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001  (TypeError, ValueError from numpy)
        raise ValueError(str(error)) from error


def feed_shape_problem(array: np.ndarray, shape: tensor_shape_pb2.TensorShapeProto) -> str | None:
    """Why a request tensor must not be fed to a signature input of static `shape`, or None.

    Like TF Serving, shapes are not checked in general (a `[3]` tensor may feed a `[-1, 1]`
    input, as TF Serving's half_plus_two example does). Refused are the mismatches that crash
    TF kernels (found by tests/serving/test_fuzz_grpc.py: the whole server would die): a scalar
    where the signature declares dimensions, and an empty tensor of another rank than the
    signature's.
    """
    if shape.unknown_rank:
        return None
    expected = [dim.size for dim in shape.dim]
    if len(expected) == array.ndim:
        return None
    if array.ndim == 0 or array.size == 0:
        shown = "[" + ",".join("?" if size < 0 else str(size) for size in expected) + "]"
        return (f"cannot feed a value of shape {list(array.shape)} to an input of shape "
                f"{shown}: a scalar or an empty tensor must have the input's rank "
                f"({len(expected)})")
    return None


def _check_padding(proto: tensor_pb2.TensorProto, dtype: tf.dtypes.DType, dims: list[int],
                   count: int) -> None:
    """Refuses a typed field so much shorter than its shape (`count` elements, zero dimensions
    counted as 1) that padding it would allocate more than `MAX_PADDED_BYTES`."""
    given = sum(len(getattr(proto, field)) for field in _REPEATED_FIELDS)
    if given >= count:
        return
    numpy_dtype = np.dtype(dtype.as_numpy_dtype)
    if numpy_dtype == np.object_:  # every padded string is a copy of the last one in TF
        last = proto.string_val[-1] if proto.string_val else b""
        item_bytes = _OBJECT_ITEM_BYTES + len(last)
    else:
        item_bytes = numpy_dtype.itemsize
    if count * item_bytes > MAX_PADDED_BYTES:
        raise ValueError(f"tensor shape {dims} declares {count} values but the request holds "
                         f"{given}: padding it would take {count * item_bytes} bytes, more "
                         f"than {MAX_PADDED_BYTES}")


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
