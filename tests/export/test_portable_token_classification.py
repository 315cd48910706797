"""`export_model(..., portable=True)` of a token-classification (NER) run: core TensorFlow ops
only (probed in a process where tensorflow_text cannot be imported), token-id signatures, the
files a client needs, warm-up requests, and a parity check that fails the export when the
client's tokenisation would differ."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from export.saved_model_signatures import read_saved_model
from tests.export.test_portable_export import run_probe

TOKEN_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
TEXTS = ["Zoë lives in München, not in New York!", "", "Dr. O'Neil met 李雷 in Berlin",
         " ".join(["Carol met Dave in Rome, then Emma Brown in London."] * 4)]


def client_inputs(export_dir, texts=TEXTS, pad_to_max_length=False):
    from serving.client_tokenizer import ClientTokenizer

    tokenizer = ClientTokenizer.from_path(export_dir, pad_to_max_length=pad_to_max_length)
    return tokenizer.encode(texts)


def in_memory_logits(run_dir, inputs):
    from transformers import TFAutoModelForTokenClassification

    model = TFAutoModelForTokenClassification.from_pretrained(run_dir)
    return model(**{k: tf.constant(v) for k, v in inputs.items()}, training=False).logits.numpy()


def test_every_op_is_core_tensorflow_and_the_model_runs_without_tensorflow_text(
        tmp_path, portable_ner_export, ner_export, ner_run_dir):
    portable = str(portable_ner_export.path)
    inputs = client_inputs(portable_ner_export.path)
    assert inputs["input_ids"].shape[0] > len(TEXTS)  # the long text has several windows
    requests = {portable: {k: v.tolist() for k, v in inputs.items()},
                str(ner_export.path): {k: v.tolist() for k, v in inputs.items()}}

    report = run_probe(tmp_path, requests)

    assert report["tensorflow_text_imported"] is False
    control = report[str(ner_export.path)]  # the default export: tensorflow-text ops
    assert "RegexSplitWithOffsets" in control["unregistered"], control["unregistered"]
    assert "load_error" in control
    entry = report[portable]
    assert entry["unregistered"] == [], entry["unregistered"]
    assert {"MatMul", "Softmax", "ReadVariableOp"} <= set(entry["ops"])
    assert "load_error" not in entry, entry.get("load_error")
    logits = in_memory_logits(ner_run_dir, inputs)
    mask = inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(np.array(entry["outputs"]["logits"])[mask], logits[mask],
                               atol=1e-4)
    probabilities = np.array(entry["outputs"]["probabilities"])[mask]
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert len(set(probabilities.argmax(-1).tolist())) > 1  # the tags depend on the tokens


def test_signatures_take_token_ids_with_serving_default_first(portable_ner_export):
    signatures = read_saved_model(portable_ner_export.path).meta_graphs[0].signature_def
    assert portable_ner_export.signatures == ("serving_default", "tokens")
    assert sorted(k for k in signatures if not k.startswith("__")) == [
        "serving_default", "tokens"]
    for name in ("serving_default", "tokens"):
        signature = signatures[name]
        assert sorted(signature.inputs) == sorted(TOKEN_INPUTS)
        for info in signature.inputs.values():
            assert info.dtype == tf.int32.as_datatype_enum
            assert [d.size for d in info.tensor_shape.dim] == [-1, -1]
        assert {k: v.dtype for k, v in signature.outputs.items()} == {
            "logits": tf.float32.as_datatype_enum, "probabilities": tf.float32.as_datatype_enum}


def test_assets_extra_hold_what_the_client_needs(portable_ner_export, ner_run_dir):
    from tensorflow_serving.apis import prediction_log_pb2

    assets = portable_ner_export.path / "assets.extra"
    config = json.loads((assets / "export_config.json").read_text())
    labels = json.loads((ner_run_dir / "labels.json").read_text())["labels"]
    assert config["portable"] is True
    assert config["task"] == "token-classification"
    assert config["max_length"] == 32
    assert config["signatures"] == ["serving_default", "tokens"]
    assert config["inputs"] == TOKEN_INPUTS
    assert config["tags"] == labels
    assert config["client_tokenizer"] == "tokenizer/tokenizer.json"
    assert (assets / config["client_tokenizer"]).is_file()
    vocab = (assets / "tokenizer" / "vocab.txt").read_text().splitlines()
    assert [vocab[config["special_token_ids"][k]] for k in ("cls", "sep", "pad")] == [
        "[CLS]", "[SEP]", "[PAD]"]

    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in
            tf.data.TFRecordDataset(str(assets / "tf_serving_warmup_requests"))]
    requests = [log.predict_log.request for log in logs]
    assert len(requests) == 4
    shapes = [tf.make_ndarray(r.inputs["input_ids"]).shape for r in requests]
    assert [shape[0] for shape in shapes[:2]] == [1, 2]
    assert shapes[2][0] > 9  # every default parity text, the long one in several windows
    assert shapes[3] == (shapes[2][0], 32)  # --pad-to-max-length's shape
    for request in requests:
        assert request.model_spec.signature_name == "serving_default"
        assert sorted(request.inputs) == sorted(TOKEN_INPUTS)


def test_client_windows_match_the_hugging_face_tokenizer(portable_ner_export, ner_run_dir):
    from transformers import AutoTokenizer

    from serving.portable_word_splitter import split_words

    tokenizer = AutoTokenizer.from_pretrained(ner_run_dir)
    inputs = client_inputs(portable_ner_export.path)
    padded = client_inputs(portable_ner_export.path, pad_to_max_length=True)
    rows = []
    for text in TEXTS:
        words = [word for word, _, _ in split_words(text)]
        ids = tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]
        rows += [[tokenizer.cls_token_id, *ids[k:k + 30], tokenizer.sep_token_id]
                 for k in range(0, max(len(ids), 1), 30)]
    received = [row[:mask.sum()].tolist() for row, mask in
                zip(inputs["input_ids"], inputs["attention_mask"])]
    assert received == rows
    assert inputs["input_ids"].shape[1] == max(len(row) for row in rows) == 32
    assert padded["input_ids"].shape == (len(rows), 32)
    assert not inputs["token_type_ids"].any()


@pytest.fixture
def run_copy(tmp_path, ner_run_dir):
    return shutil.copytree(ner_run_dir, tmp_path / "run")


def test_parity_check_fails_the_export_when_the_client_splits_other_words(
        tmp_path, run_copy, monkeypatch):
    import export
    from export.errors import ParityError
    from serving import portable_token_classification_codec as codec

    # A client that does not split off punctuation.
    monkeypatch.setattr(codec, "split_words", lambda text: [
        (w, s, e) for w, s, e in _whitespace_words(text)])
    base = tmp_path / "models"

    with pytest.raises(ParityError, match=r"splits words differently.*Received"):
        export.export_model(run_copy, base, portable=True)
    assert not base.exists()


def test_parity_check_fails_the_export_when_the_client_frames_other_windows(
        tmp_path, run_copy, monkeypatch):
    import export
    from export import portable_token_classification_export as module
    from export.errors import ParityError

    write_assets = module.PortableTokenClassificationExport.write_assets

    def swapped_special_tokens(self, assets_extra):
        config = write_assets(self, assets_extra)
        ids = config["special_token_ids"]
        ids["cls"], ids["sep"] = ids["sep"], ids["cls"]
        return config

    monkeypatch.setattr(module.PortableTokenClassificationExport, "write_assets",
                        swapped_special_tokens)
    base = tmp_path / "models"

    with pytest.raises(ParityError, match=r"tokenises differently.*BertTokenizerFast.*"
                                          r"Expected the windows"):
        export.export_model(run_copy, base, portable=True)
    assert not base.exists()


def test_a_slow_only_tokenizer_is_refused_naming_it(run_copy):
    from transformers import BertTokenizer

    from export.errors import UnsupportedTokenizerError
    from export.portable_token_classification_export import _check_tokenizer
    from export.run_directory import RunDirectory

    slow = BertTokenizer(vocab_file=str(run_copy / "vocab.txt"))
    with pytest.raises(UnsupportedTokenizerError, match=r"fast tokenizer.*BertTokenizer"):
        _check_tokenizer(slow, RunDirectory.open(run_copy))


def _whitespace_words(text):
    words, offset = [], 0
    for word in text.split(" "):
        size = len(word.encode("utf-8"))
        if word:
            words.append((word, offset, offset + size))
        offset += size + 1
    return words
