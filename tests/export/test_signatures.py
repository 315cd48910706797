"""The exported signatures: names, method names, inputs and outputs with dtypes and shapes."""

from __future__ import annotations

import pytest

PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
C = 2  # number of classes in the fixtures

TOKENS = {
    "inputs": {name: ("int32", [-1, -1]) for name in ("input_ids", "attention_mask",
                                                      "token_type_ids")},
    "outputs": {"logits": ("float32", [-1, C]), "probabilities": ("float32", [-1, C])},
    "method_name": PREDICT,
}
SERVING_OUTPUTS = {
    "probabilities": ("float32", [-1, C]),
    "label_id": ("int64", [-1]),
    "label": ("string", [-1]),
    "classes": ("string", [-1, C]),
}
CLASSIFY_SIGNATURE = {
    "inputs": {"inputs": ("string", [-1])},
    "outputs": {"classes": ("string", [-1, C]), "scores": ("float32", [-1, C])},
    "method_name": CLASSIFY,
}
EXPECTED = {
    "single": {
        "serving_default": {"inputs": {"text": ("string", [-1])}, "outputs": SERVING_OUTPUTS,
                            "method_name": PREDICT},
        "tokens": TOKENS,
        "classify": CLASSIFY_SIGNATURE,
    },
    "pair": {
        "serving_default": {"inputs": {"text": ("string", [-1]), "text_pair": ("string", [-1])},
                            "outputs": SERVING_OUTPUTS, "method_name": PREDICT},
        "tokens": TOKENS,
        "classify": CLASSIFY_SIGNATURE,
    },
}


@pytest.fixture(params=["single", "pair"])
def exported(request):
    return request.param, request.getfixturevalue(f"{request.param}_export")


def _meta_graph(path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    assert len(saved_model.meta_graphs) == 1
    return saved_model.meta_graphs[0]


def _tensor_infos(infos):
    import tensorflow as tf

    return {key: (tf.dtypes.as_dtype(info.dtype).name, [dim.size for dim in info.tensor_shape.dim])
            for key, info in infos.items()}


def test_meta_graph_signature_defs(exported):
    kind, result = exported
    meta_graph = _meta_graph(result.path)

    assert list(meta_graph.meta_info_def.tags) == ["serve"]
    public = {name: sig for name, sig in meta_graph.signature_def.items()
              if not name.startswith("__")}  # __saved_model_init_op: the table initializer
    assert set(public) == {"serving_default", "tokens", "classify"}
    for name, signature in public.items():
        expected = EXPECTED[kind][name]
        assert signature.method_name == expected["method_name"], name
        assert _tensor_infos(signature.inputs) == expected["inputs"], name
        assert _tensor_infos(signature.outputs) == expected["outputs"], name


def test_export_result_lists_the_signatures(exported):
    _, result = exported
    assert result.signatures == ("serving_default", "tokens", "classify")


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_reloaded_signatures_have_the_same_specs(kind, request):
    loaded = request.getfixturevalue(f"loaded_{kind}")

    assert set(loaded.signatures.keys()) == {"serving_default", "tokens", "classify"}
    for name, expected in EXPECTED[kind].items():
        function = loaded.signatures[name]
        args, kwargs = function.structured_input_signature
        assert args == ()
        inputs = {key: (spec.dtype.name, [-1 if d is None else d for d in spec.shape.as_list()])
                  for key, spec in kwargs.items()}
        outputs = {key: (spec.dtype.name, [-1 if d is None else d for d in spec.shape.as_list()])
                   for key, spec in function.structured_outputs.items()}
        assert inputs == expected["inputs"], name
        assert outputs == expected["outputs"], name


def test_tf_text_ops_are_the_plain_bert_tokenizer_ones(single_export):
    """No FastBert*/FastWordpiece ops (missing from older TF Serving binaries)."""
    meta_graph = _meta_graph(single_export.path)
    ops = {node.op for node in meta_graph.graph_def.node}
    for function in meta_graph.graph_def.library.function:
        ops |= {node.op for node in function.node_def}

    assert {"WordpieceTokenizeWithOffsets", "RegexSplitWithOffsets", "NormalizeUTF8"} <= ops
    assert not [op for op in ops if op.startswith("Fast") or "RoundRobin" in op]
