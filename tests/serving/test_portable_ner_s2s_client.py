"""Clients of `--portable` token-classification and seq2seq exports: `serving.Client` with the
export's `ClientTokenizer`, `tfinetune predict --tokenizer` and `tfinetune score --tokenizer`
give the same entities / generated texts as the default export of the same run, through a real
server on port 0; the client's word splitting equals the default export's graph split; the
byte tokenizer equals ByT5's; clear errors."""

from __future__ import annotations

import csv
import functools
import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from serving import Client
from serving import Server
from serving.client_tokenizer import ClientTokenizer
from serving.serving_error import ServingError

#: Longer than one window (max_length 32: 30 pieces), punctuation, accents, CJK, an empty text,
#: odd whitespace, characters that normalise to nothing, an entity at a window edge.
NER_TEXTS = [
    "Zoë lives in München, not in New York!",
    "",
    "Dr. O'Neil met 李雷 in Berlin (Germany)...",
    "  spaces\tand\nnewlines  Alice  ",
    "naïve café-owner Ærø said: «bonjour» to Bob Jones",
    "Alice \u200b met \x07 Bob\u0301 \u0301 in Rome",
    " ".join(["Carol met Dave in Rome, then Emma Brown in London."] * 5),
    "mr Bob Jones visited London today " * 6 + "and Zoë Smith went to Paris",
]
S2S_TEXTS = ["four blue bird house", "one red cat tree", "", "naïve café",
             "  spaces\tand\nnewlines  ", "Hello, World!", "green house " * 20]


def entity_keys(predictions):
    return [[(e["type"], e["start"], e["end"], e["text"]) for e in p.entities]
            for p in predictions]


# ------------------------------------------------------------------------- token classification

@pytest.fixture(scope="module")
def ner_address(ner_export, portable_ner_export):
    server = Server({"ner": ner_export.path.parent,
                     "ner-portable": portable_ner_export.path.parent},
                    port=0, file_system_poll_wait_seconds=0).start()
    yield f"127.0.0.1:{server.port}"
    server.stop(grace=5)


@pytest.mark.parametrize("pad_to_max_length", [False, True])
def test_client_gives_the_default_exports_entities(ner_address, portable_ner_export,
                                                   pad_to_max_length):
    tokenizer = ClientTokenizer.from_path(portable_ner_export.path.parent,
                                          pad_to_max_length=pad_to_max_length)
    assert tokenizer.task == "token-classification"
    with Client(ner_address, "ner") as text_client, Client(
            ner_address, "ner-portable", tokenizer=tokenizer) as portable_client:
        expected = text_client.predict(NER_TEXTS)
        received = portable_client.predict(NER_TEXTS)
        assert portable_client.task() == portable_client.problem_type() == "token-classification"
        assert portable_client.label_names() == []

    assert entity_keys(received) == entity_keys(expected)
    for want, got in zip(expected, received):
        np.testing.assert_allclose([e["score"] for e in got.entities],
                                   [e["score"] for e in want.entities], atol=1e-4)
    # The test means something: entities everywhere, also past the first window.
    long_text = NER_TEXTS[-1]
    assert len(tokenizer.encode([long_text])["input_ids"]) > 1
    assert max(e["start"] for e in received[-1].entities) > len(long_text) * 3 // 4
    assert {e["text"] for e in received[0].entities} >= {"Zoë", "München"}
    assert sum(len(p.entities) for p in received) > 20


_NER_WORDS = ["Alice", "Bob", "Zoë", "Émma", "Smith", "Jones", "Paris", "München", "New",
              "York", "Berlin", "lives", "in", "met", "mr", "visited", "today", "and", "the",
              "office", ",", ".", "!", "(", ")", "«", "»", "李雷", "café-owner", "naïve",
              "Bob\u0301", "\u200b", "\x07", "O'Neil", "2024", "ü"]
_SPACES = [" ", " ", " ", "  ", "\t", "\n", "", "\u00a0", "\u3000"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(_NER_WORDS), st.sampled_from(_SPACES)),
                         min_size=10, max_size=80).map(lambda pairs: "".join(w + s for w, s
                                                                              in pairs))
                | st.just(""), min_size=1, max_size=4))
def test_random_texts_give_the_default_exports_entities(ner_address, portable_ner_export,
                                                        texts):
    tokenizer = _portable_ner_tokenizer(portable_ner_export.path)
    with Client(ner_address, "ner") as text_client, Client(
            ner_address, "ner-portable", tokenizer=tokenizer) as portable_client:
        expected = text_client.predict(texts)
        received = portable_client.predict(texts)
    assert entity_keys(received) == entity_keys(expected)
    for want, got in zip(expected, received):
        np.testing.assert_allclose([e["score"] for e in got.entities],
                                   [e["score"] for e in want.entities], atol=1e-4)


@functools.cache
def _portable_ner_tokenizer(path):
    return ClientTokenizer.from_path(path)


def test_codec_tags_every_word_as_the_default_exports_graph(ner_address, portable_ner_export):
    """Below the entities: every word (O words too) gets the graph's tag, score and offsets."""
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    codec = ClientTokenizer.from_path(portable_ner_export.path).task_codec
    inputs, layouts = codec.windows(NER_TEXTS)
    with grpc.insecure_channel(ner_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        text_request = predict_pb2.PredictRequest()
        text_request.model_spec.name = "ner"
        text_request.inputs["text"].CopyFrom(tf.make_tensor_proto(NER_TEXTS, dtype=tf.string))
        graph = {k: tf.make_ndarray(v) for k, v in
                 stub.Predict(text_request, timeout=60).outputs.items()}
        token_request = predict_pb2.PredictRequest()
        token_request.model_spec.name = "ner-portable"
        for name, values in inputs.items():
            token_request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
        portable = {k: tf.make_ndarray(v) for k, v in
                    stub.Predict(token_request, timeout=60).outputs.items()}

    words = codec.tagged_words(portable, layouts)
    for i, text in enumerate(NER_TEXTS):
        count = int(graph["word_count"][i])
        assert [(tag, start, end) for tag, _, start, end in words[i]] == [
            (graph["tags"][i][j].decode(), int(graph["word_start"][i][j]),
             int(graph["word_end"][i][j])) for j in range(count)], text
        np.testing.assert_allclose([score for _, score, _, _ in words[i]],
                                   graph["scores"][i][:count], atol=1e-4)
    assert sum(len(w) for w in words) > 100


def test_client_one_text_per_request_gives_the_same_entities(ner_address, portable_ner_export):
    tokenizer = ClientTokenizer.from_path(portable_ner_export.path)
    with Client(ner_address, "ner-portable", tokenizer=tokenizer) as client:
        together = client.predict(NER_TEXTS)
        alone = [client.predict([text])[0] for text in NER_TEXTS]
    assert entity_keys(alone) == entity_keys(together)


def test_predict_command_prints_identical_lines_for_both_exports(ner_address,
                                                                 portable_ner_export):
    from tfinetune.cli import predict

    texts = [text for text in NER_TEXTS if text.strip() and "\n" not in text]
    common = ["--server", ner_address, "--batch-size", "3", *texts]
    text = CliRunner().invoke(predict.command, ["--model-name", "ner", *common])
    portable = CliRunner().invoke(predict.command, [
        "--model-name", "ner-portable", "--tokenizer", str(portable_ner_export.path.parent),
        *common])

    assert text.exit_code == 0, text.output
    assert portable.exit_code == 0, portable.output
    assert len(text.stdout.splitlines()) == len(texts)
    assert portable.stdout == text.stdout


def test_score_command_writes_identical_files_for_both_exports(ner_address, tmp_path,
                                                               portable_ner_export):
    from tfinetune.cli import score

    source = tmp_path / "texts.csv"
    with open(source, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "text"])
        writer.writerows([i, text] for i, text in enumerate(NER_TEXTS * 2))
    common = ["--server", ner_address, "--batch-size", "3", "--concurrency", "2", "-q"]
    text = CliRunner().invoke(score.command, [str(source), "--model-name", "ner", "-o",
                                              str(tmp_path / "text.csv"), *common])
    portable = CliRunner().invoke(score.command, [
        str(source), "--model-name", "ner-portable", "-o", str(tmp_path / "portable.csv"),
        "--tokenizer", str(portable_ner_export.path), "--pad-to-max-length", *common])

    assert text.exit_code == 0, text.output
    assert portable.exit_code == 0, portable.output
    written = (tmp_path / "text.csv").read_bytes()
    assert written.count(b'"type"') > 20
    assert (tmp_path / "portable.csv").read_bytes() == written


def test_without_tokenizer_the_client_says_to_pass_one(ner_address):
    with Client(ner_address, "ner-portable") as client:
        with pytest.raises(ServingError) as predict_error:
            client.predict(["Zoë lives in München"])
        with pytest.raises(ServingError) as type_error:
            client.problem_type()
    assert predict_error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "--portable" in predict_error.value.message
    assert "--tokenizer" in predict_error.value.message
    assert type_error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "--tokenizer" in type_error.value.message


def test_text_pairs_are_refused_as_invalid_argument(ner_address, portable_ner_export):
    tokenizer = ClientTokenizer.from_path(portable_ner_export.path)
    with Client(ner_address, "ner-portable", tokenizer=tokenizer) as client:
        with pytest.raises(ServingError) as error:
            client.predict(["Zoë"], ["München"])
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "single texts" in error.value.message


def test_the_default_export_has_no_client_tokenizer(ner_export):
    with pytest.raises(ValueError, match=r"Not a portable export.*\"portable\": true.*"
                                         r"Received: portable=None"):
        ClientTokenizer.from_path(ner_export.path)


def test_codec_rejects_outputs_of_the_wrong_shape(portable_ner_export):
    codec = ClientTokenizer.from_path(portable_ner_export.path).task_codec
    inputs, layouts = codec.windows(["Zoë lives in München", "Bob"])
    tags = len(codec.tags)
    with pytest.raises(ValueError, match=r"'probabilities' has shape \[1, 7, %d\]" % tags):
        codec.predictions({"probabilities": np.zeros((1, 7, tags))}, ["a", "b"], layouts)
    with pytest.raises(ValueError, match=r"no 'probabilities' or 'logits' output"):
        codec.predictions({"tags": np.zeros((2, 3))}, ["a", "b"], layouts)
    logits = np.random.default_rng(0).normal(size=(2, inputs["input_ids"].shape[1], tags))
    from_logits = codec.predictions({"logits": logits}, ["Zoë lives in München", "Bob"],
                                    layouts)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    from_probabilities = codec.predictions({"probabilities": softmax},
                                           ["Zoë lives in München", "Bob"], layouts)
    assert entity_keys(from_logits) == entity_keys(from_probabilities)
    assert sum(len(p.entities) for p in from_logits) > 0
    for a, b in zip(from_logits, from_probabilities):
        np.testing.assert_allclose([e["score"] for e in a.entities],
                                   [e["score"] for e in b.entities], atol=1e-6)


_ALPHABET = ("ab Zé,.!'\t\n\r\u00a0\u200b\u3000李😀$^+<\u0301\x07\x0b\x0c\x1c\x85\u2028-_«"
             "\u2019\u00b7\u00bf\u3002\uff01\ud7ff\x00")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=_ALPHABET, max_size=24) | st.text(max_size=12),
                min_size=1, max_size=8))
def test_word_splitting_equals_the_default_exports_graph(texts):
    from export.token_classifier_serving_module import split_words as graph_split
    from serving.portable_word_splitter import split_words

    words, starts, ends = graph_split(tf.constant(texts, dtype=tf.string))
    for i, text in enumerate(texts):
        expected = [(w.decode("utf-8"), int(s), int(e)) for w, s, e in
                    zip(words[i].numpy(), starts[i].numpy(), ends[i].numpy())]
        assert split_words(text) == expected, text


# ------------------------------------------------------------------------------------ seq2seq

def test_byte_codec_equals_byt5_tokenizer_with_truncation_and_invalid_utf8():
    from transformers import ByT5Tokenizer

    from serving.portable_seq2seq_codec import PortableSeq2SeqCodec

    hf = ByT5Tokenizer()
    codec = PortableSeq2SeqCodec(None, max_length=12, source_prefix="t: ")
    texts = ["", "abc", "naïve café and much more", "李雷😀", "  x  "]
    encoded = codec.encode(texts)
    expected = hf(["t: " + text for text in texts], padding="max_length", truncation=True,
                  max_length=12, return_tensors="np")
    assert np.array_equal(encoded["input_ids"], expected["input_ids"])
    assert np.array_equal(encoded["attention_mask"], expected["attention_mask"])
    rows = np.array([[0, 110, 100, 1, 0, 0], [0, 3 + 0xC3, 3 + 0xA9, 3 + 0xE6, 259, 2],
                     [0, 3 + 0xFF, 35, 1, 120, 0]])
    assert codec.decode(rows) == hf.batch_decode(rows, skip_special_tokens=True)
    with pytest.raises(ValueError, match=r"no text_pairs"):
        codec.encode(["a"], ["b"])

    hf_clean = ByT5Tokenizer(clean_up_tokenization_spaces=True)
    clean = PortableSeq2SeqCodec(None, max_length=64, clean_up_tokenization_spaces=True)
    spaced = clean.encode(["I do n't know , is it ? yes ! it 's done ."])["input_ids"]
    assert clean.decode(spaced) == hf_clean.batch_decode(spaced, skip_special_tokens=True) == [
        "I don't know, is it? yes! it's done."]
    assert codec.decode(spaced) != clean.decode(spaced)


@pytest.fixture(scope="module")
def s2s_address(spm_export, byt5_export, portable_spm_export, portable_byt5_export):
    server = Server({"t5": spm_export.path.parent, "byt5": byt5_export.path.parent,
                     "t5-portable": portable_spm_export.path.parent,
                     "byt5-portable": portable_byt5_export.path.parent},
                    port=0, enable_batching=True, file_system_poll_wait_seconds=0).start()
    yield f"127.0.0.1:{server.port}"
    server.stop(grace=5)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["t5", "byt5"])
def test_client_gives_the_default_exports_generated_text(s2s_address, model,
                                                         portable_spm_export,
                                                         portable_byt5_export):
    base = {"t5": portable_spm_export, "byt5": portable_byt5_export}[model].path.parent
    tokenizer = ClientTokenizer.from_path(base)
    assert tokenizer.task == "seq2seq"
    with Client(s2s_address, model) as text_client, Client(
            s2s_address, f"{model}-portable", tokenizer=tokenizer) as portable_client:
        expected = [p.generated_text for p in text_client.predict(S2S_TEXTS)]
        received = [p.generated_text for p in portable_client.predict(S2S_TEXTS)]
        assert portable_client.task() == portable_client.problem_type() == "seq2seq"
    assert received == expected
    if model == "t5":  # the learned dictionary task: real translations, not empty strings
        assert received[0] == "vier blau vogel haus", received


@pytest.mark.slow
def test_predict_and_score_commands_write_identical_output_for_both_exports(
        s2s_address, tmp_path, portable_spm_export):
    from tfinetune.cli import predict
    from tfinetune.cli import score

    texts = [text for text in S2S_TEXTS if text.strip() and "\n" not in text]
    common = ["--server", s2s_address, *texts]
    text = CliRunner().invoke(predict.command, ["--model-name", "t5", *common])
    portable = CliRunner().invoke(predict.command, [
        "--model-name", "t5-portable", "--tokenizer", str(portable_spm_export.path), *common])
    assert text.exit_code == 0, text.output
    assert portable.exit_code == 0, portable.output
    assert len(text.stdout.splitlines()) == len(texts)
    assert portable.stdout == text.stdout

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                              for i, t in enumerate(S2S_TEXTS)), encoding="utf-8")
    options = ["--server", s2s_address, "--batch-size", "3", "--concurrency", "2", "-q"]
    text = CliRunner().invoke(score.command, [str(source), "--model-name", "t5", "-o",
                                              str(tmp_path / "text.jsonl"), *options])
    portable = CliRunner().invoke(score.command, [
        str(source), "--model-name", "t5-portable", "-o", str(tmp_path / "portable.jsonl"),
        "--tokenizer", str(portable_spm_export.path.parent), *options])
    assert text.exit_code == 0, text.output
    assert portable.exit_code == 0, portable.output
    written = (tmp_path / "text.jsonl").read_bytes()
    assert written.count(b"generated_text") == len(S2S_TEXTS)
    assert (tmp_path / "portable.jsonl").read_bytes() == written
