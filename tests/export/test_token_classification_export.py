"""Token-classification export: signatures, word split and offsets, truncation, parity with the
in-memory model, assets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops the SavedModel uses)

from export.errors import ExportError
from export.errors import ParityError
from export.run_directory import RunDirectory
from export.token_classification_export import TokenClassificationExport
from export.token_classifier_serving_module import OUTPUTS

TEXTS = ["Zoë lives in München", "mr Alice Smith visited New York today", "",
         "  Bob, Carol and Dave met in Rome."]


@pytest.fixture(scope="module")
def loaded(ner_export):
    return tf.saved_model.load(str(ner_export.path))


def serve(loaded, texts):
    outputs = loaded.signatures["serving_default"](text=tf.constant(texts, dtype=tf.string))
    return {key: value.numpy() for key, value in outputs.items()}


def test_export_result_and_signatures(ner_export, loaded):
    assert ner_export.signatures == ("serving_default", "tokens")
    assert ner_export.max_abs_difference < 1e-4
    serving = loaded.signatures["serving_default"]
    assert set(serving.structured_outputs) == set(OUTPUTS)
    assert serving.structured_input_signature[1]["text"].shape.as_list() == [None]
    tokens = loaded.signatures["tokens"]
    assert sorted(tokens.structured_input_signature[1]) == [
        "attention_mask", "input_ids", "token_type_ids"]
    assert tokens.structured_outputs["logits"].shape.as_list() == [None, None, 5]


def test_serving_default_tags_words_with_byte_offsets(loaded):
    outputs = serve(loaded, TEXTS)

    assert outputs["word_count"].tolist() == [4, 7, 0, 9]
    assert outputs["tags"][0].tolist()[:4] == [b"B-PER", b"O", b"O", b"B-LOC"]
    # Byte offsets: "Zoë" is 4 bytes, "München" 8.
    assert outputs["word_start"][0][:4].tolist() == [0, 5, 11, 14]
    assert outputs["word_end"][0][:4].tolist() == [4, 10, 13, 22]
    assert outputs["tags"][1][:7].tolist() == [b"O", b"B-PER", b"I-PER", b"O", b"B-LOC",
                                               b"I-LOC", b"O"]
    data = TEXTS[3].encode()
    words = [data[s:e].decode() for s, e in zip(outputs["word_start"][3], outputs["word_end"][3])]
    assert words == ["Bob", ",", "Carol", "and", "Dave", "met", "in", "Rome", "."]
    assert outputs["tags"][3].tolist() == [b"B-PER", b"O", b"B-PER", b"O", b"B-PER", b"O", b"O",
                                           b"B-LOC", b"O"]
    # Padding past word_count.
    assert set(outputs["tags"][0][4:].tolist()) == {b""} == set(outputs["tags"][2].tolist())
    assert np.all(outputs["scores"][2] == 0) and np.all(outputs["scores"][0][:4] > 0.5)


def test_word_split_matches_the_hugging_face_pre_tokenizer(ner_run_dir, loaded):
    tokenizer = RunDirectory.open(ner_run_dir).load_tokenizer()
    texts = ["Dr. O'Neil met Li Lei in Berlin (Germany)...", "naïve café-owner Ærø «bonjour»",
             "tabs\tand\nnew\u00a0lines,  €5 & 100%"]
    outputs = serve(loaded, texts)
    for i, text in enumerate(texts):
        count = outputs["word_count"][i]
        data = text.encode()
        chars = [len(data[:offset].decode()) for offset in outputs["word_start"][i][:count]]
        ends = [len(data[:offset].decode()) for offset in outputs["word_end"][i][:count]]
        expected = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
        assert list(zip(chars, ends)) == [span for _, span in expected], text


def test_cjk_characters_are_words_of_their_own(loaded):
    # As Hugging Face's BertNormalizer (handle_chinese_chars) makes them before pre-tokenizing.
    text = "Alice met 李雷 in Paris"
    outputs = serve(loaded, [text])
    data = text.encode()
    words = [data[s:e].decode() for s, e in zip(outputs["word_start"][0], outputs["word_end"][0])]
    assert words == ["Alice", "met", "李", "雷", "in", "Paris"]


def test_long_texts_are_tagged_in_consecutive_windows(ner_run_dir, loaded):
    tokenizer = RunDirectory.open(ner_run_dir).load_tokenizer()
    # "in" + 20 × "mun ##chen" = 41 pieces; max_length 32 → windows of 30 pieces. The 15th
    # München starts at piece 29 (window 1) and ends at piece 30 (window 2).
    text = "in " + " ".join(["München"] * 20)

    outputs = serve(loaded, [text, "Paris"])
    encoded = {key: value.numpy() for key, value in loaded.tokenize(
        tf.constant([text, "Paris"])).items()}

    assert outputs["word_count"].tolist() == [21, 1]
    assert encoded["window_count"].tolist() == [2, 1]
    assert encoded["word_window"][0].tolist() == [0] * 16 + [1] * 5
    assert encoded["word_position"][0].tolist() == [1, *range(2, 31, 2), *range(2, 12, 2)]
    assert encoded["word_window"][1][0] == 2  # the second text's window comes after them
    pieces = tokenizer(text.split(), is_split_into_words=True, add_special_tokens=False)[
        "input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert encoded["input_ids"][0].tolist() == [cls, *pieces[:30], sep]
    assert encoded["input_ids"][1][:13].tolist() == [cls, *pieces[30:], sep]
    assert encoded["attention_mask"][1].sum() == 13
    assert set(outputs["tags"][0].tolist()) == {b"B-LOC", b"O"}  # "in" is O
    assert outputs["tags"][0][0] == b"O"


def test_parity_holds_across_window_boundaries(ner_run_dir, ner_export):
    text = "in " + " ".join(["München"] * 20) + " Alice Smith lives in Paris ."
    task_export = TokenClassificationExport(RunDirectory.open(ner_run_dir),
                                            parity_texts=[text, "Zoë"])

    assert task_export.check_parity(ner_export.path) < 1e-4


def test_scores_equal_the_in_memory_model(ner_run_dir, loaded):
    from transformers import TFAutoModelForTokenClassification

    run = RunDirectory.open(ner_run_dir)
    tokenizer = run.load_tokenizer()
    model = TFAutoModelForTokenClassification.from_pretrained(ner_run_dir)
    words = ["Zoë", "lives", "in", "München"]
    encoded = tokenizer(words, is_split_into_words=True, return_tensors="tf")
    probabilities = tf.nn.softmax(model(dict(encoded)).logits, axis=-1).numpy()[0]
    first = [encoded.word_ids(0).index(word) for word in range(len(words))]

    outputs = serve(loaded, [" ".join(words)])

    np.testing.assert_allclose(outputs["scores"][0], probabilities[first].max(axis=-1),
                               atol=1e-5)
    assert [tag.decode() for tag in outputs["tags"][0]] == [
        run.labels[i] for i in probabilities[first].argmax(axis=-1)]


def test_assets_extra(ner_export):
    assets = ner_export.path / "assets.extra"
    config = json.loads((assets / "export_config.json").read_text())
    assert config["task"] == "token-classification"
    assert config["tags"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"] == config["labels"]
    assert config["outputs"] == list(OUTPUTS) and config["max_length"] == 32
    assert config["signatures"] == ["serving_default", "tokens"]
    assert json.loads((assets / "labels.json").read_text())["labels"] == config["tags"]
    assert (assets / "tokenizer" / "vocab.txt").is_file()
    assert (assets / "fit_config.yaml").is_file()
    from tensorflow_serving.apis import prediction_log_pb2

    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in
            tf.data.TFRecordDataset(str(assets / "tf_serving_warmup_requests"))]
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == [
        "serving_default"] * 3
    assert [log.predict_log.request.inputs["text"].tensor_shape.dim[0].size
            for log in logs][:2] == [1, 2]


def test_parity_check_catches_a_model_that_differs(ner_run_dir, ner_export):
    task_export = TokenClassificationExport(RunDirectory.open(ner_run_dir),
                                            parity_texts=["Zoë lives in München"])
    bias = task_export.model.classifier.bias
    bias.assign(bias + tf.constant([0.0, 0.0, 0.0, 0.5, 0.0]))

    with pytest.raises(ParityError, match="differ from the in-memory model"):
        task_export.check_parity(ner_export.path)


def test_invalid_max_length_and_parity_texts(ner_run_dir):
    run = RunDirectory.open(ner_run_dir)
    with pytest.raises(ExportError, match="at most 64"):
        TokenClassificationExport(run, max_length=65)
    with pytest.raises(ExportError, match="at least 3"):
        TokenClassificationExport(run, max_length=2)
    with pytest.raises(ExportError, match="parity_texts"):
        TokenClassificationExport(run, parity_texts="one string")


def test_only_the_old_tf_text_ops_that_stock_tf_serving_has(ner_export):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString(
        (ner_export.path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node} | {
        node.op for function in graph.library.function for node in function.node_def}

    # Everything else is core TensorFlow (`tf.raw_ops`); no FastBertNormalize /
    # FastWordpieceTokenizeWithOffsets.
    assert {op for op in ops if not hasattr(tf.raw_ops, op)} == {
        "NormalizeUTF8", "RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets"}


@pytest.fixture(scope="module")
def cased_distilbert_ner_run_dir(tmp_path_factory):
    """A NER run directory with a cased DistilBERT (no token_type_ids, accents kept), seeded
    weights large enough that scores vary per word."""
    import tf_keras
    import yaml
    from transformers import DistilBertConfig
    from transformers import DistilBertTokenizerFast
    from transformers import TFDistilBertForTokenClassification

    from tests.token_classification_fixtures import NER_VOCAB

    tags = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    run_dir = tmp_path_factory.mktemp("run-ner-distilbert")
    vocab = NER_VOCAB + ["Zoë", "Zoe", "München", "Alice", "Paris", "New", "York", "##ë"]
    (run_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = DistilBertTokenizerFast(vocab_file=str(run_dir / "vocab.txt"),
                                        do_lower_case=False)
    tokenizer.save_pretrained(run_dir)
    tf_keras.utils.set_random_seed(1)
    model = TFDistilBertForTokenClassification(DistilBertConfig(
        vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
        max_position_embeddings=64, num_labels=5, id2label=dict(enumerate(tags)),
        label2id={tag: i for i, tag in enumerate(tags)}, initializer_range=0.5))
    model(model.dummy_inputs)
    model.save_pretrained(run_dir)
    (run_dir / "labels.json").write_text(json.dumps({"labels": tags}), encoding="utf-8")
    (run_dir / "fit_config.yaml").write_text(yaml.safe_dump(
        {"task": "token-classification", "max_length": 24}), encoding="utf-8")
    return run_dir


@pytest.mark.slow  # ~25 s: one more export
def test_cased_distilbert_ner_exports_and_matches(cased_distilbert_ner_run_dir, tmp_path):
    import export
    from transformers import TFAutoModelForTokenClassification

    result = export.export_model(cased_distilbert_ner_run_dir, tmp_path)
    loaded = tf.saved_model.load(str(result.path))
    assert result.max_abs_difference < 1e-4
    text = "Zoë and Zoe met Alice in München , New York"
    outputs = serve(loaded, [text])

    run = RunDirectory.open(cased_distilbert_ner_run_dir)
    tokenizer = run.load_tokenizer()
    words = text.split()
    encoded = tokenizer(words, is_split_into_words=True, return_tensors="tf")
    assert "token_type_ids" not in encoded
    # Cased: "Zoë" keeps its accent (one vocabulary entry), unlike the uncased model.
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])[1] == "Zoë"
    model = TFAutoModelForTokenClassification.from_pretrained(cased_distilbert_ner_run_dir)
    probabilities = tf.nn.softmax(model(dict(encoded)).logits, axis=-1).numpy()[0]
    first = [encoded.word_ids(0).index(word) for word in range(len(words))]
    assert outputs["word_count"].tolist() == [len(words)]
    np.testing.assert_allclose(outputs["scores"][0], probabilities[first].max(axis=-1),
                               atol=1e-5)
    assert len(set(np.round(outputs["scores"][0], 3))) > 3  # scores really vary per word
