"""Seq2seq export: in-graph ByT5/SentencePiece tokenizers against Hugging Face, the SavedModel's
`serving_default` (text → generated_text) against the in-memory `generate`, and the parity
check catching a model that differs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import tensorflow as tf

from export.byte_tokenizer import ByteTokenizer
from export.errors import ParityError
from export.errors import UnsupportedTokenizerError
from export.sentencepiece_tokenizer import SentencePieceTokenizer

TEXTS = ["translate: one two", "", "naïve Café one two three four five six",
         "  spaces\tand\nnew  lines ", "hello world, how are you?", "日本語"]
UNSEEN = ["four blue bird house", "four red dog garden", "dog", "ONE Red!"]


def random_id_rows(vocab_size: int, count: int = 300, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    rows = [[rng.randrange(vocab_size) for _ in range(rng.randrange(0, 20))]
            for _ in range(count)]
    width = max(map(len, rows))
    return [row + [0] * (width - len(row)) for row in rows]


def assert_tokenizer_parity(graph_tokenizer, tokenizer, max_length, vocab_size):
    input_ids, mask = graph_tokenizer.tokenize(tf.constant(TEXTS))
    expected = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=max_length)
    np.testing.assert_array_equal(input_ids.numpy(), expected["input_ids"])
    np.testing.assert_array_equal(mask.numpy(), expected["attention_mask"])
    rows = random_id_rows(vocab_size)
    decoded = [text.decode("utf-8") for text in graph_tokenizer.detokenize(
        tf.constant(rows)).numpy()]
    assert decoded == tokenizer.batch_decode(rows, skip_special_tokens=True)


def test_byte_tokenizer_matches_byt5_including_truncation_and_invalid_utf8():
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    graph_tokenizer = ByteTokenizer.from_hf_tokenizer(tokenizer, max_length=12)
    # Random ids cover every byte, so invalid UTF-8 sequences; all specials and extra ids.
    assert_tokenizer_parity(graph_tokenizer, tokenizer, 12, len(tokenizer))


@pytest.mark.parametrize("fast", [True, False])
def test_sentencepiece_tokenizer_matches_fast_and_slow_t5_tokenizers(spm_model_dir, fast):
    from transformers import T5Tokenizer
    from transformers import T5TokenizerFast

    tokenizer = (T5TokenizerFast if fast else T5Tokenizer).from_pretrained(spm_model_dir)
    graph_tokenizer = SentencePieceTokenizer.from_hf_tokenizer(tokenizer, max_length=10)
    assert graph_tokenizer.fast is fast
    # Fast and slow decode differently (leading "▁" pieces, surrounding spaces): both match.
    assert_tokenizer_parity(graph_tokenizer, tokenizer, 10, len(tokenizer))


def test_wordpiece_tokenizer_is_unsupported(tiny_model_dir):
    from transformers import AutoTokenizer

    with pytest.raises(UnsupportedTokenizerError,
                       match="SentencePiece.*Received: BertTokenizerFast without a "
                             "SentencePiece .model file"):
        SentencePieceTokenizer.from_hf_tokenizer(AutoTokenizer.from_pretrained(tiny_model_dir),
                                                 max_length=8)


def in_memory_generation(run_dir, texts, *, prefix, max_length, max_new_tokens, num_beams):
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSeq2SeqLM

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = TFAutoModelForSeq2SeqLM.from_pretrained(run_dir)
    encoded = tokenizer([prefix + text for text in texts], padding=True, truncation=True,
                        max_length=max_length, return_tensors="tf")
    sequences = model.generate(**encoded, max_new_tokens=max_new_tokens, num_beams=num_beams)
    return tokenizer.batch_decode(sequences, skip_special_tokens=True)


@pytest.mark.slow
def test_spm_export_generates_what_the_in_memory_model_generates(spm_export, spm_run_dir):
    assert spm_export.signatures == ("serving_default",)
    assert spm_export.max_abs_difference == 0.0
    loaded = tf.saved_model.load(str(spm_export.path))
    signature = loaded.signatures["serving_default"]
    assert set(signature.structured_outputs) == {"generated_text", "generated_ids"}
    outputs = signature(text=tf.constant(UNSEEN))
    generated = [text.decode("utf-8") for text in outputs["generated_text"].numpy()]
    assert generated == in_memory_generation(spm_run_dir, UNSEEN, prefix="translate: ",
                                             max_length=24, max_new_tokens=20, num_beams=1)
    assert generated[0] and outputs["generated_ids"].shape == (len(UNSEEN), 21)
    # An empty batch is a valid request.
    assert signature(text=tf.constant([], tf.string))["generated_text"].shape == (0,)

    assets = spm_export.path / "assets.extra"
    config = json.loads((assets / "export_config.json").read_text())
    assert {key: config[key] for key in ("task", "labels", "max_length", "source_prefix",
                                         "max_target_length", "num_beams", "tokenizer")} == {
        "task": "seq2seq", "labels": [], "max_length": 24, "source_prefix": "translate: ",
        "max_target_length": 20, "num_beams": 1, "tokenizer": "sentencepiece"}
    assert (assets / "tokenizer" / "spiece.model").is_file()
    assert not (assets / "labels.json").exists()


@pytest.mark.slow
def test_warmup_file_holds_predict_requests_of_one_two_and_three_texts(spm_export):
    from tensorflow_serving.apis import prediction_log_pb2

    path = spm_export.path / "assets.extra" / "tf_serving_warmup_requests"
    sizes = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        sizes.append(len(tf.make_ndarray(request.inputs["text"])))
    assert sizes == [1, 2, 3]


@pytest.mark.slow
def test_byt5_beam_search_export_matches_in_memory_beam_search(byt5_export, byt5_run_dir):
    assert byt5_export.max_abs_difference == 0.0
    config = json.loads((byt5_export.path / "assets.extra" / "export_config.json").read_text())
    assert (config["num_beams"], config["generation"], config["tokenizer"]) == (
        2, "beam search", "byt5")
    loaded = tf.saved_model.load(str(byt5_export.path))
    texts = [*UNSEEN, "x" * 40]  # the last one is cut to max_length=32 bytes
    outputs = loaded.signatures["serving_default"](text=tf.constant(texts))
    generated = [text.decode("utf-8") for text in outputs["generated_text"].numpy()]
    assert generated == in_memory_generation(byt5_run_dir, texts, prefix="translate: ",
                                             max_length=32, max_new_tokens=10, num_beams=2)


@pytest.mark.slow
def test_parity_check_rejects_a_savedmodel_that_generates_differently(byt5_run_dir, tmp_path):
    from export.run_directory import RunDirectory
    from export.seq2seq_export import Seq2SeqExport

    task_export = Seq2SeqExport(RunDirectory.open(byt5_run_dir), max_length=16,
                                parity_texts=["one two", "red"])
    task_export.save(tmp_path / "1")
    # The in-memory model changes after saving: its generations no longer match.
    embeddings = task_export.model.shared.weights[0]
    embeddings.assign(tf.random.stateless_normal(embeddings.shape, seed=[1, 2]) * 10)
    with pytest.raises(ParityError, match="Expected generated_ids=.* for text 'one two'"):
        task_export.check_parity(tmp_path / "1")
