"""`tfinetune fit --task seq2seq` → `tfinetune export` → `tfinetune evaluate`, all through the
real CLI (click's CliRunner), on the tiny ByT5 model and a CSV with custom column names."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from tests.seq2seq_fixtures import translation_rows
from tfinetune.cli.main import cli

pytestmark = pytest.mark.slow


def write_rows(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["en", "de"])
        writer.writeheader()
        writer.writerows({"en": row["source"], "de": row["target"]} for row in rows)
    return path


def test_fit_export_and_evaluate_from_the_command_line(byt5_model_dir, tmp_path):
    import tensorflow as tf

    train = write_rows(tmp_path / "train.csv", translation_rows(16, seed=5))
    validation = write_rows(tmp_path / "validation.csv", translation_rows(4, seed=6))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, list(map(str, [
        "fit", "--task", "seq2seq", "--model", byt5_model_dir, "--train", train,
        "--validation", validation, "--output-dir", run, "--source-column", "en",
        "--target-column", "de", "--source-prefix", "en to de: ", "--max-length", 40,
        "--max-target-length", 8, "--num-beams", 1, "--epochs", 1, "--batch-size", 8])))
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "seq2seq" and metrics["train_rows"] == 16
    assert {"bleu", "rouge1", "rouge2", "rougeL", "gen_len"} <= set(metrics["validation"])

    result = CliRunner().invoke(cli, ["evaluate", str(run), "--data", str(validation),
                                      "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.splitlines()[-1])
    assert printed["bleu"] == pytest.approx(metrics["validation"]["bleu"])
    assert printed["count"] == 4

    base = tmp_path / "models"
    result = CliRunner().invoke(cli, ["export", str(run), "--base-path", str(base)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(str(base / "1"))
    config = json.loads((base / "1" / "assets.extra" / "export_config.json").read_text())
    assert (config["source_prefix"], config["max_length"], config["max_target_length"]) == (
        "en to de: ", 40, 8)
    loaded = tf.saved_model.load(str(base / "1"))
    # The prefix is put before the text in the graph: 10 bytes + "one" + eos.
    ids = loaded.tokenize(tf.constant(["one"]))["input_ids"].numpy()[0]
    assert list(ids[:14]) == [b + 3 for b in b"en to de: one"] + [1]
