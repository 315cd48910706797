"""Tensor conversions (AsProtoField-style responses, FromProto-style requests) and version
policies."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving import VersionPolicy
from serving import tensor_codec


@pytest.mark.parametrize("array, field", [
    (np.array([[1.5, 2.5]], np.float32), "float_val"),
    (np.array([1.5], np.float64), "double_val"),
    (np.array([1, -2], np.int32), "int_val"),
    (np.array([1, 2], np.uint8), "int_val"),
    (np.array([1 << 40], np.int64), "int64_val"),
    (np.array([True, False]), "bool_val"),
    (np.array([0.5, -1.0], np.float16), "half_val"),
    (np.array([1 + 2j], np.complex64), "scomplex_val"),
    (np.array([[b"a", "é".encode()]], dtype=object), "string_val"),
    (np.float32(3.0), "float_val"),
])
def test_outputs_use_the_typed_field_and_round_trip(array, field):
    proto = tensor_codec.to_tensor_proto(array)

    assert getattr(proto, field)
    assert not proto.tensor_content
    decoded = tensor_codec.to_ndarray(proto)
    assert decoded.shape == np.shape(array)
    assert decoded.tolist() == np.asarray(array).tolist()


def test_other_dtypes_fall_back_to_tf_encoding():
    array = np.array([1.0, 2.0], dtype=tf.bfloat16.as_numpy_dtype)

    proto = tensor_codec.to_tensor_proto(array)

    assert proto.dtype == types_pb2.DT_BFLOAT16
    assert tensor_codec.to_ndarray(proto).astype(np.float32).tolist() == [1.0, 2.0]


def test_requests_pad_short_fields_like_tensor_from_proto():
    proto = tf.make_tensor_proto(np.array([7.0], np.float32))
    proto.tensor_shape.dim[0].size = 3

    assert tensor_codec.to_ndarray(proto).tolist() == [7.0, 7.0, 7.0]


@pytest.mark.parametrize("policy, expected", [
    (VersionPolicy.latest(), {12}),
    (VersionPolicy.latest(2), {3, 12}),
    (VersionPolicy.all(), {1, 3, 12}),
    (VersionPolicy.specific([3, 4]), {3}),
])
def test_version_policies(policy, expected):
    assert policy.select([3, 12, 1]) == expected


def test_version_policy_validation():
    with pytest.raises(ValueError, match="Received: kind='newest'"):
        VersionPolicy("newest")
    with pytest.raises(ValueError, match="num_versions=0"):
        VersionPolicy.latest(0)


def test_version_policy_parses_its_command_line_forms():
    import pytest

    from serving.version_policy import VersionPolicy

    assert VersionPolicy.parse("latest") == VersionPolicy.latest(1)
    assert VersionPolicy.parse("latest:3") == VersionPolicy.latest(3)
    assert VersionPolicy.parse("all") == VersionPolicy.all()
    assert VersionPolicy.parse("specific:2,1") == VersionPolicy.specific([1, 2])
    for bad in ("newest", "latest:0", "specific:", "specific:a", "all:2"):
        with pytest.raises(ValueError, match="Received"):
            VersionPolicy.parse(bad)
