"""A question-answering export served through real gRPC: the official PredictionService stub,
`serving.Client` (`QuestionAnsweringCodec`), and `tfinetune predict` / `score`."""

from __future__ import annotations

import csv
import json

import grpc
import numpy as np
import pytest
from click.testing import CliRunner

from tests.question_answering_fixtures import long_context
from tests.question_answering_fixtures import reference_answers

MODEL = "qa"
QUESTIONS = ["where is paris ?", "Where is Rome?", "where is zurich ?", "where is oslo ?"]


def _contexts() -> list[str]:
    rome, _ = long_context("rome", "italy", fillers=16)
    return ["the river is long . the city of paris is in france .", rome,
            "the city of Zürich is in Brasil . café 北京 .",
            "a bridge is old . the city of oslo is in ireland ."]


@pytest.fixture(scope="module")
def qa_server(qa_export):
    from serving import Server
    from serving.server_options import ANY_FREE_PORT

    server = Server({MODEL: qa_export.path.parent}, port=0, rest_api_port=ANY_FREE_PORT,
                    file_system_poll_wait_seconds=0).start()
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="module")
def address(qa_server) -> str:
    return f"127.0.0.1:{qa_server.port}"


def test_official_stub_predicts_answers_with_character_offsets(address, qa_reference):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    contexts = _contexts()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["question"].CopyFrom(tf.make_tensor_proto(QUESTIONS, dtype=tf.string))
    request.inputs["context"].CopyFrom(tf.make_tensor_proto(contexts, dtype=tf.string))
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=60)

    assert sorted(response.outputs) == ["answer", "end", "score", "start"]
    answers = [value.decode("utf-8") for value in tf.make_ndarray(response.outputs["answer"])]
    starts = tf.make_ndarray(response.outputs["start"]).tolist()
    ends = tf.make_ndarray(response.outputs["end"]).tolist()
    scores = tf.make_ndarray(response.outputs["score"])
    assert answers == ["france", "italy", "Brasil", "ireland"]
    # Character offsets, not bytes: "Zürich" before the answer has a 2-byte character.
    assert (starts[2], ends[2]) == (25, 31)
    for answer, start, end, context in zip(answers, starts, ends, contexts):
        assert context[start:end] == answer
    model, tokenizer = qa_reference
    expected = reference_answers(model, tokenizer, QUESTIONS, contexts)
    assert [(a.text, a.start, a.end) for a in expected] == list(zip(answers, starts, ends))
    np.testing.assert_allclose(scores, [a.score for a in expected], atol=1e-4)


def test_client_detects_the_task_and_answers_from_later_windows(address):
    from serving import Client

    contexts = _contexts()
    with Client(address, MODEL) as client:
        assert client.task() == "question-answering"
        predictions = client.predict(QUESTIONS, contexts)
        assert client.predict([], []) == []
        with pytest.raises(ValueError, match="give text_pairs for 'context'"):
            client.predict(QUESTIONS)

    assert [p.answer for p in predictions] == ["france", "italy", "Brasil", "ireland"]
    rome = predictions[1]
    # The Rome fact comes after 16 filler sentences: beyond the first 48-token window.
    assert rome.start == contexts[1].index(" in italy") + 4
    assert rome.end == rome.start + len("italy")
    for prediction in predictions:
        assert prediction.problem_type == "question-answering"
        assert 0.0 < prediction.score <= 1.0
        assert prediction.entities is None and prediction.label is None


def test_rest_predict_answers_in_columnar_json(qa_server):
    import urllib.request

    contexts = _contexts()
    body = json.dumps({"inputs": {"question": QUESTIONS[:2], "context": contexts[:2]}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{qa_server.rest_port}/v1/models/{MODEL}:predict", data=body,
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        outputs = json.loads(response.read())["outputs"]
    assert outputs["answer"] == ["france", "italy"]
    assert outputs["start"] == [contexts[0].index("france"), contexts[1].index(" in italy") + 4]
    assert [end - start for start, end in zip(outputs["start"], outputs["end"])] == [6, 5]


def test_empty_context_is_no_answer(address):
    from serving import Client

    with Client(address, MODEL) as client:
        (prediction,) = client.predict(["where is paris ?"], [""])
    assert (prediction.answer, prediction.start, prediction.end) == ("", 0, 0)


def test_predict_command_prints_question_context_and_answer(address):
    from tfinetune.cli.predict import command

    contexts = _contexts()
    arguments = ["--server", address, "--model-name", MODEL]
    for question, context in zip(QUESTIONS[:3], contexts[:3]):
        arguments += [question, "--context", context]
    result = CliRunner().invoke(command, arguments)

    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [set(row) for row in rows] == [
        {"question", "context", "answer", "start", "end", "score"}] * 3
    assert [row["answer"] for row in rows] == ["france", "italy", "Brasil"]
    assert rows[2]["context"][rows[2]["start"]:rows[2]["end"]] == "Brasil"


def test_score_command_writes_answers_and_exact_match(address, tmp_path):
    from tfinetune.cli.score import command

    contexts = _contexts()
    data = tmp_path / "questions.jsonl"
    gold = ["France", "italy", "Brasil", "norway"]  # the last is deliberately wrong
    data.write_text("".join(json.dumps({"question": q, "context": c, "gold": g},
                                       ensure_ascii=False) + "\n"
                            for q, c, g in zip(QUESTIONS, contexts, gold)), encoding="utf-8")
    output = tmp_path / "answers.csv"
    metrics = tmp_path / "metrics.json"
    result = CliRunner().invoke(command, [
        str(data), "--server", address, "--model-name", MODEL, "-o", str(output),
        "--label-column", "gold", "--metrics-json", str(metrics), "--quiet"])

    assert result.exit_code == 0, result.output
    with open(output, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["answer"] for row in rows] == ["france", "italy", "Brasil", "ireland"]
    assert [int(row["answer_start"]) for row in rows][1] == contexts[1].index(" in italy") + 4
    values = json.loads(metrics.read_text(encoding="utf-8"))
    # 3 of 4 answers match after SQuAD normalisation (case): EM = F1 = 75.
    assert values["exact_match"] == pytest.approx(75.0)
    assert values["f1"] == pytest.approx(75.0)


def test_codec_checks_the_response_against_the_contexts():
    from serving.question_answering_codec import QuestionAnsweringCodec
    from serving.task_codec import codec_for_outputs

    assert isinstance(codec_for_outputs(["answer", "start", "end", "score"]),
                      QuestionAnsweringCodec)
    codec = QuestionAnsweringCodec()
    outputs = {"answer": np.array(["Zürich".encode(), b""], dtype=object),
               "start": np.array([4, 0]), "end": np.array([10, 0]),
               "score": np.array([0.5, 0.25], np.float32)}
    contexts = ["Ins Zürich!", "nothing"]
    first, second = codec.predictions(outputs, ["q1", "q2"], contexts)
    assert (first.answer, first.start, first.end, first.score) == ("Zürich", 4, 10, 0.5)
    assert (second.answer, second.start, second.end) == ("", 0, 0)
    with pytest.raises(ValueError, match="outside the context of pair 0"):
        codec.predictions({**outputs, "end": np.array([12, 0])}, ["q1", "q2"], contexts)
    with pytest.raises(ValueError, match=r"is not context\[3:9\]"):
        codec.predictions({**outputs, "start": np.array([3, 0]), "end": np.array([9, 0])},
                          ["q1", "q2"], contexts)
    with pytest.raises(ValueError, match="'answer' has 2 rows for 3 questions"):
        codec.predictions(outputs, ["q1", "q2", "q3"], contexts + ["x"])
