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

    def make_client(config):
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
