"""A token-classification export served over real gRPC: the official PredictionService stub,
`serving.Client` entities (character offsets cut the right text, non-ASCII included) and the
codec's BIO decoding on fixed examples."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Client
from serving import Server
from serving.token_classification_codec import TokenClassificationCodec
from serving.token_classification_codec import decode_entities


@pytest.fixture(scope="module")
def ner_server(ner_export):
    from serving.server_options import ANY_FREE_PORT

    server = Server({"ner": ner_export.path.parent}, port=0, rest_api_port=ANY_FREE_PORT,
                    file_system_poll_wait_seconds=0).start()
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="module")
def address(ner_server):
    return f"127.0.0.1:{ner_server.port}"


def test_official_stub_predict_returns_per_word_outputs(address):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ner"
    request.model_spec.signature_name = "serving_default"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(
        ["Zoë lives in München", "mr Bob went to Paris"], dtype=tf.string))

    with grpc.insecure_channel(address) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60)

    outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
    assert set(outputs) == {"tags", "scores", "word_start", "word_end", "word_count"}
    assert outputs["word_count"].tolist() == [4, 5]
    assert outputs["tags"].tolist() == [[b"B-PER", b"O", b"O", b"B-LOC", b""],
                                        [b"O", b"B-PER", b"O", b"O", b"B-LOC"]]
    assert outputs["word_start"].tolist()[0][:4] == [0, 5, 11, 14]
    assert outputs["scores"].dtype == np.float32


def test_client_returns_entities_with_character_offsets(address):
    texts = ["Zoë lives in München", "mr Alice Smith visited New York today", "",
             "Émma met Zoë in Rome ."]
    with Client(address, "ner") as client:
        assert client.task() == "token-classification"
        predictions = client.predict(texts)

    entities = [[(e["type"], e["start"], e["end"], e["text"]) for e in p.entities]
                for p in predictions]
    assert entities == [
        [("PER", 0, 3, "Zoë"), ("LOC", 13, 20, "München")],
        [("PER", 3, 14, "Alice Smith"), ("LOC", 23, 31, "New York")],
        [],
        [("PER", 0, 4, "Émma"), ("PER", 9, 12, "Zoë"), ("LOC", 16, 20, "Rome")],
    ]
    for prediction, text in zip(predictions, texts):
        assert prediction.problem_type == "token-classification"
        for entity in prediction.entities:
            assert text[entity["start"]:entity["end"]] == entity["text"]
            assert 0.5 < entity["score"] <= 1.0


def test_entity_score_is_the_mean_of_its_words_scores(address):
    text = "mr Alice Smith visited New York today"
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ner"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([text], dtype=tf.string))
    with grpc.insecure_channel(address) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60)
    scores = tf.make_ndarray(response.outputs["scores"])[0]

    with Client(address, "ner") as client:
        entities = client.predict([text])[0].entities

    assert entities[0]["score"] == pytest.approx((scores[1] + scores[2]) / 2, abs=1e-6)
    assert entities[1]["score"] == pytest.approx((scores[4] + scores[5]) / 2, abs=1e-6)


def test_predict_command_prints_entities(address):
    from tfinetune.cli.predict import command

    result = CliRunner().invoke(command, ["--server", address, "--model-name", "ner",
                                          "Zoë lives in München"])

    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    assert row["text"] == "Zoë lives in München"
    assert [(e["type"], e["start"], e["end"], e["text"]) for e in row["entities"]] == [
        ("PER", 0, 3, "Zoë"), ("LOC", 13, 20, "München")]


# --- BIO decoding on fixed words (no server) -------------------------------------------------

def _words(text, tagged):
    """`(tag, score, byte start, byte end)` of the given words, located left to right."""
    data, words, position = text.encode(), [], 0
    for word, tag, score in tagged:
        start = data.index(word.encode(), position)
        position = start + len(word.encode())
        words.append((tag, score, start, position))
    return words


def test_decoding_follows_seqeval_rules():
    text = "Ann Lee of New York met Bob"
    words = _words(text, [("Ann", "B-PER", 0.9), ("Lee", "I-PER", 0.7), ("of", "O", 0.99),
                          ("New", "I-LOC", 0.6), ("York", "I-LOC", 0.8),
                          ("met", "I-PER", 0.5), ("Bob", "B-PER", 0.4)])

    entities = decode_entities(text, words)

    assert [(e["type"], e["text"], e["start"], e["end"]) for e in entities] == [
        ("PER", "Ann Lee", 0, 7),       # B-PER I-PER
        ("LOC", "New York", 11, 19),    # I-LOC after O starts an entity
        ("PER", "met", 20, 23),         # I-PER after LOC: a new PER entity
        ("PER", "Bob", 24, 27),         # B-PER after PER: another one
    ]
    assert [e["score"] for e in entities] == pytest.approx([0.8, 0.7, 0.5, 0.4])


def test_decoding_turns_byte_offsets_into_character_offsets():
    text = "« Zoë » 李雷 Ærøskøbing"
    words = _words(text, [("Zoë", "B-PER", 1.0), ("李", "B-PER", 1.0), ("雷", "I-PER", 0.5),
                          ("Ærøskøbing", "B-LOC", 1.0)])

    entities = decode_entities(text, words)

    assert [(e["text"], e["start"], e["end"]) for e in entities] == [
        ("Zoë", 2, 5), ("李雷", 8, 10), ("Ærøskøbing", 11, 21)]


def test_codec_rejects_malformed_outputs():
    codec = TokenClassificationCodec()
    outputs = {"tags": np.array([[b"B-PER"]]), "scores": np.array([[0.9]], np.float32),
               "word_start": np.array([[0]]), "word_end": np.array([[3]]),
               "word_count": np.array([1])}
    assert codec.predictions(outputs, ["Ann"], None)[0].entities[0]["text"] == "Ann"
    with pytest.raises(ValueError, match="outside the text"):
        codec.predictions({**outputs, "word_end": np.array([[9]])}, ["Ann"], None)
    with pytest.raises(ValueError, match="not a BIO tag"):
        codec.predictions({**outputs, "tags": np.array([[b"PER"]])}, ["Ann"], None)
    with pytest.raises(ValueError, match=r"expected \[2, words\]"):
        codec.predictions(outputs, ["Ann", "Bob"], None)


def test_score_command_writes_entities(address, tmp_path):
    import csv

    from tfinetune.cli.score import command

    source = tmp_path / "texts.csv"
    source.write_text("id,text\n1,Zoë lives in München\n2,the office is in\n", encoding="utf-8")
    output = tmp_path / "scored.csv"

    result = CliRunner().invoke(command, [str(source), "--server", address, "--model-name",
                                          "ner", "--output", str(output), "--quiet"])

    assert result.exit_code == 0, result.output
    with open(output, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["id"] for row in rows] == ["1", "2"]
    entities = json.loads(rows[0]["entities"])
    assert [(e["type"], e["start"], e["end"], e["text"]) for e in entities] == [
        ("PER", 0, 3, "Zoë"), ("LOC", 13, 20, "München")]
    assert json.loads(rows[1]["entities"]) == [] and rows[1]["error"] == ""


def test_batched_requests_of_different_lengths_decode_the_same(ner_export):
    from concurrent.futures import ThreadPoolExecutor

    texts = ["Zoë lives in München", "mr Alice Smith visited New York today", "",
             "yesterday Bob went to Paris and Rome"]
    server = Server({"ner": ner_export.path.parent}, port=0, file_system_poll_wait_seconds=0,
                    enable_batching=True).start()
    try:
        with Client(f"127.0.0.1:{server.port}", "ner") as client:
            alone = [client.predict([text])[0].entities for text in texts]
            with ThreadPoolExecutor(8) as pool:
                merged = list(pool.map(lambda text: client.predict([text])[0].entities,
                                       texts * 4))
    finally:
        server.stop(grace=2)

    def spans(entities):
        return [(e["type"], e["start"], e["end"], e["text"]) for e in entities]

    assert [spans(entities) for entities in merged] == [spans(e) for e in alone] * 4
    for entities, expected in zip(merged, alone * 4):  # padding changes no score
        assert [e["score"] for e in entities] == pytest.approx([e["score"] for e in expected],
                                                               abs=1e-5)
    assert [e["text"] for e in alone[3]] == ["Bob", "Paris", "Rome"]


def test_entities_past_max_length_are_found(address):
    text = " ".join(["Alice Smith lives in Paris ."] * 8)  # 48 pieces: two windows of 30

    with Client(address, "ner") as client:
        entities = client.predict([text])[0].entities

    assert [(e["type"], e["text"]) for e in entities] == [("PER", "Alice Smith"),
                                                         ("LOC", "Paris")] * 8
    assert entities[-1]["start"] == text.rindex("Paris")


def test_rest_predict_returns_the_per_word_outputs(ner_server):
    from tests.serving.models import rest_json

    status, body = rest_json(ner_server.rest_port, "POST", "/v1/models/ner:predict",
                             {"instances": [{"text": "Zoë lives in München"}, {"text": "Paris"}]})

    assert status == 200, body
    first, second = body["predictions"]
    assert first["tags"][:4] == ["B-PER", "O", "O", "B-LOC"]
    assert first["word_count"] == 4 and second["word_count"] == 1
    assert (first["word_start"][3], first["word_end"][3]) == (14, 22)  # bytes of "München"
    assert second["tags"][0] == "B-LOC"
