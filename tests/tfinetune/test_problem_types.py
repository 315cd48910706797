"""Multi-label and regression fine-tuning: data forms, loss, metrics, run outputs, evaluate."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import tfinetune
from tests.conftest import multi_label_rows
from tests.conftest import regression_rows
from tests.conftest import write_csv
from tfinetune.cli.main import cli
from tfinetune.errors import DataError
from tfinetune.fit_config import FitConfig
from tfinetune.text_classification_examples import TextClassificationExamples

# The tiny random BERT needs more steps for these than for single-label classification.
FAST = {"epochs": 24, "batch_size": 16, "learning_rate": 6e-3, "max_length": 32}


def test_multi_label_reads_lists_and_delimited_strings(tmp_path):
    csv_file = write_csv(tmp_path / "m.csv", [{"text": "a", "label": "x|y"},
                                              {"text": "b", "label": ""},
                                              {"text": "c", "label": "y"}])
    examples = TextClassificationExamples.read(csv_file, text_column="text",
                                               label_column="label", problem_type="multi-label",
                                               label_delimiter="|")
    assert examples.labels.names == ("x", "y")
    assert examples.targets == [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"text": "a", "label": ["y", "x"]}\n{"text": "b", "label": []}\n')
    examples = TextClassificationExamples.read(jsonl, text_column="text", label_column="label",
                                               problem_type="multi-label")
    assert examples.targets == [[1.0, 1.0], [0.0, 0.0]]


def test_regression_target_must_be_a_number(tmp_path):
    path = write_csv(tmp_path / "r.csv", [{"text": "a", "score": "1.5"},
                                          {"text": "b", "score": "high"}])
    with pytest.raises(DataError, match="Received: score='high' at .*r.csv:3"):
        TextClassificationExamples.read(path, text_column="text", label_column="score",
                                        problem_type="regression")


@pytest.fixture(scope="module")
def multi_label_run(tmp_path_factory, tiny_model_dir):
    directory = tmp_path_factory.mktemp("multi")
    train = write_csv(directory / "train.csv", multi_label_rows(160, seed=1))
    validation = write_csv(directory / "dev.csv", multi_label_rows(40, seed=2))
    config = FitConfig(model=str(tiny_model_dir), train=str(train), validation=str(validation),
                       output_dir=str(directory / "run"), problem_type="multi-label",
                       label_delimiter="|", **FAST)
    return config, tfinetune.fit(config)


def test_multi_label_fit_learns_and_selects_by_micro_f1(multi_label_run):
    config, result = multi_label_run
    assert result.labels == ["neg", "pos"]
    assert result.validation_metrics["f1_micro"] >= 0.8
    history = result.history
    best = max(history, key=lambda entry: (entry["val_f1_micro"], -entry["epoch"]))
    assert result.best_epoch == best["epoch"]
    model_config = json.loads((result.output_dir / "config.json").read_text())
    assert model_config["problem_type"] == "multi_label_classification"


def test_evaluate_multi_label_run_matches_hand_computed_metrics(multi_label_run, tmp_path):
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSequenceClassification

    _, result = multi_label_run
    rows = multi_label_rows(12, seed=3)
    path = write_csv(tmp_path / "test.csv", rows)
    output = CliRunner().invoke(cli, ["evaluate", str(result.output_dir), "--data", str(path),
                                      "--json"])
    assert output.exit_code == 0, output.output
    metrics = json.loads(output.stdout)
    model = TFAutoModelForSequenceClassification.from_pretrained(result.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.output_dir)
    logits = model(tokenizer([r["text"] for r in rows], padding=True, return_tensors="tf")).logits
    predicted = (1 / (1 + np.exp(-logits.numpy())) >= 0.5).astype(int)
    truth = np.array([[int("neg" in r["label"].split("|")), int("pos" in r["label"].split("|"))]
                      for r in rows])
    assert metrics["subset_accuracy"] == pytest.approx((predicted == truth).all(axis=1).mean())
    true_positives = int((predicted & truth).sum())
    assert metrics["precision_micro"] == pytest.approx(
        true_positives / max(int(predicted.sum()), 1))
    assert metrics["recall_micro"] == pytest.approx(true_positives / int(truth.sum()))


def test_regression_fit_learns_and_reports_correlations(tmp_path, tiny_model_dir):
    train = write_csv(tmp_path / "train.csv", regression_rows(160, seed=1))
    validation = write_csv(tmp_path / "dev.csv", regression_rows(40, seed=2))
    result = tfinetune.fit(FitConfig(
        model=str(tiny_model_dir), train=str(train), validation=str(validation),
        output_dir=str(tmp_path / "run"), label_column="score", problem_type="regression",
        **FAST))
    metrics = result.validation_metrics
    assert metrics["pearson"] >= 0.8
    assert metrics["mse"] < np.var([row["score"] for row in regression_rows(40, seed=2)])
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == {"labels": ["score"]}
    model_config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert model_config["problem_type"] == "regression" and model_config["id2label"] == {
        "0": "score"}
    assert "pearson" in (tmp_path / "run" / "README.md").read_text()

