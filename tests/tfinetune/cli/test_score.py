"""`tfinetune score` through CliRunner: with a fake client, then against a real gRPC server."""

import json

import grpc
import pytest
from click.testing import CliRunner

from tests.tfinetune.test_batch_scorer import FakeClient
from tests.tfinetune.test_batch_scorer import FakeError
from tests.tfinetune.test_batch_scorer import review_rows
from tests.tfinetune.test_batch_scorer import write_rows
from tfinetune.cli import score
from tfinetune.table_reader import TableReader


def run(*args):
    return CliRunner().invoke(score.command, [str(arg) for arg in args])


@pytest.fixture
def fake_client(monkeypatch):
    client = FakeClient()
    created = []

    def make_client(config, tls=None):
        created.append(config)
        return client

    monkeypatch.setattr(score, "_make_client", make_client)
    client.created = created
    return client


def test_scores_file_prints_summary_metrics_and_writes_json(tmp_path, fake_client):
    source = write_rows(tmp_path / "in.csv", review_rows(40))
    out, metrics_file = tmp_path / "out.csv", tmp_path / "metrics.json"
    result = run(source, "--model-name", "clf", "--server", "h:1", "-o", out,
                 "--label-column", "gold", "--batch-size", "8", "--metrics-json", metrics_file)
    assert result.exit_code == 0, result.output
    assert len(list(TableReader(out))) == 40
    assert result.stderr.startswith("Scored 40 rows in ")
    assert f"40 ok, 0 failed. Output: {out}" in result.stderr
    assert result.stdout.startswith("Metrics against column 'gold' (40 of 40 rows):")
    assert "Confusion matrix (rows: true label, columns: predicted label)" in result.stdout
    metrics = json.loads(metrics_file.read_text())
    assert metrics["evaluated"] == 40 and metrics["labels"] == ["negative", "positive"]
    assert f"{metrics['accuracy']:.4f}" in result.stdout
    config = fake_client.created[0]
    assert (config.server, config.model_name, config.batch_size) == ("h:1", "clf", 8)
    assert fake_client.closed


def test_failed_rows_are_written_and_exit_code_is_1(tmp_path, fake_client):
    source = write_rows(tmp_path / "in.csv", review_rows(20))
    fake_client.fail = lambda texts: (FakeError(grpc.StatusCode.DEADLINE_EXCEEDED, "slow")
                                      if "review number 6 bad" in texts else None)
    out = tmp_path / "out.jsonl"
    result = run(source, "--model-name", "clf", "-o", out, "--batch-size", "4")
    assert result.exit_code == 1
    assert "4 of 20 rows failed; they are in" in result.stderr
    assert "First error: DEADLINE_EXCEEDED: slow" in result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [str(i) for i in range(20)]
    assert [r["id"] for r in records if "error" in r] == ["4", "5", "6", "7"]


def test_quiet_prints_no_summary(tmp_path, fake_client):
    source = write_rows(tmp_path / "in.csv", review_rows(3))
    result = run(source, "--model-name", "clf", "-o", tmp_path / "out.csv", "--quiet")
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""


def test_bad_input_fails_before_a_client_is_made(tmp_path, fake_client):
    result = run(tmp_path / "missing.csv", "--model-name", "clf", "-o", tmp_path / "out.csv")
    assert result.exit_code == 1
    assert "Error: File not found: " in result.stderr
    source = write_rows(tmp_path / "in.csv", [{"review": "x"}])
    result = run(source, "--model-name", "clf", "-o", tmp_path / "out.csv")
    assert "Error: Column 'text' not found in" in result.stderr
    assert fake_client.created == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metrics-json", "m.json"], "--metrics-json needs --label-column"),
        (["--batch-size", "0"], "Expected an integer batch_size >= 1. Received: batch_size=0"),
        (["--concurrency", "-2"], "concurrency >= 1"),
    ],
)
def test_option_errors(tmp_path, fake_client, args, message):
    source = write_rows(tmp_path / "in.csv", review_rows(2))
    result = run(source, "--model-name", "clf", "-o", tmp_path / "out.csv", *args)
    assert result.exit_code == 1 and message in result.stderr
    assert fake_client.created == []


def test_metrics_report_when_no_row_has_a_known_label(tmp_path, fake_client):
    source = write_rows(tmp_path / "in.csv", [{"text": "a", "gold": "meh"}])
    result = run(source, "--model-name", "clf", "-o", tmp_path / "out.csv",
                 "--label-column", "gold")
    assert result.exit_code == 0
    assert result.stdout.startswith(
        "No metrics: no row has both a prediction and a known label in column 'gold'; "
        "excluded: 1 with an empty label or one the model does not know (e.g. 'meh'")


# ------------------------------------------------------------------------- real gRPC server


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_base(tmp_path_factory, tiny_run_dir):
    from export.exporter import export_model

    base = tmp_path_factory.mktemp("models") / "clf"
    export_model(tiny_run_dir, base)
    return base


@pytest.fixture(scope="module")
def server(model_base):
    from serving.server import Server

    server = Server({"clf": model_base}, port=0, file_system_poll_wait_seconds=0)
    server.start()
    yield server
    server.stop(grace=0)


def real_predictions(server, texts):
    from serving.client import Client

    with Client(f"127.0.0.1:{server.port}", "clf") as client:
        return client.predict(texts)


def sentiment_rows(n, seed):
    from tests.conftest import synthetic_sentiment_rows

    return [{"id": str(i), **row} for i, row in enumerate(synthetic_sentiment_rows(n, seed))]


def test_real_server_writes_input_columns_label_and_probabilities_in_order(tmp_path, server):
    rows = [{"id": row["id"], "text": row["text"]} for row in sentiment_rows(250, seed=7)]
    source = write_rows(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    result = run(source, "--server", f"127.0.0.1:{server.port}", "--model-name", "clf",
                 "-o", out, "--batch-size", "16", "--concurrency", "4")
    assert result.exit_code == 0, result.output
    assert "Scored 250 rows" in result.stderr and result.stdout == ""
    reader = TableReader(out)
    assert reader.columns == ["id", "text", "label", "prob_negative", "prob_positive", "error"]
    scored = [row.values for row in reader]
    assert [row["id"] for row in scored] == [row["id"] for row in rows]
    assert [row["text"] for row in scored] == [row["text"] for row in rows]
    expected = real_predictions(server, [row["text"] for row in rows])
    for row, prediction in zip(scored, expected):
        assert row["label"] == prediction.label
        assert row["error"] == ""
        for label in ("negative", "positive"):
            assert float(row[f"prob_{label}"]) == pytest.approx(
                prediction.probabilities[label], abs=1e-6)


def test_real_server_jsonl_with_label_column_prints_metrics(tmp_path, server):
    from tfinetune.classification_metrics import ClassificationMetrics

    rows = sentiment_rows(60, seed=8)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out, metrics_file = tmp_path / "out.jsonl", tmp_path / "metrics.json"
    result = run(source, "--server", f"127.0.0.1:{server.port}", "--model-name", "clf",
                 "-o", out, "--label-column", "label", "--batch-size", "7",
                 "--metrics-json", metrics_file)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert all("error" not in r for r in records)
    assert list(records[0]) == ["id", "text", "label", "predicted_label", "prob_negative",
                                "prob_positive"]
    predictions = real_predictions(server, [row["text"] for row in rows])
    labels = ["negative", "positive"]
    expected = ClassificationMetrics.compute(
        [labels.index(row["label"]) for row in rows],
        [labels.index(p.label) for p in predictions], labels)
    assert result.stdout == (
        "Metrics against column 'label' (60 of 60 rows):\n\n" + expected.format_text() + "\n")
    saved = json.loads(metrics_file.read_text())
    assert saved["confusion_matrix"] == expected.confusion_matrix
    assert saved["f1"] == pytest.approx(expected.f1)


class RoutingClient:
    """Real clients: batches containing 'FAIL' go to one that the server rejects."""

    def __init__(self, target, **bad_options):
        from serving.client import Client

        self.good = Client(target, "clf", retries=0)
        self.bad = Client(target, "clf", retries=0, **bad_options)

    def label_names(self):
        return self.good.label_names()

    def predict(self, texts, text_pairs=None):
        client = self.bad if any("FAIL" in text for text in texts) else self.good
        return client.predict(texts, text_pairs)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.good.close()
        self.bad.close()


@pytest.mark.parametrize(
    "bad_options, failed_ids, code",
    [
        # NOT_FOUND concerns the request, not a row: the whole batch of 8 fails.
        ({"version": 999}, [str(i) for i in range(8, 24)], "NOT_FOUND"),
        # INVALID_ARGUMENT may be one bad row: the batch is split until the row is alone.
        ({"signature_name": "classify"}, ["10", "17"], "INVALID_ARGUMENT"),
    ],
)
def test_real_server_failed_rows_get_error_and_exit_code_1(
        tmp_path, server, monkeypatch, bad_options, failed_ids, code):
    rows = [{"id": row["id"], "text": row["text"]} for row in sentiment_rows(40, seed=9)]
    rows[10]["text"] = rows[17]["text"] = "FAIL this row"
    source = write_rows(tmp_path / "in.csv", rows)
    monkeypatch.setattr(score, "_make_client",
                        lambda config, tls=None: RoutingClient(config.server, **bad_options))
    out = tmp_path / "out.csv"
    result = run(source, "--server", f"127.0.0.1:{server.port}", "--model-name", "clf",
                 "-o", out, "--batch-size", "8", "--concurrency", "3")
    assert result.exit_code == 1
    assert f"{len(failed_ids)} of 40 rows failed" in result.stderr
    scored = [row.values for row in TableReader(out)]
    assert [row["id"] for row in scored] == [str(i) for i in range(40)]
    assert [row["id"] for row in scored if row["error"]] == failed_ids
    assert all(row["error"].startswith(f"{code}: ") for row in scored if row["error"])
    assert all(row["label"] in ("negative", "positive") for row in scored if not row["error"])


def test_server_stopped_after_label_fetch_stops_the_run_and_resume_finishes_it(
        tmp_path, model_base, monkeypatch):
    from serving.client import Client
    from serving.server import Server

    doomed = Server({"clf": model_base}, port=0, file_system_poll_wait_seconds=0)
    doomed.start()
    port = doomed.port

    class StopAfterLabels(Client):
        def label_names(self):
            names = super().label_names()
            doomed.stop(grace=0)
            return names

    monkeypatch.setattr(score, "_make_client", lambda config, tls=None: StopAfterLabels(
        config.server, config.model_name, retries=config.retries, timeout=config.timeout))
    source = write_rows(tmp_path / "in.csv", review_rows(30))
    out = tmp_path / "out.csv"
    args = [source, "--server", f"127.0.0.1:{port}", "--model-name", "clf", "-o", out,
            "--batch-size", "10", "--retries", "1", "--timeout", "5"]
    try:
        result = run(*args)
    finally:
        doomed.stop(grace=0)
    assert result.exit_code == 1
    assert f"The server at 127.0.0.1:{port} became unavailable during the run" in result.stderr
    assert "run the same command with --resume" in result.stderr
    assert not out.exists()
    assert (tmp_path / "out.csv.partial").read_text().count("\n") == 1  # the header only

    monkeypatch.undo()
    revived = Server({"clf": model_base}, port=port, file_system_poll_wait_seconds=0)
    revived.start()
    try:
        again = run(*args)
        resumed = run(*args, "--resume")
    finally:
        revived.stop(grace=0)
    assert again.exit_code == 1 and "Expected --resume to continue it" in again.stderr
    assert resumed.exit_code == 0, resumed.output
    scored = [row.values for row in TableReader(out)]
    assert [row["id"] for row in scored] == [str(i) for i in range(30)]
    assert not any(row["error"] for row in scored)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_server_down_fails_before_writing_naming_server_and_model(tmp_path):
    source = write_rows(tmp_path / "in.csv", review_rows(3))
    port = free_port()
    result = run(source, "--server", f"127.0.0.1:{port}", "--model-name", "clf",
                 "-o", tmp_path / "out.csv", "--retries", "0", "--timeout", "5")
    assert result.exit_code == 1
    assert (f"Error: Cannot get the label names of model 'clf' from the server at "
            f"127.0.0.1:{port}: UNAVAILABLE: ") in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_unknown_model_fails_before_writing(tmp_path, server):
    source = write_rows(tmp_path / "in.csv", review_rows(3))
    result = run(source, "--server", f"127.0.0.1:{server.port}", "--model-name", "nope",
                 "-o", tmp_path / "out.csv")
    assert result.exit_code == 1
    assert "Cannot get the label names of model 'nope'" in result.stderr
    assert "NOT_FOUND" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_existing_output_is_refused_unless_overwrite_or_resume(tmp_path, fake_client):
    source = write_rows(tmp_path / "in.csv", review_rows(12))
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    result = run(source, "--model-name", "clf", "-o", out)
    assert result.exit_code == 1
    assert (f"Error: The output {out} already exists. Expected --overwrite to replace it, "
            "--resume to check and keep it") in result.stderr
    assert out.read_text() == "precious\n" and fake_client.created == []

    result = run(source, "--model-name", "clf", "-o", out, "--resume", "--overwrite")
    assert result.exit_code == 1 and "not both" in result.stderr

    result = run(source, "--model-name", "clf", "-o", out, "--overwrite", "--batch-size", "5")
    assert result.exit_code == 0, result.output
    assert [row.values["id"] for row in TableReader(out)] == [str(i) for i in range(12)]
    sent = fake_client.texts_received

    result = run(source, "--model-name", "clf", "-o", out, "--resume")
    assert result.exit_code == 0, result.output
    assert fake_client.texts_received == sent  # complete: checked, nothing sent again
    assert "Scored 12 rows" in result.stderr
    assert "(12 of them kept from the interrupted run, not sent again)" in result.stderr
