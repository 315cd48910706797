"""Hostile gRPC input: thousands of malformed requests (hypothesis) to a real `tfinetune serve`
process. Every one is answered with a client-error status (INVALID_ARGUMENT, NOT_FOUND,
FAILED_PRECONDITION, RESOURCE_EXHAUSTED, OUT_OF_RANGE; never UNKNOWN or INTERNAL), the process
stays alive with a bounded peak RSS, and valid requests afterwards get correct answers.

The default run sends ~1,500 generated requests plus the hand-made worst cases; the slow tests
send ~8,000 more with fresh random seeds, 2,000 of them to a server with --enable_batching."""

from __future__ import annotations

import math

import grpc
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from tensorflow.core.example import feature_pb2
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from tests.serving.fuzz_server import CLIENT_ERROR_CODES
from tests.serving.fuzz_server import TIMEOUT
from tests.serving.fuzz_server import FuzzServer

MODEL_NAMES = st.sampled_from(["half", "tf2", "text", "missing", "", "h\x00alf", "x" * 300])
SIGNATURES = st.sampled_from(["", "serving_default", "greet", "classify_x_to_y",
                              "regress_x_to_y", "add_with_default", "two_outputs", "nope",
                              "s" * 2000])
ALIASES = st.sampled_from(["x", "text", "name", "left", "right", "inputs", "bogus", ""])
# Real (model, signature, input aliases): most requests aim at these, so that they get past the
# model lookup into tensor decoding and the session run.
TARGETS = st.sampled_from([
    ("half", "", ("x",)), ("half", "two_outputs", ("x",)), ("half", "add_with_default", ("left",)),
    ("half", "add_with_default", ("left", "right")), ("tf2", "", ("x",)),
    ("tf2", "greet", ("name",)), ("text", "", ("text",)), ("text", "serving_default", ("text",)),
])
HUGE_DIMS = [2**31, 2**31 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**20, 2**21, 2**24]
# Mostly small dimensions (0-4), sometimes huge or negative ones.
DIMS = st.one_of(*[st.integers(0, 4)] * 6, st.sampled_from(HUGE_DIMS), st.integers(-3, -1),
                 st.integers(-(2**63), 2**63 - 1))
# Values of the repeated fields (any field may come with any dtype).
ELEMENTS = {
    "float_val": st.floats(width=32), "double_val": st.floats(),
    "int_val": st.integers(-(2**31), 2**31 - 1), "int64_val": st.integers(-(2**63), 2**63 - 1),
    "uint32_val": st.integers(0, 2**32 - 1), "uint64_val": st.integers(0, 2**64 - 1),
    "bool_val": st.booleans(), "half_val": st.integers(0, 2**31 - 1),
    "string_val": st.one_of(st.binary(max_size=40), st.sampled_from(
        [b"good", b"bad good", b"\xff\xfe", b"a" * 3000, b"", b"GOOD \x00 bad"])),
    "scomplex_val": st.floats(width=32), "dcomplex_val": st.floats(),
}
FIELD_VALUES = {field: st.lists(element, max_size=6) for field, element in ELEMENTS.items()}
# The field each dtype reads (Tensor::FromProto).
DTYPE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_HALF: "half_val", types_pb2.DT_BFLOAT16: "half_val",
    types_pb2.DT_STRING: "string_val", types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
}
# Mostly the dtypes the models take, then any known dtype, then any number at all.
DTYPES = st.one_of(*[st.sampled_from([types_pb2.DT_FLOAT, types_pb2.DT_STRING])] * 4,
                   st.sampled_from(sorted(DTYPE_FIELDS)),
                   st.sampled_from(sorted(types_pb2.DataType.values())),
                   st.integers(-5, 300))


@st.composite
def tensors(draw) -> tensor_pb2.TensorProto:
    """A TensorProto with any dtype, shape and contents: declared dimensions of 2^40, negative
    dimensions, unknown rank, `tensor_content` whose size disagrees with the shape, strings
    where floats belong, values in a field the dtype does not read, ..."""
    proto = tensor_pb2.TensorProto()
    dtype = draw(DTYPES)
    try:
        proto.dtype = dtype
    except ValueError:  # an enum number protobuf refuses to set: use a known one
        proto.dtype = types_pb2.DT_FLOAT
    dims = draw(st.lists(DIMS, max_size=draw(st.sampled_from([1, 2, 2, 3, 3, 4, 70]))))
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims],
        unknown_rank=draw(st.integers(0, 19)) == 0))
    kind = draw(st.sampled_from(["exact"] * 4 + ["field"] * 3 + ["content", "content-sized",
                                                                 "other-fields", "none"]))
    if kind == "exact" and proto.dtype in DTYPE_FIELDS:  # a well-formed tensor of any shape
        dims = draw(st.lists(st.integers(0, 3), min_size=draw(st.sampled_from(
            [0, 1, 1, 1, 2, 2, 3])), max_size=3))
        proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims]))
        field = DTYPE_FIELDS[proto.dtype]
        count = math.prod(dims) * (2 if "complex" in field else 1)
        getattr(proto, field).extend(draw(st.lists(ELEMENTS[field], min_size=count,
                                                   max_size=count)))
    elif kind in ("field", "exact") and proto.dtype in DTYPE_FIELDS:
        getattr(proto, DTYPE_FIELDS[proto.dtype]).extend(
            draw(FIELD_VALUES[DTYPE_FIELDS[proto.dtype]]))
    elif kind == "content":
        proto.tensor_content = draw(st.binary(max_size=80))
    elif kind == "content-sized":  # the right number of bytes for a float tensor, or one off
        count = max(1, min(abs(math.prod(dims)), 64)) if dims else 1
        proto.tensor_content = draw(st.binary(min_size=4 * count + draw(st.sampled_from(
            [0, 0, 0, 1, -1])), max_size=4 * count + 1))
    elif kind != "none":
        for field in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=2,
                                   unique=True)):
            getattr(proto, field).extend(draw(FIELD_VALUES[field]))
    return proto


def model_specs(draw, spec) -> None:
    spec.name = draw(MODEL_NAMES)
    choice = draw(st.sampled_from(["none", "none", "version", "label"]))
    if choice == "version":
        spec.version.value = draw(st.sampled_from([0, 1, 2, 3, -1, 2**63 - 1]))
    elif choice == "label":
        spec.version_label = draw(st.sampled_from(["stable", "", "canary"]))
    spec.signature_name = draw(SIGNATURES)


@st.composite
def predict_requests(draw) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    if draw(st.integers(0, 3)):  # aimed at a real signature
        name, signature, aliases = draw(TARGETS)
        request.model_spec.name = name
        request.model_spec.signature_name = signature
        if name == "tf2" and draw(st.booleans()):
            request.model_spec.version.value = draw(st.sampled_from([1, 2]))
    else:
        if draw(st.integers(0, 9)):  # sometimes no model_spec at all
            model_specs(draw, request.model_spec)
        aliases = draw(st.lists(ALIASES, max_size=3, unique=True))
    for alias in aliases:
        request.inputs[alias].CopyFrom(draw(tensors()))
    if draw(st.integers(0, 4)) == 0:
        request.output_filter.extend(draw(st.lists(st.sampled_from(
            ["y", "x_copy", "greeting", "probabilities", "label", "nope", ""]), max_size=3)))
    return request


@st.composite
def features(draw) -> feature_pb2.Features:
    result = feature_pb2.Features()
    for name in draw(st.lists(st.sampled_from(["x"] * 4 + ["text", "y", "", "\u00e9"]),
                              max_size=3, unique=True)):
        feature = result.feature[name]
        kind = draw(st.sampled_from(["float"] * 4 + ["int64", "bytes", "empty"]))
        if kind == "float":
            feature.float_list.value.extend(draw(st.lists(st.floats(width=32), max_size=4)))
        elif kind == "int64":
            feature.int64_list.value.extend(draw(st.lists(
                st.integers(-(2**63), 2**63 - 1), max_size=4)))
        elif kind == "bytes":
            feature.bytes_list.value.extend(draw(st.lists(st.binary(max_size=20), max_size=4)))
    return result


@st.composite
def example_inputs(draw, model_input) -> None:
    kind = draw(st.sampled_from(["list", "context", "none"]))
    if kind == "none":
        return
    target = (model_input.example_list if kind == "list"
              else model_input.example_list_with_context)
    if kind == "context":
        target.context.features.CopyFrom(draw(features()))
    for _ in range(draw(st.integers(0, 4))):
        target.examples.add().features.CopyFrom(draw(features()))


@st.composite
def example_requests(draw):
    classify = draw(st.booleans())
    request = (classification_pb2.ClassificationRequest() if classify
               else regression_pb2.RegressionRequest())
    if draw(st.integers(0, 3)):  # aimed at half's classify/regress signature (or its default)
        request.model_spec.name = "half"
        request.model_spec.signature_name = draw(st.sampled_from(
            ["classify_x_to_y" if classify else "regress_x_to_y"] * 3 + [""]))
    elif draw(st.integers(0, 9)):
        model_specs(draw, request.model_spec)
    draw(example_inputs(request.input))
    return request


@st.composite
def multi_inference_requests(draw):
    request = inference_pb2.MultiInferenceRequest()
    for _ in range(draw(st.integers(0, 3))):
        task = request.tasks.add()
        if draw(st.booleans()):
            task.model_spec.name = "half"
            task.model_spec.signature_name = draw(st.sampled_from(
                ["classify_x_to_y", "regress_x_to_y"]))
        else:
            model_specs(draw, task.model_spec)
        task.method_name = draw(st.sampled_from(["tensorflow/serving/classify",
                                                 "tensorflow/serving/regress",
                                                 "tensorflow/serving/predict", "", "x"]))
    draw(example_inputs(request.input))
    return request


@st.composite
def metadata_requests(draw):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    if draw(st.integers(0, 9)):
        model_specs(draw, request.model_spec)
    request.metadata_field.extend(draw(st.lists(st.sampled_from(
        ["signature_def", "", "x", "signature_def "]), max_size=3)))
    return request


@st.composite
def status_requests(draw):
    request = get_model_status_pb2.GetModelStatusRequest()
    if draw(st.integers(0, 9)):
        model_specs(draw, request.model_spec)
    return request


@pytest.fixture(scope="module")
def fuzz_server(model_bases, tmp_path_factory):
    with FuzzServer(model_bases, tmp_path_factory.mktemp("fuzz-grpc")) as server:
        yield server


def call(method, request, allowed=CLIENT_ERROR_CODES) -> None:
    """Makes the call; it succeeds or fails with an `allowed` code."""
    try:
        method(request, timeout=TIMEOUT)
    except grpc.RpcError as error:
        assert error.code() in allowed, (
            f"{error.code()}: {error.details()}\nrequest: {request!r}"[:4000])


def fuzz(strategy, check, max_examples: int, derandomize: bool = True) -> None:
    """Runs `check` on `max_examples` values of `strategy` (deterministic by default, so the
    default run is reproducible; the slow run draws fresh examples)."""

    @settings(max_examples=max_examples, deadline=None, database=None,
              derandomize=derandomize, suppress_health_check=list(HealthCheck),
              print_blob=True)
    @given(strategy)
    def run(value) -> None:
        check(value)

    run()


def _checks(server: FuzzServer) -> list[tuple]:
    """(strategy, check, share of the examples) per RPC."""
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    model = model_service_pb2_grpc.ModelServiceStub(server.channel)

    def example_call(request):
        method = (prediction.Classify
                  if isinstance(request, classification_pb2.ClassificationRequest)
                  else prediction.Regress)
        call(method, request)

    raw = {name: server.channel.unary_unary(f"/tensorflow.serving.{name}")
           for name in ("PredictionService/Predict", "PredictionService/Classify",
                        "PredictionService/GetModelMetadata", "ModelService/GetModelStatus")}

    def raw_call(value):
        name, data = value
        call(raw[name], data)

    return [
        (predict_requests(), lambda r: call(prediction.Predict, r), 0.45),
        (example_requests(), example_call, 0.2),
        # UNIMPLEMENTED is TF Serving's code for a task method other than classify/regress.
        (multi_inference_requests(), lambda r: call(
            prediction.MultiInference, r, CLIENT_ERROR_CODES | {grpc.StatusCode.UNIMPLEMENTED}),
         0.1),
        (metadata_requests(), lambda r: call(prediction.GetModelMetadata, r), 0.08),
        (status_requests(), lambda r: call(model.GetModelStatus, r), 0.05),
        # Bytes that are not the message at all: random, or a valid request cut short.
        (st.tuples(st.sampled_from(sorted(raw)), st.one_of(
            st.binary(max_size=300),
            predict_requests().map(lambda r: r.SerializeToString()[:-1] + b"\xff"))),
         raw_call, 0.12),
    ]


def _run_all(server: FuzzServer, total: int, derandomize: bool) -> None:
    for strategy, check, share in _checks(server):
        fuzz(strategy, check, max(int(total * share), 10), derandomize)
        server.assert_alive()
    server.assert_memory_bounded()
    server.check_answers()


def test_fuzzed_grpc_requests_get_client_errors(fuzz_server):
    _run_all(fuzz_server, 1500, derandomize=True)


@pytest.mark.slow
def test_many_more_fuzzed_grpc_requests(fuzz_server):
    _run_all(fuzz_server, 6000, derandomize=False)


@pytest.mark.slow
def test_fuzzed_grpc_requests_with_batching(model_bases, tmp_path):
    """--enable_batching splits and merges request tensors: hostile shapes there too."""
    with FuzzServer(model_bases, tmp_path, "--enable_batching=true") as server:
        _run_all(server, 2000, derandomize=False)


def _tensor(dtype, dims, **fields) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims]))
    for name, value in fields.items():
        if name == "tensor_content":
            proto.tensor_content = value
        else:
            getattr(proto, name).extend(value)
    return proto


F, S = types_pb2.DT_FLOAT, types_pb2.DT_STRING


@pytest.mark.parametrize("model, alias, tensor", [
    # One value padded to a huge declared shape: C++ would allocate it all.
    ("tf2", "x", _tensor(F, [2**30], float_val=[1.0])),
    ("tf2", "x", _tensor(F, [2**31], float_val=[1.0])),
    ("half", "x", _tensor(F, [2**20, 2**20])),
    ("half", "x", _tensor(F, [2**40, 1], float_val=[1.0])),
    ("half", "x", _tensor(F, [2**62] * 17, float_val=[1.0])),  # product past float64 range
    ("text", "text", _tensor(S, [2**24], string_val=[b"good" * 1000])),
    ("text", "text", _tensor(S, [2**40], tensor_content=b"\x01a")),
    # Empty tensors whose other dimensions are huge: the text model tiles its output by
    # dimension 0, so [2^62, 0] would overflow and [2^24, 0] allocate gigabytes.
    ("text", "text", _tensor(S, [2**62, 0])),
    ("text", "text", _tensor(S, [2**24, 0])),
    ("tf2", "x", _tensor(F, [0, 2**40])),
    # A scalar where the signature declares dimensions, an empty tensor of another rank: TF
    # kernels of the text model segfault / abort on these (the whole server would die).
    ("text", "text", _tensor(S, [], string_val=[b"good"])),
    ("text", "text", _tensor(S, [2, 0])),
    ("half", "x", _tensor(F, [], float_val=[1.0])),
    # Negative, too many, unknown dimensions.
    ("tf2", "x", _tensor(F, [-1], float_val=[1.0])),
    ("tf2", "x", _tensor(F, [1] * 100, float_val=[1.0])),
    ("tf2", "x", tensor_pb2.TensorProto(dtype=F, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        unknown_rank=True), float_val=[1.0])),
    # tensor_content whose size disagrees with the shape, dtype or field.
    ("tf2", "x", _tensor(F, [3], tensor_content=b"\x00" * 5)),
    ("tf2", "x", _tensor(F, [2**40], tensor_content=b"\x00" * 8)),
    ("text", "text", _tensor(S, [2], tensor_content=b"\xff\xff\xff\xff\xff\x01")),
    # Strings where floats belong, floats where strings belong, odd dtypes.
    ("tf2", "x", _tensor(S, [1], string_val=[b"1.0"])),
    ("text", "text", _tensor(F, [1], float_val=[1.0])),
    ("tf2", "x", _tensor(types_pb2.DT_VARIANT, [1])),
    ("tf2", "x", _tensor(types_pb2.DT_RESOURCE, [1], tensor_content=b"\x00" * 8)),
    ("tf2", "x", _tensor(types_pb2.DT_COMPLEX128, [1], dcomplex_val=[1.0])),
    ("tf2", "x", _tensor(types_pb2.DT_BFLOAT16, [3], half_val=[1])),
    ("tf2", "x", _tensor(types_pb2.DT_INVALID, [1], float_val=[1.0])),
    ("tf2", "x", _tensor(F, [2], float_val=[1.0, 2.0, 3.0])),  # more values than the shape
], ids=lambda value: None if not isinstance(value, str) else value)
def test_worst_case_tensors_are_refused_without_allocating(fuzz_server, model, alias, tensor):
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(fuzz_server.channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[alias].CopyFrom(tensor)

    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(request, timeout=TIMEOUT)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    fuzz_server.assert_alive()
    fuzz_server.assert_memory_bounded()


def test_unparsable_request_bytes_are_invalid_argument_not_internal(fuzz_server):
    predict = fuzz_server.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")

    with pytest.raises(grpc.RpcError) as raised:
        predict(b"\xff\xff\xff\xff", timeout=TIMEOUT)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(
        "Could not parse the request as a tensorflow.serving.PredictRequest: DecodeError")
    fuzz_server.check_answers()
