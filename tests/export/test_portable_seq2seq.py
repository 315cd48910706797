"""`export_model(..., portable=True)` of seq2seq runs (SentencePiece T5, greedy; ByT5, beam
search): core TensorFlow ops only (probed in a process where tensorflow_text cannot be
imported), `serving_default(input_ids, attention_mask) -> generated_ids`, the files a client
needs, warm-up requests, a parity check that fails the export when the client would tokenise
differently, and the refusal of tokenizers a client cannot run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from export.saved_model_signatures import read_saved_model
from tests.export.test_portable_export import run_probe

TEXTS = ["four blue bird house", "", "naïve café", "green house " * 20]


def client_inputs(export_dir, texts=TEXTS):
    from serving.client_tokenizer import ClientTokenizer

    return ClientTokenizer.from_path(export_dir).encode(texts)


def in_memory_generation(run_dir, inputs, num_beams, max_new_tokens):
    from transformers import TFAutoModelForSeq2SeqLM

    model = TFAutoModelForSeq2SeqLM.from_pretrained(run_dir)
    return model.generate(**{k: tf.constant(v) for k, v in inputs.items()},
                          max_new_tokens=max_new_tokens, num_beams=num_beams,
                          do_sample=False).numpy()


@pytest.mark.slow
def test_every_op_is_core_tensorflow_and_generation_runs_without_tensorflow_text(
        tmp_path, portable_spm_export, portable_byt5_export, spm_export, spm_run_dir,
        byt5_run_dir):
    exports = {"t5": (portable_spm_export, spm_run_dir, 1, 20),
               "byt5": (portable_byt5_export, byt5_run_dir, 2, 10)}
    inputs = {model: client_inputs(result.path) for model, (result, *_) in exports.items()}
    requests = {str(result.path): {k: v.tolist() for k, v in inputs[model].items()}
                for model, (result, *_) in exports.items()}
    requests[str(spm_export.path)] = requests[str(portable_spm_export.path)]  # the control

    report = run_probe(tmp_path, requests)

    assert report["tensorflow_text_imported"] is False
    control = report[str(spm_export.path)]
    assert "SentencepieceOp" in control["unregistered"], control["unregistered"]
    assert "load_error" in control
    for model, (result, run_dir, beams, new_tokens) in exports.items():
        entry = report[str(result.path)]
        assert entry["unregistered"] == [], (model, entry["unregistered"])
        assert "load_error" not in entry, entry.get("load_error")
        generated = np.array(entry["outputs"]["generated_ids"])
        expected = in_memory_generation(run_dir, inputs[model], beams, new_tokens)
        assert generated.shape == (len(TEXTS), new_tokens + 1)
        width = expected.shape[1]
        assert generated[:, :width].tolist() == expected.tolist(), model
        assert not generated[:, width:].any()  # padding
        assert len({tuple(row) for row in generated}) > 1  # depends on the input


@pytest.mark.slow
def test_signature_assets_and_warmup_requests(portable_spm_export, portable_byt5_export):
    from tensorflow_serving.apis import prediction_log_pb2

    for result, client_tokenizer, beams in ((portable_spm_export, "tokenizer/tokenizer.json", 1),
                                            (portable_byt5_export, "byt5", 2)):
        signatures = read_saved_model(result.path).meta_graphs[0].signature_def
        assert result.signatures == ("serving_default",)
        default = signatures["serving_default"]
        assert sorted(default.inputs) == ["attention_mask", "input_ids"]
        assets = result.path / "assets.extra"
        config = json.loads((assets / "export_config.json").read_text())
        for info in default.inputs.values():
            assert info.dtype == tf.int32.as_datatype_enum
            assert [d.size for d in info.tensor_shape.dim] == [-1, config["max_length"]]
        assert list(default.outputs) == ["generated_ids"]
        assert default.outputs["generated_ids"].dtype == tf.int32.as_datatype_enum

        assert config["portable"] is True and config["task"] == "seq2seq"
        assert config["client_tokenizer"] == client_tokenizer
        assert config["source_prefix"] == "translate: "
        assert config["num_beams"] == beams and config["inputs"] == ["input_ids",
                                                                      "attention_mask"]
        assert config["decode"]["skip_special_tokens"] is True
        if client_tokenizer != "byt5":
            assert (assets / client_tokenizer).is_file()

        logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in
                tf.data.TFRecordDataset(str(assets / "tf_serving_warmup_requests"))]
        shapes = [tf.make_ndarray(log.predict_log.request.inputs["input_ids"]).shape
                  for log in logs]
        assert shapes == [(1, config["max_length"]), (2, config["max_length"]),
                          (3, config["max_length"])]


@pytest.mark.slow
def test_parity_check_fails_the_export_when_the_client_would_tokenise_differently(
        tmp_path, byt5_run_dir, monkeypatch):
    import export
    from export import portable_seq2seq_export as module
    from export.errors import ParityError

    write_assets = module.PortableSeq2SeqExport.write_assets

    def without_prefix(self, assets_extra):  # a client that forgets the source prefix
        return {**write_assets(self, assets_extra), "source_prefix": ""}

    monkeypatch.setattr(module.PortableSeq2SeqExport, "write_assets", without_prefix)
    base = tmp_path / "models"

    with pytest.raises(ParityError, match=r"client tokenises differently.*ByT5Tokenizer.*"
                                          r"input_ids"):
        export.export_model(byt5_run_dir, base, portable=True)
    assert not base.exists()


def test_a_slow_only_tokenizer_is_refused_naming_it(tmp_path, spm_model_dir):
    from transformers import T5Tokenizer

    from export.errors import UnsupportedTokenizerError
    from export.portable_seq2seq_export import _client_tokenizer

    slow = T5Tokenizer.from_pretrained(spm_model_dir)
    run = type("Run", (), {"path": tmp_path})()
    with pytest.raises(UnsupportedTokenizerError,
                       match=r"Expected a fast tokenizer.*or ByT5's byte tokenizer\. Received: "
                             r"T5Tokenizer .*slow only"):
        _client_tokenizer(slow, run)


def test_the_client_refuses_a_default_seq2seq_export(tmp_path):
    from serving.client_tokenizer import ClientTokenizer

    assets = tmp_path / "1" / "assets.extra"
    assets.mkdir(parents=True)
    (assets / "export_config.json").write_text(json.dumps(
        {"task": "seq2seq", "max_length": 24, "source_prefix": "translate: "}))
    with pytest.raises(ValueError, match=r"Not a portable export.*Received: portable=None"):
        ClientTokenizer.from_path(tmp_path)
    config = {"task": "summarization", "max_length": 24, "portable": True}
    (assets / "export_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"No client-side tokenisation for 'summarization' "
                                         r"exports.*seq2seq"):
        ClientTokenizer.from_path(tmp_path / "1")
