"""Seq2seq exports served over real gRPC: Predict with the official TF Serving stub, `Client`,
`tfinetune predict` and `tfinetune score` (with BLEU/ROUGE), all compared with the in-memory
model's `generate`."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Client
from serving import Server
from tests.seq2seq_fixtures import DICTIONARY
from tests.seq2seq_fixtures import write_jsonl
from tests.serving.models import predict_request

pytestmark = pytest.mark.slow

#: Three sources not in the training data, then two odd inputs.
TEXTS = ["four blue bird house", "four red bird tree", "one blue bird garden", "", "naïve café"]


def expected_generation(run_dir, texts, num_beams=1, max_new_tokens=20, max_length=24):
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSeq2SeqLM

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = TFAutoModelForSeq2SeqLM.from_pretrained(run_dir)
    encoded = tokenizer(["translate: " + text for text in texts], padding=True,
                        truncation=True, max_length=max_length, return_tensors="tf")
    return tokenizer.batch_decode(model.generate(**encoded, max_new_tokens=max_new_tokens,
                                                 num_beams=num_beams),
                                  skip_special_tokens=True)


@pytest.fixture(scope="module")
def seq2seq_server(spm_export, byt5_export):
    from serving.server_options import ANY_FREE_PORT

    # With --enable_batching (concurrent requests merged into one run of the signature) and
    # the REST API.
    server = Server({"t5": spm_export.path.parent, "byt5": byt5_export.path.parent}, port=0,
                    rest_api_port=ANY_FREE_PORT, enable_batching=True,
                    file_system_poll_wait_seconds=0).start()
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="module")
def expected(spm_run_dir):
    return expected_generation(spm_run_dir, TEXTS)


def test_official_stub_predict_returns_the_generated_text(seq2seq_server, expected):
    with grpc.insecure_channel(f"127.0.0.1:{seq2seq_server.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(
            predict_request("t5", {"text": np.array([t.encode() for t in TEXTS])}), timeout=120)
    assert set(response.outputs) == {"generated_text", "generated_ids"}
    generated = [value.decode("utf-8")
                 for value in tf.make_ndarray(response.outputs["generated_text"])]
    assert generated == expected
    # The fitted model translates at least one unseen combination word for word.
    assert any(g.split() == [DICTIONARY[w] for w in t.split()]
               for g, t in zip(generated, TEXTS[:3])), generated


def test_client_detects_seq2seq_and_returns_generated_text(seq2seq_server, expected,
                                                           byt5_run_dir):
    with Client(f"127.0.0.1:{seq2seq_server.port}", "t5") as client:
        assert client.task() == "seq2seq"
        predictions = client.predict(TEXTS)
    assert [p.generated_text for p in predictions] == expected
    assert all(p.problem_type == "seq2seq" and p.label is None for p in predictions)
    assert "generated_text=" in repr(predictions[0]) and "label" not in repr(predictions[0])

    with Client(f"127.0.0.1:{seq2seq_server.port}", "byt5") as client:
        beam = [p.generated_text for p in client.predict(TEXTS[:2])]
    assert beam == expected_generation(byt5_run_dir, TEXTS[:2], num_beams=2,
                                       max_new_tokens=10, max_length=32)


def test_rest_predict_returns_generated_text_per_instance(seq2seq_server, expected):
    from tests.serving.models import rest_json

    status, body = rest_json(seq2seq_server.rest_port, "POST", "/v1/models/t5:predict",
                             {"instances": TEXTS[:2]})
    assert status == 200
    assert [row["generated_text"] for row in body["predictions"]] == expected[:2]
    assert all(len(row["generated_ids"]) == 21 for row in body["predictions"])


def test_concurrent_requests_merged_by_batching_get_their_own_generations(seq2seq_server,
                                                                         expected):
    from concurrent.futures import ThreadPoolExecutor

    def predict(text):
        with Client(f"127.0.0.1:{seq2seq_server.port}", "t5") as client:
            return client.predict([text])[0].generated_text

    with ThreadPoolExecutor(max_workers=len(TEXTS)) as pool:
        results = list(pool.map(predict, TEXTS * 2))
    assert results == expected * 2


def test_predict_command_prints_text_and_generated_text(seq2seq_server, expected):
    from tfinetune.cli.predict import command

    result = CliRunner().invoke(command, ["--server", f"127.0.0.1:{seq2seq_server.port}",
                                          "--model-name", "t5", *TEXTS[:3]])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == [{"text": text, "generated_text": generated}
                    for text, generated in zip(TEXTS[:3], expected[:3])]


def test_score_command_writes_generated_text_and_bleu_rouge(seq2seq_server, expected,
                                                            tmp_path):
    import sacrebleu
    from rouge_score import rouge_scorer

    from tfinetune.cli import score
    from tfinetune.table_reader import TableReader

    references = [" ".join(DICTIONARY[w] for w in text.split()) for text in TEXTS[:3]]
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"id": i, "text": text, "reference": reference}
        for i, (text, reference) in enumerate(zip(TEXTS[:3], references))])
    out, metrics_file = tmp_path / "out.csv", tmp_path / "metrics.json"
    result = CliRunner().invoke(score.command, [
        str(source), "--server", f"127.0.0.1:{seq2seq_server.port}", "--model-name", "t5",
        "-o", str(out), "--batch-size", "2", "--label-column", "reference",
        "--metrics-json", str(metrics_file)])
    assert result.exit_code == 0, result.output
    rows = [row.values for row in TableReader(out)]
    assert [row["generated_text"] for row in rows] == expected[:3]
    metrics = json.loads(metrics_file.read_text())
    scorer = rouge_scorer.RougeScorer(["rouge1"])
    rouge1 = np.mean([scorer.score(r, g)["rouge1"].fmeasure
                      for r, g in zip(references, expected[:3])])
    assert metrics["problem_type"] == "seq2seq"
    assert (metrics["rows"], metrics["evaluated"], metrics["support"]) == (3, 3, 3)
    assert metrics["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(expected[:3], [references]).score)
    assert metrics["rouge1"] == pytest.approx(100 * rouge1)
    assert metrics["bleu"] > 0
