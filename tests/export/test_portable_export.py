"""`export_model(..., portable=True)` / `tfinetune export --portable`: core TensorFlow ops only.

The strong check runs in a fresh subprocess that imports `tensorflow` alone, with any import of
`tensorflow_text` blocked: every op of the SavedModel (graph nodes and every library function)
must be registered there, and the model must load and give the in-memory model's outputs. The
same probe on the default (tokenizer-in-graph) export must report the tensorflow-text ops as
missing, so the probe is shown to be able to fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from export.saved_model_signatures import read_saved_model
from tests.portable_fixtures import KINDS

TOKEN_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
TEXTS = ["good movie", "The acting was AWFUL, and the plot was boring.", "", "x",
         "the the the the the the the the the the the the the the the the the the the the the "
         "the the the the the the the the the the the the the the the the the the the the"]
PAIRS = ["bad", "fun fun fun", "the film", "?", "great great great great great great great"]

#: Runs in a fresh interpreter: `tensorflow` only, `tensorflow_text` blocked.
PROBE = r'''
import importlib.abc, json, sys

class BlockTensorflowText(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow_text" or name.startswith("tensorflow_text."):
            raise ImportError("tensorflow_text is blocked in this probe")
        return None

sys.meta_path.insert(0, BlockTensorflowText())
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

requests = json.loads(open(sys.argv[1]).read())
report = {}
for export_dir, inputs in requests.items():
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(open(export_dir + "/saved_model.pb", "rb").read())
    ops = set()
    for meta_graph in saved_model.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    entry = {"ops": sorted(ops),
             "unregistered": sorted(op for op in ops if op_def_registry.get(op) is None)}
    try:
        loaded = tf.saved_model.load(export_dir)
        outputs = loaded.signatures["serving_default"](
            **{name: tf.constant(value, tf.int32) for name, value in inputs.items()})
        entry["outputs"] = {name: value.numpy().tolist() for name, value in outputs.items()
                            if value.dtype != tf.string}
    except Exception as error:
        entry["load_error"] = f"{type(error).__name__}: {error}"
    report[export_dir] = entry
report["tensorflow_text_imported"] = "tensorflow_text" in sys.modules
print(json.dumps(report))
'''


def run_probe(tmp_path: Path, requests: dict[str, dict]) -> dict:
    request_file = tmp_path / "probe-requests.json"
    request_file.write_text(json.dumps(requests), encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    process = subprocess.run([sys.executable, "-c", PROBE, str(request_file)], env=env,
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def reference(run_dir: Path, pair: bool):
    """The run's Hugging Face encoding of TEXTS (and PAIRS) and the in-memory model's logits."""
    from export.run_directory import RunDirectory

    run = RunDirectory.open(run_dir)
    tokenizer, model = run.load_tokenizer(), run.load_model()
    encoded = tokenizer(TEXTS, PAIRS if pair else None, padding=True, truncation=True,
                        max_length=run.max_length, return_tensors="np")
    logits = model(**{k: tf.constant(v) for k, v in encoded.items()}, training=False).logits
    return {name: encoded[name].tolist() for name in TOKEN_INPUTS}, logits.numpy()


def version_dir(base: Path) -> Path:
    return base / "1"


def signature_defs(export_dir: Path) -> dict:
    return read_saved_model(export_dir).meta_graphs[0].signature_def


# ------------------------------------------------------------------ core ops, fresh process

def test_every_op_is_core_tensorflow_and_the_model_runs_without_tensorflow_text(
        tmp_path, portable_bases, text_bases, portable_run_dirs):
    requests, expected = {}, {}
    for kind in KINDS:
        inputs, logits = reference(portable_run_dirs[kind], pair=kind == "pair")
        requests[str(version_dir(portable_bases[kind]))] = inputs
        expected[kind] = logits
    text_export = str(version_dir(text_bases["single"]))  # the control: tensorflow-text ops
    requests[text_export] = requests[str(version_dir(portable_bases["single"]))]

    report = run_probe(tmp_path, requests)

    assert report["tensorflow_text_imported"] is False
    control = report[text_export]
    assert {"RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets"} <= set(
        control["unregistered"]), control["unregistered"]
    assert "load_error" in control
    for kind in KINDS:
        entry = report[str(version_dir(portable_bases[kind]))]
        assert entry["unregistered"] == [], (kind, entry["unregistered"])
        assert {"MatMul", "ParseExampleV2", "ReadVariableOp"} <= set(entry["ops"]), kind
        assert "load_error" not in entry, entry.get("load_error")
        logits = expected[kind].astype(np.float64)
        outputs = {name: np.array(value) for name, value in entry["outputs"].items()}
        if kind == "regression":
            np.testing.assert_allclose(outputs["value"], logits[:, 0], atol=1e-4)
        elif kind == "multi-label":
            np.testing.assert_allclose(outputs["scores"], 1 / (1 + np.exp(-logits)), atol=1e-4)
        else:
            probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-4)
            assert outputs["label_id"].tolist() == probabilities.argmax(-1).tolist()
            assert probabilities.max(-1).min() < 0.9 or len(set(outputs["label_id"])) > 1


# ------------------------------------------------------------------------------ signatures

@pytest.mark.parametrize("kind", KINDS)
def test_signatures_take_token_ids_and_give_the_text_exports_outputs(kind, portable_bases,
                                                                     text_bases):
    portable = signature_defs(version_dir(portable_bases[kind]))
    text = signature_defs(version_dir(text_bases[kind]))

    assert sorted(portable) == sorted(text)
    default = portable["serving_default"]
    assert sorted(default.inputs) == sorted(TOKEN_INPUTS)
    for info in default.inputs.values():
        assert info.dtype == tf.int32.as_datatype_enum
        assert [d.size for d in info.tensor_shape.dim] == [-1, -1]
    assert {k: v.dtype for k, v in default.outputs.items()} == {
        k: v.dtype for k, v in text["serving_default"].outputs.items()}
    assert portable["tokens"].inputs == text["tokens"].inputs
    assert {k: v.dtype for k, v in portable["tokens"].outputs.items()} == {
        k: v.dtype for k, v in text["tokens"].outputs.items()}
    examples = "regress" if kind == "regression" else "classify"
    assert portable[examples].method_name == text[examples].method_name == (
        f"tensorflow/serving/{examples}")
    assert sorted(portable[examples].outputs) == sorted(text[examples].outputs)


def test_assets_extra_hold_the_tokenizer_and_token_id_warmup_requests(portable_bases):
    from tensorflow_serving.apis import prediction_log_pb2

    assets = version_dir(portable_bases["pair"]) / "assets.extra"
    config = json.loads((assets / "export_config.json").read_text())
    assert config["portable"] is True
    assert config["inputs"] == TOKEN_INPUTS
    assert config["client_tokenizer"] == "tokenizer/tokenizer.json"
    assert config["text_pair"] is True and config["max_length"] == 32
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                 "special_tokens_map.json"):
        assert (assets / "tokenizer" / name).is_file(), name
    assert json.loads((assets / "labels.json").read_text())["labels"]

    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in
            tf.data.TFRecordDataset(str(assets / "tf_serving_warmup_requests"))]
    predicts = [log.predict_log.request for log in logs if log.HasField("predict_log")]
    assert [tf.make_ndarray(r.inputs["input_ids"]).shape[0] for r in predicts] == [1, 2, 5]
    for request in predicts:
        assert sorted(request.inputs) == sorted(TOKEN_INPUTS)
        types = tf.make_ndarray(request.inputs["token_type_ids"])
        assert types.max() == 1  # pairs: the second segment's type ids
    classify = [log.classify_log.request for log in logs if log.HasField("classify_log")]
    assert len(classify) == 1
    for example in classify[0].input.example_list.examples:
        assert sorted(example.features.feature) == ["input_ids", "token_type_ids"]


def test_classify_takes_token_id_examples_and_checks_token_type_ids(portable_bases,
                                                                    portable_run_dirs):
    from export.portable_export import token_examples
    from export.run_directory import RunDirectory

    tokenizer = RunDirectory.open(portable_run_dirs["single"]).load_tokenizer()
    loaded = tf.saved_model.load(str(version_dir(portable_bases["single"])))
    examples = token_examples(tokenizer, TEXTS, None, 32)
    serialized = tf.constant([e.SerializeToString() for e in examples])
    encoded = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="np")

    scores = loaded.signatures["classify"](inputs=serialized)["scores"].numpy()
    served = loaded.signatures["serving_default"](
        **{k: tf.constant(v, tf.int32) for k, v in encoded.items()})["probabilities"].numpy()
    np.testing.assert_allclose(scores, served, atol=1e-5)

    examples[1].features.feature["token_type_ids"].int64_list.value.append(0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="token_type_ids"):
        loaded.signatures["classify"](inputs=tf.constant([e.SerializeToString()
                                                          for e in examples]))


# ------------------------------------------------------------------------ checks and errors

def test_parity_check_fails_when_clients_would_tokenise_differently(tmp_path, portable_bases,
                                                                    portable_run_dirs):
    from export.errors import ParityError
    from export.portable_parity_check import check_portable_parity
    from export.run_directory import RunDirectory

    export_dir = shutil.copytree(version_dir(portable_bases["single"]), tmp_path / "1")
    tokenizer_json = export_dir / "assets.extra" / "tokenizer" / "tokenizer.json"
    state = json.loads(tokenizer_json.read_text())
    state["normalizer"]["lowercase"] = False  # clients would no longer lower-case
    tokenizer_json.write_text(json.dumps(state))
    run = RunDirectory.open(portable_run_dirs["single"])

    with pytest.raises(ParityError, match="Clients would tokenise differently"):
        check_portable_parity(export_dir, run.load_model(), run.load_tokenizer(),
                              texts=["GOOD movie"], text_pairs=None, max_length=32,
                              labels=run.labels)


def test_refuses_tasks_without_a_portable_export(tmp_path, portable_run_dirs, monkeypatch):
    import export
    from export import portable_export
    from export.errors import ExportError

    # seq2seq has a portable export (tests/export/test_portable_seq2seq.py): take it away.
    monkeypatch.delitem(portable_export.PORTABLE_TASK_EXPORTS, "seq2seq")
    run = shutil.copytree(portable_run_dirs["single"], tmp_path / "run")
    config = run / "fit_config.yaml"
    config.write_text(config.read_text() + "task: seq2seq\n")
    base = tmp_path / "models"

    with pytest.raises(ExportError, match=r"No portable export for seq2seq runs.*"
                                          r"without --portable"):
        export.export_model(run, base, portable=True)
    assert not base.exists()


def test_cli_export_portable_writes_a_token_id_version(tmp_path, portable_run_dirs):
    from tfinetune.cli.export import command

    base = tmp_path / "models"
    result = CliRunner().invoke(command, [str(portable_run_dirs["regression"]), "--base-path",
                                          str(base), "--portable", "--version", "4"])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(base / "4")
    assert "signatures: serving_default, tokens, regress" in result.stderr
    assert json.loads((base / "4" / "assets.extra" / "export_config.json").read_text())[
        "portable"] is True
    assert sorted(signature_defs(base / "4")["serving_default"].inputs) == sorted(TOKEN_INPUTS)
