"""`export_model(..., portable=True)` of a question-answering run: core TensorFlow ops only
(checked in a process that cannot import tensorflow_text), token id window signatures, the
client's tokenizer and token id warm-up requests in `assets.extra/`, a parity check that cuts
windows with the client's code, and clear refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from export.saved_model_signatures import read_saved_model
from tests.export.test_portable_export import run_probe
from tests.question_answering_fixtures import QA_DOC_STRIDE
from tests.question_answering_fixtures import QA_MAX_LENGTH
from tests.question_answering_fixtures import long_context

TOKEN_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
QUESTIONS = ["where is rome ?", "where is paris ?", "", "Where is the café?"]


def _contexts() -> list[str]:
    rome, _ = long_context("rome", "italy", fillers=16)
    return [rome, "the river is long . the city of paris is in france .", "",
            "The café is in Zürich 北京, naïve."]


def _hf_windows(tokenizer, questions, contexts) -> dict:
    return tokenizer(questions, contexts, truncation="only_second", max_length=QA_MAX_LENGTH,
                     stride=QA_DOC_STRIDE, return_overflowing_tokens=True, padding="longest",
                     return_tensors="np")


def signature_defs(export_dir: Path) -> dict:
    return read_saved_model(export_dir).meta_graphs[0].signature_def


# ------------------------------------------------------------------ core ops, fresh process

def test_every_op_is_core_tensorflow_and_the_model_runs_without_tensorflow_text(
        tmp_path, qa_portable_export, qa_export, qa_reference):
    model, tokenizer = qa_reference
    encoded = _hf_windows(tokenizer, QUESTIONS, _contexts())
    inputs = {name: encoded[name].tolist() for name in TOKEN_INPUTS}
    expected = model(**{k: tf.constant(v) for k, v in inputs.items()}, training=False)
    portable, text = str(qa_portable_export.path), str(qa_export.path)

    report = run_probe(tmp_path, {portable: inputs, text: inputs})

    assert report["tensorflow_text_imported"] is False
    # The control: the text export's tokenizer ops are missing there, so the probe can fail.
    assert {"RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets"} <= set(
        report[text]["unregistered"])
    assert "load_error" in report[text]
    entry = report[portable]
    assert entry["unregistered"] == [], entry["unregistered"]
    assert {"MatMul", "ReadVariableOp"} <= set(entry["ops"])
    assert "load_error" not in entry, entry.get("load_error")
    mask = encoded["attention_mask"].astype(bool)
    assert len(mask) > len(QUESTIONS)  # the long context has several windows
    for name in ("start_logits", "end_logits"):
        got = np.array(entry["outputs"][name])
        want = getattr(expected, name).numpy()
        np.testing.assert_allclose(got[mask], want[mask], atol=1e-4)
        assert np.ptp(want[mask]) > 1.0  # trained: logits depend on the tokens


# ------------------------------------------------------------------------------ signatures

def test_signatures_take_token_id_windows_and_give_the_text_exports_token_outputs(
        qa_portable_export, qa_export):
    portable = signature_defs(qa_portable_export.path)
    text = signature_defs(qa_export.path)

    assert qa_portable_export.signatures == ("serving_default", "tokens")
    assert sorted(portable) == sorted(text) == [
        "__saved_model_init_op", "serving_default", "tokens"]
    for name in ("serving_default", "tokens"):
        signature = portable[name]
        assert sorted(signature.inputs) == sorted(TOKEN_INPUTS)
        for info in signature.inputs.values():
            assert info.dtype == tf.int32.as_datatype_enum
            assert [d.size for d in info.tensor_shape.dim] == [-1, -1]
        assert {k: v.dtype for k, v in signature.outputs.items()} == {
            "start_logits": tf.float32.as_datatype_enum,
            "end_logits": tf.float32.as_datatype_enum}
        for side in ("inputs", "outputs"):
            want = {k: (v.dtype, v.tensor_shape) for k, v in getattr(text["tokens"], side).items()}
            assert {k: (v.dtype, v.tensor_shape)
                    for k, v in getattr(signature, side).items()} == want


def test_assets_extra_hold_the_client_tokenizer_config_and_token_warmup_requests(
        qa_portable_export):
    from tensorflow_serving.apis import prediction_log_pb2

    assets = qa_portable_export.path / "assets.extra"
    config = json.loads((assets / "export_config.json").read_text())
    assert config["portable"] is True
    assert config["task"] == "question-answering"
    assert (config["max_length"], config["doc_stride"], config["max_answer_length"]) == (
        QA_MAX_LENGTH, QA_DOC_STRIDE, 5)
    assert config["version_2_with_negative"] is False
    assert config["inputs"] == TOKEN_INPUTS
    assert config["outputs"] == ["start_logits", "end_logits"]
    assert config["client_tokenizer"] == "tokenizer/tokenizer.json"
    assert config["special_token_ids"] == {"pad": 0}
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        assert (assets / "tokenizer" / name).is_file(), name

    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in
            tf.data.TFRecordDataset(str(assets / "tf_serving_warmup_requests"))]
    requests = [log.predict_log.request for log in logs]
    assert len(requests) == 3 and all(log.HasField("predict_log") for log in logs)
    rows = []
    for request in requests:
        assert request.model_spec.signature_name == "serving_default"
        assert sorted(request.inputs) == sorted(TOKEN_INPUTS)
        ids = tf.make_ndarray(request.inputs["input_ids"])
        assert ids.dtype == np.int32 and ids.shape[1] <= QA_MAX_LENGTH
        assert tf.make_ndarray(request.inputs["token_type_ids"]).max() == 1
        rows.append(ids.shape[0])
    assert rows[:2] == [1, 2] and rows[2] > 4  # the last pair's context spans several windows


# ------------------------------------------------------------------------ checks and errors

def _export_class(run_dir, **options):
    from export.portable_question_answering_export import PortableQuestionAnsweringExport
    from export.run_directory import RunDirectory

    return PortableQuestionAnsweringExport(RunDirectory.open(run_dir), **options)


def _written(task_export, directory: Path) -> Path:
    """Saves the export and writes its assets as `export_model` does, without checking."""
    task_export.save(directory)
    assets = directory / "assets.extra"
    assets.mkdir()
    config = {"task": "question-answering", "max_length": task_export.max_length,
              **task_export.write_assets(assets)}
    (assets / "export_config.json").write_text(json.dumps(config))
    return directory


def test_parity_check_fails_when_clients_would_cut_other_windows(qa_run_dir, tmp_path):
    from export.errors import ParityError

    task_export = _export_class(qa_run_dir, parity_texts=[("where is PARIS ?", "PARIS is in "
                                                                                "FRANCE .")])
    export_dir = _written(task_export, tmp_path / "1")
    assert task_export.check_parity(export_dir) <= 1e-4
    tokenizer_json = export_dir / "assets.extra" / "tokenizer" / "tokenizer.json"
    state = json.loads(tokenizer_json.read_text())
    state["normalizer"]["lowercase"] = False  # clients would no longer lower-case
    tokenizer_json.write_text(json.dumps(state))

    with pytest.raises(ParityError, match="Clients would tokenise differently"):
        task_export.check_parity(export_dir)


def test_parity_check_fails_when_the_saved_model_differs(qa_run_dir, tmp_path):
    from export.errors import ParityError

    task_export = _export_class(qa_run_dir, parity_texts=["the city of paris is in france ."])
    export_dir = _written(task_export, tmp_path / "1")
    variable = task_export.model.qa_outputs.kernel
    variable.assign(variable + 0.5)

    with pytest.raises(ParityError, match="logits differ"):
        task_export.check_parity(export_dir)


def test_parity_check_fails_when_clients_would_answer_differently(qa_run_dir, tmp_path,
                                                                   monkeypatch):
    import dataclasses

    from export.errors import ParityError
    from serving.portable_question_answering_spans import AnswerSpanChooser

    task_export = _export_class(qa_run_dir, parity_texts=[
        ("where is paris ?", "the river is long . the city of paris is in france .")])
    export_dir = _written(task_export, tmp_path / "1")
    assert task_export.check_parity(export_dir) <= 1e-4
    choose = AnswerSpanChooser.choose

    def off_by_one(self, *args, **kwargs):  # a client bug: answers lose their last character
        return [dataclasses.replace(p, answer=p.answer[:-1], end=p.end - 1)
                for p in choose(self, *args, **kwargs)]

    monkeypatch.setattr(AnswerSpanChooser, "choose", off_by_one)
    with pytest.raises(ParityError, match=r"would answer differently.*"
                                          r"Expected \('france', 44, 50\)\. "
                                          r"Received: \('franc', 44, 49\)"):
        task_export.check_parity(export_dir)


def test_refuses_a_tokenizer_without_tokenizer_json(qa_run_dir, tmp_path, monkeypatch):
    import export
    from export.errors import UnsupportedTokenizerError
    from export.run_directory import RunDirectory
    from transformers import BertTokenizer

    monkeypatch.setattr(RunDirectory, "load_tokenizer",
                        lambda self: BertTokenizer.from_pretrained(self.path))
    base = tmp_path / "models"

    with pytest.raises(UnsupportedTokenizerError, match=r"fast tokenizer.*Received: "
                                                        r"BertTokenizer"):
        export.export_model(qa_run_dir, base, portable=True)
    assert not base.exists()


def test_refuses_left_padding_and_a_doc_stride_without_room(qa_run_dir, tmp_path):
    import export
    from export.errors import ExportError
    from export.errors import UnsupportedTokenizerError

    run = shutil.copytree(qa_run_dir, tmp_path / "run")
    config_file = run / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["padding_side"] = "left"
    config_file.write_text(json.dumps(config))
    with pytest.raises(UnsupportedTokenizerError, match="padding_side='right'"):
        export.export_model(run, tmp_path / "a", portable=True)

    config["padding_side"] = "right"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"doc_stride must be smaller than max_length - 4"):
        export.export_model(run, tmp_path / "b", portable=True, max_length=20)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_export_portable_writes_a_question_answering_version(tmp_path, qa_run_dir):
    from tfinetune.cli.export import command

    base = tmp_path / "models"
    result = CliRunner().invoke(command, [str(qa_run_dir), "--base-path", str(base),
                                          "--portable", "--version", "3"])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(base / "3")
    config = json.loads((base / "3" / "assets.extra" / "export_config.json").read_text())
    assert config["portable"] is True and config["task"] == "question-answering"
    assert sorted(signature_defs(base / "3")["serving_default"].inputs) == sorted(TOKEN_INPUTS)


# ------------------------------------------------------------------------ other tokenizers

def _write_run(run: Path, kind: str) -> None:
    """A tiny randomly initialised QA run of `kind` (DistilBERT: no token_type_ids; RoBERTa:
    a byte-level BPE tokenizer, `<s> q </s></s> c </s>`, which the text export refuses)."""
    import yaml
    from tests.question_answering_fixtures import QA_VOCAB

    tf.keras.utils.set_random_seed(3)
    run.mkdir()
    if kind == "distilbert":
        from transformers import DistilBertConfig
        from transformers import DistilBertTokenizerFast
        from transformers import TFDistilBertForQuestionAnswering

        (run.parent / "vocab.txt").write_text("\n".join(QA_VOCAB) + "\n", encoding="utf-8")
        DistilBertTokenizerFast(vocab_file=str(run.parent / "vocab.txt")).save_pretrained(run)
        model = TFDistilBertForQuestionAnswering(DistilBertConfig(
            vocab_size=len(QA_VOCAB), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
            max_position_embeddings=128))
    else:
        from tokenizers import ByteLevelBPETokenizer
        from transformers import RobertaConfig
        from transformers import RobertaTokenizerFast
        from transformers import TFRobertaForQuestionAnswering

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator([" ".join(QA_VOCAB)] * 3 + [q + " " + c for q, c in zip(
            QUESTIONS, _contexts())], vocab_size=300,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        bpe.save_model(str(run.parent))
        tokenizer = RobertaTokenizerFast(vocab_file=str(run.parent / "vocab.json"),
                                         merges_file=str(run.parent / "merges.txt"))
        tokenizer.save_pretrained(run)
        model = TFRobertaForQuestionAnswering(RobertaConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64, max_position_embeddings=130,
            type_vocab_size=1, pad_token_id=tokenizer.pad_token_id))
    model(model.dummy_inputs)
    model.save_pretrained(run)
    (run / "fit_config.yaml").write_text(yaml.safe_dump({
        "task": "question-answering", "model": kind, "max_length": QA_MAX_LENGTH,
        "doc_stride": QA_DOC_STRIDE, "max_answer_length": 5}), encoding="utf-8")


@pytest.mark.parametrize("kind", ["distilbert", "roberta"])  # ~10 s each
def test_runs_of_other_models_and_tokenizers_export_and_answer_as_training_decodes(kind,
                                                                                   tmp_path):
    import export
    from export.errors import UnsupportedTokenizerError
    from serving.client_tokenizer import ClientTokenizer
    from tests.question_answering_fixtures import reference_answers
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForQuestionAnswering

    run = tmp_path / "run"
    _write_run(run, kind)
    if kind == "roberta":
        with pytest.raises(UnsupportedTokenizerError):  # the in-graph tokenizer is WordPiece
            export.export_model(run, tmp_path / "text")

    result = export.export_model(run, tmp_path / "models", portable=True)

    assert result.max_abs_difference <= 1e-4
    codec = ClientTokenizer.from_path(tmp_path / "models").task_codec
    contexts = _contexts()
    windows = codec.windows.windows(QUESTIONS, contexts)
    loaded = tf.saved_model.load(str(result.path))
    outputs = {name: value.numpy() for name, value in loaded.signatures["serving_default"](
        **{name: tf.constant(value) for name, value in windows.inputs().items()}).items()}
    got = codec.predictions(outputs, windows, contexts)
    # tfinetune's own evaluation: Hugging Face windows and `SpanDecoder`.
    expected = reference_answers(TFAutoModelForQuestionAnswering.from_pretrained(run),
                                 AutoTokenizer.from_pretrained(run), QUESTIONS, contexts)
    assert [(p.answer, p.start, p.end) for p in got] == [
        (a.text, a.start, a.end) for a in expected]
    np.testing.assert_allclose([p.score for p in got], [a.score for a in expected], atol=1e-4)
    assert len(windows) > len(QUESTIONS)
