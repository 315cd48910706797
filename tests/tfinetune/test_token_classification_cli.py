"""`tfinetune evaluate` and `tfinetune fit --task token-classification` on the NER run."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.token_classification_fixtures import write_conll
from tfinetune.cli.evaluate import command as evaluate


def test_evaluate_prints_entity_metrics(ner_run_dir, ner_data, tmp_path):
    sentences = json.loads(json.dumps(ner_data["sentences"][:4]))
    data = write_conll(tmp_path / "test.conll", sentences)

    result = CliRunner().invoke(evaluate, [str(ner_run_dir), "--data", str(data), "--json"])

    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.splitlines()[-1])
    assert metrics["task"] == "token-classification"
    assert metrics["rows"] == 4
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (1.0, 1.0, 1.0)
    assert set(metrics["per_type"]) <= {"PER", "LOC"}


def test_evaluate_names_the_bad_line(ner_run_dir, tmp_path):
    data = tmp_path / "bad.conll"
    data.write_text("Alice B-PER\nParis LOCATION\n", encoding="utf-8")

    result = CliRunner().invoke(evaluate, [str(ner_run_dir), "--data", str(data)])

    assert result.exit_code == 1
    assert f"Received: tag='LOCATION' at {data}:2" in result.output


def test_fit_command_trains_from_conll_and_reports_bad_data(ner_base_model_dir, ner_data,
                                                             tmp_path):
    from tests.token_classification_fixtures import ner_sentences
    from tfinetune.cli.fit import command as fit

    train = write_conll(tmp_path / "train.conll", ner_sentences(16, seed=5))
    out = tmp_path / "run"

    result = CliRunner().invoke(fit, [
        "--task", "token-classification", "--model", str(ner_base_model_dir), "--train",
        str(train), "--validation", str(ner_data["validation"]), "--output-dir", str(out),
        "--epochs", "1", "--batch-size", "8", "--max-length", "24"])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["task"] == "token-classification"
    assert summary["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert set(summary["validation"]) >= {"f1", "precision", "recall", "accuracy", "loss"}
    assert json.loads((out / "labels.json").read_text())["labels"] == summary["labels"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tokens": ["Alice", "Smith"], "tags": ["B-PER"]}\n', encoding="utf-8")
    result = CliRunner().invoke(fit, [
        "--task", "token-classification", "--model", str(ner_base_model_dir), "--train",
        str(bad), "--output-dir", str(tmp_path / "bad-run")])
    assert result.exit_code == 1
    assert f"Received: tags=['B-PER'] (1 tag for 2 tokens) at {bad}:1" in result.output
    assert not (tmp_path / "bad-run").exists()
