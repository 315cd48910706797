"""Multi-label and regression exports served over gRPC: Predict, Classify/Regress with the
official stubs, `Client`, `tfinetune predict` and `tfinetune score` (with metrics).

The served models are the seeded "sensitive" copies of short real fits (tests/conftest.py), so
their outputs depend visibly on the text; everything is compared with the in-memory model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from serving import Client
from serving import Server
from tests.conftest import write_csv
from tests.serving.models import predict_request

TEXTS = ["a good movie", "the plot was awful and boring", "wonderful!", "",
         "it was fine, the acting was not great but the music is brilliant", "bad bad film"]
MULTI_LABELS = ["neg", "pos"]
TOLERANCE = 1e-4


def in_memory_logits(run_dir, texts) -> np.ndarray:
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = TFAutoModelForSequenceClassification.from_pretrained(run_dir)
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=32,
                        return_tensors="tf")
    return model(dict(encoded), training=False).logits.numpy().astype(np.float64)


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


def serve(result, name):
    return Server({name: result.path.parent}, port=0, file_system_poll_wait_seconds=0).start()


@pytest.fixture(scope="module")
def multi_label_server(multi_label_export):
    server = serve(multi_label_export, "tags")
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="module")
def regression_server(regression_export):
    server = serve(regression_export, "rating")
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="module")
def multi_label_expected(sensitive_multi_label_run_dir):
    return sigmoid(in_memory_logits(sensitive_multi_label_run_dir, TEXTS))


@pytest.fixture(scope="module")
def regression_expected(sensitive_regression_run_dir):
    return in_memory_logits(sensitive_regression_run_dir, TEXTS)[:, 0]


def stub(server):
    channel = grpc_channel(server)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def grpc_channel(server):
    import grpc

    return grpc.insecure_channel(f"127.0.0.1:{server.port}")


def example_input(request, texts):
    for text in texts:
        request.input.example_list.examples.add().features.feature[
            "text"].bytes_list.value.append(text.encode())


# ------------------------------------------------------------------------------ gRPC, stubs

def test_multi_label_predict_equals_the_in_memory_sigmoid(multi_label_server,
                                                          multi_label_expected):
    channel, prediction = stub(multi_label_server)
    with channel:
        response = prediction.Predict(
            predict_request("tags", {"text": np.array([t.encode() for t in TEXTS])}), timeout=60)

    assert set(response.outputs) == {"scores", "classes", "predicted"}
    scores = tf.make_ndarray(response.outputs["scores"])
    np.testing.assert_allclose(scores, multi_label_expected, rtol=0, atol=TOLERANCE)
    predicted = tf.make_ndarray(response.outputs["predicted"])
    assert predicted.dtype == np.int64
    np.testing.assert_array_equal(predicted, (multi_label_expected >= 0.5).astype(np.int64))
    assert 0 < predicted.sum() < predicted.size
    assert tf.make_ndarray(response.outputs["classes"]).tolist() == [[b"neg", b"pos"]] * len(
        TEXTS)


def test_multi_label_classify_with_the_official_stub(multi_label_server, multi_label_expected):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "tags"
    request.model_spec.signature_name = "classify"
    example_input(request, TEXTS)
    channel, prediction = stub(multi_label_server)
    with channel:
        response = prediction.Classify(request, timeout=60)

    assert len(response.result.classifications) == len(TEXTS)
    for classification, expected in zip(response.result.classifications, multi_label_expected):
        assert [c.label for c in classification.classes] == MULTI_LABELS
        np.testing.assert_allclose([c.score for c in classification.classes], expected,
                                   rtol=0, atol=TOLERANCE)


def test_regression_predict_equals_the_in_memory_value(regression_server, regression_expected):
    channel, prediction = stub(regression_server)
    with channel:
        response = prediction.Predict(
            predict_request("rating", {"text": np.array([t.encode() for t in TEXTS])}),
            timeout=60)

    assert set(response.outputs) == {"value"}
    value = tf.make_ndarray(response.outputs["value"])
    assert value.shape == (len(TEXTS),) and value.dtype == np.float32
    np.testing.assert_allclose(value, regression_expected, rtol=0, atol=TOLERANCE)


def test_regression_regress_with_the_official_stub(regression_server, regression_expected):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "rating"
    request.model_spec.signature_name = "regress"
    example_input(request, TEXTS)
    channel, prediction = stub(regression_server)
    with channel:
        response = prediction.Regress(request, timeout=60)

    assert response.model_spec.signature_name == "regress"
    np.testing.assert_allclose([r.value for r in response.result.regressions],
                               regression_expected, rtol=0, atol=TOLERANCE)


# ------------------------------------------------------------------------------------ Client

def test_client_multi_label_predictions(multi_label_server, multi_label_expected):
    with Client(f"127.0.0.1:{multi_label_server.port}", "tags") as client:
        predictions = client.predict(TEXTS)
        assert client.problem_type() == "multi-label"
        assert client.label_names() == MULTI_LABELS

    for prediction, expected in zip(predictions, multi_label_expected):
        assert prediction.problem_type == "multi-label"
        assert (prediction.label, prediction.probabilities, prediction.value) == (None,) * 3
        assert list(prediction.scores) == MULTI_LABELS
        np.testing.assert_allclose(list(prediction.scores.values()), expected, atol=TOLERANCE)
        assert prediction.labels == [name for name, s in zip(MULTI_LABELS, expected) if s >= 0.5]
    assert "scores=" in repr(predictions[0]) and "value" not in repr(predictions[0])


def test_client_regression_predictions(regression_server, regression_expected):
    with Client(f"127.0.0.1:{regression_server.port}", "rating") as client:
        assert client.label_names() == []
        assert client.problem_type() == "regression"
        predictions = client.predict(TEXTS)

    assert [p.problem_type for p in predictions] == ["regression"] * len(TEXTS)
    np.testing.assert_allclose([p.value for p in predictions], regression_expected,
                               atol=TOLERANCE)
    assert all(p.label is None and p.scores is None for p in predictions)


# ----------------------------------------------------------------------- tfinetune predict

def predict_cli(server, name, texts):
    from tfinetune.cli.predict import command

    result = CliRunner().invoke(command, ["--server", f"127.0.0.1:{server.port}",
                                          "--model-name", name, *texts])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_predict_command_multi_label(multi_label_server, multi_label_expected):
    rows = predict_cli(multi_label_server, "tags", TEXTS)

    assert [set(row) for row in rows] == [{"text", "labels", "scores"}] * len(TEXTS)
    assert [row["text"] for row in rows] == TEXTS
    for row, expected in zip(rows, multi_label_expected):
        assert row["labels"] == [n for n, s in zip(MULTI_LABELS, expected) if s >= 0.5]
        np.testing.assert_allclose([row["scores"][n] for n in MULTI_LABELS], expected,
                                   atol=TOLERANCE)


def test_predict_command_regression(regression_server, regression_expected):
    rows = predict_cli(regression_server, "rating", TEXTS)

    assert [set(row) for row in rows] == [{"text", "value"}] * len(TEXTS)
    np.testing.assert_allclose([row["value"] for row in rows], regression_expected,
                               atol=TOLERANCE)


# ------------------------------------------------------------------------- tfinetune score

#: Fixed multi-label examples: true labels as "|"-strings (one unknown label, one empty).
MULTI_ROWS = [
    {"id": "0", "text": TEXTS[0], "gold": "pos"},
    {"id": "1", "text": TEXTS[1], "gold": "neg"},
    {"id": "2", "text": TEXTS[2], "gold": "pos|neg"},
    {"id": "3", "text": TEXTS[3], "gold": ""},
    {"id": "4", "text": TEXTS[4], "gold": "neg|pos"},
    {"id": "5", "text": TEXTS[5], "gold": "neg|meh"},
]
REGRESSION_ROWS = [{"id": str(i), "text": text, "value": v}
                   for i, (text, v) in enumerate(zip(TEXTS, ["1", "-2", "2", "0", "x", "-1.5"]))]


def score_cli(server, name, source, output, *args):
    from tfinetune.cli import score

    result = CliRunner().invoke(score.command, [
        str(source), "--server", f"127.0.0.1:{server.port}", "--model-name", name,
        "-o", str(output), "--batch-size", "4", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_score_multi_label_csv_columns_and_metrics(tmp_path, multi_label_server,
                                                   multi_label_expected):
    from tfinetune.table_reader import TableReader

    source = write_csv(tmp_path / "in.csv", MULTI_ROWS)
    out, metrics_file = tmp_path / "out.csv", tmp_path / "metrics.json"
    result = score_cli(multi_label_server, "tags", source, out, "--label-column", "gold",
                       "--label-delimiter", "|", "--metrics-json", metrics_file)

    rows = [row.values for row in TableReader(out)]
    assert list(rows[0]) == ["id", "text", "gold", "labels", "score_neg", "score_pos", "error"]
    predicted = multi_label_expected >= 0.5
    for row, expected, on in zip(rows, multi_label_expected, predicted):
        assert (row["labels"] or "") == "|".join(n for n, p in zip(MULTI_LABELS, on) if p)
        np.testing.assert_allclose([float(row["score_neg"]), float(row["score_pos"])],
                                   expected, atol=TOLERANCE)
    # By hand, over the 5 rows whose labels the model knows (row 5 names "meh").
    truth = np.array([[0, 1], [1, 0], [1, 1], [0, 0], [1, 1]], dtype=bool)
    guess = predicted[:5]
    tp, fp, fn = (truth & guess).sum(0), (~truth & guess).sum(0), (truth & ~guess).sum(0)

    def f1(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0

    metrics = json.loads(metrics_file.read_text())
    assert (metrics["problem_type"], metrics["evaluated"]) == ("multi-label", 5)
    assert metrics["excluded_unknown_label"] == 1
    assert metrics["subset_accuracy"] == pytest.approx((truth == guess).all(axis=1).mean())
    assert metrics["f1_micro"] == pytest.approx(f1(tp.sum(), fp.sum(), fn.sum()))
    assert metrics["f1_macro"] == pytest.approx(np.mean([f1(*c) for c in zip(tp, fp, fn)]))
    assert metrics["recall_micro"] == pytest.approx(tp.sum() / (tp.sum() + fn.sum()))
    assert "Metrics against column 'gold' (5 of 6 rows; excluded: 1 with a missing label" \
        in result.stdout
    assert f"{metrics['f1_micro']:.4f} micro" in result.stdout


def test_score_multi_label_jsonl_writes_lists_and_reads_list_labels(
        tmp_path, multi_label_server, multi_label_expected):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": text, "labels": ["pos"] if i % 2 else []})
                              + "\n" for i, text in enumerate(TEXTS)))
    out = tmp_path / "out.jsonl"
    result = score_cli(multi_label_server, "tags", source, out, "--label-column", "labels")

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(records[0]) == ["text", "labels", "predicted_labels", "score_neg", "score_pos"]
    assert [r["predicted_labels"] for r in records] == [
        [n for n, s in zip(MULTI_LABELS, e) if s >= 0.5] for e in multi_label_expected]
    assert "(6 of 6 rows)" in result.stdout


def test_score_regression_columns_and_metrics(tmp_path, regression_server,
                                              regression_expected):
    from scipy import stats

    from tfinetune.table_reader import TableReader

    source = write_csv(tmp_path / "in.csv", REGRESSION_ROWS)
    out, metrics_file = tmp_path / "out.csv", tmp_path / "metrics.json"
    result = score_cli(regression_server, "rating", source, out, "--label-column", "value",
                       "--metrics-json", metrics_file)

    rows = [row.values for row in TableReader(out)]
    assert list(rows[0]) == ["id", "text", "value", "predicted_value", "error"]
    np.testing.assert_allclose([float(r["predicted_value"]) for r in rows],
                               regression_expected, atol=TOLERANCE)
    # By hand, over the rows with a numeric target (row 4 has "x").
    keep = [0, 1, 2, 3, 5]
    truth = np.array([1, -2, 2, 0, -1.5])
    guess = regression_expected[keep]
    metrics = json.loads(metrics_file.read_text())
    assert (metrics["problem_type"], metrics["evaluated"]) == ("regression", 5)
    assert metrics["mse"] == pytest.approx(np.mean((guess - truth) ** 2), abs=1e-5)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(guess - truth)), abs=1e-5)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(truth, guess)[0, 1], abs=1e-5)
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(truth, guess)[0], abs=1e-5)
    assert "excluded: 1 with a missing or non-numeric target (e.g. 'x')" in result.stdout
    assert "Pearson:" in result.stdout


def test_score_regression_without_a_value_column_clash(tmp_path, regression_server,
                                                       regression_expected):
    source = write_csv(tmp_path / "in.csv", [{"text": t} for t in TEXTS])
    out = tmp_path / "out.jsonl"
    score_cli(regression_server, "rating", source, out)

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [list(r) for r in records] == [["text", "value"]] * len(TEXTS)
    np.testing.assert_allclose([r["value"] for r in records], regression_expected,
                               atol=TOLERANCE)
