"""`tfinetune evaluate`: the run's metrics on a labelled file, equal to a hand computation."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import LABELS
from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tfinetune.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    rows = synthetic_sentiment_rows(24, seed=21)
    return rows, write_csv(tmp_path_factory.mktemp("eval") / "test.csv", rows)


def test_json_metrics_equal_a_hand_computation_with_the_in_memory_model(tiny_run_dir,
                                                                        labelled):
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSequenceClassification

    rows, path = labelled
    result = run("evaluate", tiny_run_dir, "--data", path, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)

    model = TFAutoModelForSequenceClassification.from_pretrained(tiny_run_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_run_dir)
    encoded = tokenizer([row["text"] for row in rows], padding=True, truncation=True,
                        max_length=32, return_tensors="tf")
    logits = model(encoded).logits.numpy()
    truth = np.array([LABELS.index(row["label"]) for row in rows])
    predicted = logits.argmax(-1)
    matrix = [[int(((truth == t) & (predicted == p)).sum()) for p in range(2)] for t in range(2)]
    shifted = logits - logits.max(-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    loss = -log_probabilities[np.arange(len(rows)), truth].mean()

    assert metrics["confusion_matrix"] == matrix
    assert metrics["accuracy"] == pytest.approx((predicted == truth).mean())
    assert metrics["loss"] == pytest.approx(loss, abs=1e-4)
    assert metrics["support"] == 24 and metrics["labels"] == LABELS


def test_text_report_and_column_override(tiny_run_dir, tmp_path):
    rows = [{"review": row["text"], "gold": row["label"]}
            for row in synthetic_sentiment_rows(10, seed=4)]
    path = write_csv(tmp_path / "renamed.csv", rows)
    result = run("evaluate", tiny_run_dir, "--data", path, "--text-column", "review",
                 "--label-column", "gold")
    assert result.exit_code == 0, result.output
    assert "Accuracy:" in result.stdout and "Confusion matrix" in result.stdout


def test_unknown_label_and_bad_run_dir_are_errors(tiny_run_dir, tmp_path):
    path = write_csv(tmp_path / "odd.csv", [{"text": "good film", "label": "neutral"}])
    result = run("evaluate", tiny_run_dir, "--data", path)
    assert result.exit_code == 1
    assert "Received: label='neutral' at " in result.output and "odd.csv:2" in result.output
    result = run("evaluate", tmp_path, "--data", path)
    assert result.exit_code == 1 and "Not a finished run directory" in result.output
