"""Question-answering export: signatures, assets, in-graph windows and span choice against the
Hugging Face tokenizer and the in-memory model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.question_answering_fixtures import QA_DOC_STRIDE
from tests.question_answering_fixtures import QA_MAX_LENGTH
from tests.question_answering_fixtures import long_context
from tests.question_answering_fixtures import reference_answers

QUESTIONS = ["where is paris ?", "where is rome ?", "Where is Oslo?", "where is lisbon ?",
             "where is x ?", "where is zurich ?"]


def _contexts() -> list[str]:
    rome, _ = long_context("rome", "italy")
    lisbon, _ = long_context("lisbon", "norway", fillers=20)
    return ["the river is long . the city of paris is in france .", rome,
            "The City of OSLO is in Austria. The park has a green tree.", lisbon, "",
            "the city of Zürich is in Brasil . cafés 北京 ."]


@pytest.fixture(scope="module")
def loaded(qa_export):
    import tensorflow as tf

    return tf.saved_model.load(str(qa_export.path))


def _serve(loaded, questions, contexts) -> list[tuple[str, int, int, float]]:
    import tensorflow as tf

    outputs = loaded.signatures["serving_default"](question=tf.constant(questions, tf.string),
                                                   context=tf.constant(contexts, tf.string))
    return [(answer.decode("utf-8"), int(start), int(end), float(score)) for answer, start, end,
            score in zip(*(outputs[name].numpy() for name in ("answer", "start", "end",
                                                              "score")))]


def test_export_has_the_question_answering_signatures_and_assets(qa_export, qa_run_dir):
    import tensorflow as tf

    assert qa_export.signatures == ("serving_default", "tokens")
    assert qa_export.max_abs_difference <= 1e-4
    extra = qa_export.path / "assets.extra"
    assert sorted(path.name for path in extra.iterdir()) == [
        "export_config.json", "fit_config.yaml", "tf_serving_warmup_requests", "tokenizer"]
    config = json.loads((extra / "export_config.json").read_text(encoding="utf-8"))
    assert config["task"] == "question-answering"
    assert config["labels"] == []
    assert config["max_length"] == QA_MAX_LENGTH
    assert config["doc_stride"] == QA_DOC_STRIDE
    assert config["max_answer_length"] == 5
    assert config["version_2_with_negative"] is False
    assert config["inputs"] == ["question", "context"]
    assert config["outputs"] == ["answer", "start", "end", "score"]

    loaded = tf.saved_model.load(str(qa_export.path))
    serving = loaded.signatures["serving_default"]
    assert sorted(serving.structured_input_signature[1]) == ["context", "question"]
    assert {name: (spec.dtype.name, spec.shape.as_list())
            for name, spec in serving.structured_outputs.items()} == {
        "answer": ("string", [None]), "start": ("int64", [None]), "end": ("int64", [None]),
        "score": ("float32", [None])}
    tokens = loaded.signatures["tokens"]
    assert sorted(tokens.structured_outputs) == ["end_logits", "start_logits"]


def test_warmup_requests_are_predict_requests_with_a_long_context(qa_export):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = qa_export.path / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(path))]
    sizes = [log.predict_log.request.inputs["question"].tensor_shape.dim[0].size
             for log in logs]
    assert sizes == [1, 2, 4]
    longest = max(len(value) for value in logs[-1].predict_log.request.inputs[
        "context"].string_val)
    assert longest > QA_MAX_LENGTH * 4  # several windows


def test_windows_and_offsets_are_the_hugging_face_tokenizers(loaded, qa_reference):
    import tensorflow as tf

    _, tokenizer = qa_reference
    contexts = _contexts()
    windows = loaded.windows(tf.constant(QUESTIONS), tf.constant(contexts))
    encoded = tokenizer(QUESTIONS, contexts, truncation="only_second", max_length=QA_MAX_LENGTH,
                        stride=QA_DOC_STRIDE, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding="longest")
    assert windows["example"].numpy().tolist() == encoded["overflow_to_sample_mapping"]
    # The 20-filler context needs several windows, the empty one a window of its own.
    assert encoded["overflow_to_sample_mapping"].count(3) >= 3
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(windows[name].numpy(), np.array(encoded[name]))
    for row in range(len(encoded["input_ids"])):
        sequence_ids = encoded.sequence_ids(row)
        expected = [list(offset) if sequence_id == 1 else [-1, -1]
                    for offset, sequence_id in zip(encoded["offset_mapping"][row], sequence_ids)]
        got = np.stack([windows["offset_start"].numpy()[row],
                        windows["offset_end"].numpy()[row]], axis=1).tolist()
        assert got == expected


TRICKY_CONTEXTS = [
    "e\u0301cole is in paris", "ΟΔΟΣ ΟΔΟΣ paris", "a\u200bb paris", "\x00ctrl paris",
    "İstanbul is in france", "😀 fun paris 😀", "tab\there\r\nnew", "ﬁne ǅ Straße",
    "\u00a0 nbsp\u3000ideographic", "x" * 120 + " paris", "Ａｂｃ full-width",
    "\ufffd replacement", "a\u0300\u0301\u0302 b", "日本語のテキスト paris",
]


def test_offsets_of_unusual_characters_are_the_hugging_face_tokenizers(loaded, qa_reference):
    """Accents (composed and combining), control and zero-width characters, astral emoji,
    full-width letters, a word over 100 bytes ([UNK]), CJK."""
    import tensorflow as tf

    _, tokenizer = qa_reference
    questions = ["where is paris ?"] * len(TRICKY_CONTEXTS)
    windows = loaded.windows(tf.constant(questions), tf.constant(TRICKY_CONTEXTS))
    encoded = tokenizer(questions, TRICKY_CONTEXTS, truncation="only_second",
                        max_length=QA_MAX_LENGTH, stride=QA_DOC_STRIDE,
                        return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding="longest")
    np.testing.assert_array_equal(windows["input_ids"].numpy(), np.array(encoded["input_ids"]))
    for row in range(len(encoded["input_ids"])):
        sequence_ids = encoded.sequence_ids(row)
        expected = [tuple(offset) for offset, sequence_id in
                    zip(encoded["offset_mapping"][row], sequence_ids) if sequence_id == 1]
        starts = windows["offset_start"].numpy()[row]
        got = [(int(start), int(end)) for start, end in
               zip(starts, windows["offset_end"].numpy()[row]) if start >= 0]
        assert got == expected, TRICKY_CONTEXTS[encoded["overflow_to_sample_mapping"][row]]


def test_served_answers_are_the_in_memory_models(loaded, qa_reference):
    model, tokenizer = qa_reference
    contexts = _contexts()
    served = _serve(loaded, QUESTIONS, contexts)
    expected = reference_answers(model, tokenizer, QUESTIONS, contexts)
    for (answer, start, end, score), reference in zip(served, expected):
        assert (answer, start, end) == (reference.text, reference.start, reference.end)
        assert score == pytest.approx(reference.score, abs=1e-4)
        assert 0.0 < score <= 1.0


def test_trained_model_answers_with_character_offsets(loaded):
    contexts = _contexts()
    served = _serve(loaded, QUESTIONS, contexts)
    answers = [answer for answer, *_ in served]
    # The answer of the 20-filler context is in a later window than the first.
    assert answers[:4] == ["france", "italy", "Austria", "norway"]
    assert answers[4] == ""  # an empty context has no span
    assert served[4][1:3] == (0, 0)
    assert answers[5] == "Brasil"
    for (answer, start, end, _), context in zip(served, contexts):
        assert context[start:end] == answer
    assert served[3][1] == contexts[3].index(" in norway") + 4


def test_batches_answer_each_pair_independently(loaded):
    contexts = _contexts()
    together = _serve(loaded, QUESTIONS, contexts)
    alone = [_serve(loaded, [question], [context])[0]
             for question, context in zip(QUESTIONS, contexts)]
    for (answer, start, end, score), single in zip(together, alone):
        assert (answer, start, end) == single[:3]
        assert score == pytest.approx(single[3], abs=1e-5)
    assert _serve(loaded, [], []) == []


def test_version_2_module_answers_nothing_when_cls_wins(qa_reference, qa_run_dir):
    """The in-graph no-answer rule matches `SpanDecoder` (checked on the module before saving,
    with the same trained weights)."""
    import tensorflow as tf

    from export.in_graph_tokenizer import InGraphTokenizer
    from export.question_answering_serving_module import QuestionAnsweringServingModule

    model, tokenizer = qa_reference
    module = QuestionAnsweringServingModule(
        model, InGraphTokenizer.from_hf_tokenizer(tokenizer, max_length=QA_MAX_LENGTH),
        doc_stride=QA_DOC_STRIDE, max_answer_length=5, version_2_with_negative=True)
    # Training labelled windows without the fact with [CLS]: contexts without it say "no" —
    # mostly: the tiny model's training is not bit-reproducible across machines (multi-threaded
    # CPU kernels), so several such contexts are asked and at least one must get no answer.
    questions = ["where is paris ?", "where is paris ?", "where is rome ?", "where is paris ?",
                 "where is rome ?"]
    contexts = ["the city of paris is in france .", "the river is long . a bridge is old .",
                " ".join(["the town has old houses ."] * 6), "the weather is cold today .",
                "a dog runs in the park . the grass is green ."]
    outputs = module.serving_default(tf.constant(questions), tf.constant(contexts))
    expected = reference_answers(model, tokenizer, questions, contexts,
                                 version_2_with_negative=True)
    got = [(answer.decode(), int(start), int(end)) for answer, start, end in zip(
        outputs["answer"].numpy(), outputs["start"].numpy(), outputs["end"].numpy())]
    assert got == [(answer.text, answer.start, answer.end) for answer in expected]
    assert got[0][0] == "france"
    assert ("", 0, 0) in got[1:], got  # the no-answer branch of the graph was taken
    np.testing.assert_allclose(outputs["score"].numpy(), [a.score for a in expected], atol=1e-4)


def test_parity_check_fails_when_the_saved_model_differs(qa_run_dir, tmp_path: Path):
    from export.errors import ParityError
    from export.question_answering_export import QuestionAnsweringExport
    from export.run_directory import RunDirectory

    task_export = QuestionAnsweringExport(RunDirectory.open(qa_run_dir),
                                          parity_texts=["the city of paris is in france ."])
    task_export.save(tmp_path / "1")
    # Change the in-memory model after saving: its logits no longer match the SavedModel's.
    variable = task_export.model.qa_outputs.kernel
    variable.assign(variable + 0.5)
    with pytest.raises(ParityError, match="logits differ"):
        task_export.check_parity(tmp_path / "1")


def test_options_that_do_not_fit_are_refused(qa_run_dir):
    from export.errors import ExportError
    from export.question_answering_export import QuestionAnsweringExport
    from export.run_directory import RunDirectory

    run = RunDirectory.open(qa_run_dir)
    with pytest.raises(ExportError, match=r"max_position_embeddings \(128\)"):
        QuestionAnsweringExport(run, max_length=512)
    with pytest.raises(ExportError, match="doc_stride must be smaller than max_length - 4"):
        QuestionAnsweringExport(run, max_length=20)
    with pytest.raises(ExportError, match="Expected contexts"):
        QuestionAnsweringExport(run, parity_texts=[("only a question",)])


def test_graph_uses_only_ops_stock_tf_serving_has(qa_export):
    """TF Text's `Fast*` ops (FastWordpiece, FastBertNormalize) are missing from older TF
    Serving binaries: the export must not use them."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel.FromString(
        (qa_export.path / "saved_model.pb").read_bytes())
    graph = saved_model.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    assert {"WordpieceTokenizeWithOffsets", "RegexSplitWithOffsets",
            "UnicodeDecodeWithOffsets"} <= ops
    assert not [op for op in ops if op.startswith("Fast")]


def test_a_question_too_long_for_a_window_is_truncated(loaded):
    question = "where is " + "the city of " * 20 + "paris ?"
    context = "the city of paris is in france ."
    (served,) = _serve(loaded, [question], [context])
    # 48 tokens - doc stride 16 - 4: the question keeps 28 tokens, the context gets windows.
    assert served[0] == "france"


@pytest.mark.slow  # ~30-50 s: one more export
def test_distilbert_run_without_token_type_ids_exports(tmp_path):
    """DistilBERT takes no `token_type_ids`: the windows and parity check do without them."""
    import tensorflow as tf
    import yaml
    from transformers import DistilBertConfig
    from transformers import DistilBertTokenizerFast
    from transformers import TFDistilBertForQuestionAnswering

    import export
    from tests.question_answering_fixtures import QA_VOCAB

    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "vocab.txt").write_text("\n".join(QA_VOCAB) + "\n", encoding="utf-8")
    DistilBertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(run)
    tf.keras.utils.set_random_seed(3)
    model = TFDistilBertForQuestionAnswering(DistilBertConfig(
        vocab_size=len(QA_VOCAB), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
        max_position_embeddings=128))
    model(model.dummy_inputs)
    model.save_pretrained(run)
    (run / "fit_config.yaml").write_text(yaml.safe_dump({
        "task": "question-answering", "model": "distilbert", "max_length": QA_MAX_LENGTH,
        "doc_stride": QA_DOC_STRIDE, "max_answer_length": 5}), encoding="utf-8")

    result = export.export_model(run, tmp_path / "models")

    assert result.max_abs_difference <= 1e-4
    loaded = tf.saved_model.load(str(result.path))
    contexts = _contexts()
    served = _serve(loaded, QUESTIONS, contexts)
    for (answer, start, end, _), context in zip(served, contexts):
        assert context[start:end] == answer
