"""`tfinetune fit` through click: options, config files, and every data error."""

import json

import pytest
from click.testing import CliRunner

from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tfinetune.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


@pytest.fixture()
def data(tmp_path):
    return {
        "train": write_csv(tmp_path / "train.csv", synthetic_sentiment_rows(32, seed=5)),
        "dev": write_csv(tmp_path / "dev.csv", synthetic_sentiment_rows(8, seed=6)),
    }


def test_help_lists_every_command_and_hugging_face_aliases():
    result = run("--help")
    assert result.exit_code == 0
    for name in ("fit", "export", "serve", "predict", "score"):
        assert name in result.output
    fit_help = run("fit", "--help").output
    for flag in ("--num-train-epochs", "--per-device-train-batch-size",
                 "--per-device-eval-batch-size", "--lr-scheduler-type", "--warmup-ratio",
                 "--weight-decay", "--output-dir", "--config", "--text-pair-column"):
        assert flag in fit_help, flag


def test_fit_command_trains_and_prints_a_json_summary(tmp_path, tiny_model_dir, data):
    output = tmp_path / "run"
    result = run("fit", "--model", tiny_model_dir, "--train", data["train"], "--validation",
                 data["dev"], "--output-dir", output, "--num-train-epochs", 1,
                 "--per-device-train-batch-size", 16, "--max-length", 16,
                 "--lr-scheduler-type", "cosine", "--seed", 3)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["output_dir"] == str(output)
    assert summary["labels"] == ["negative", "positive"]
    assert set(summary["validation"]) == {"loss", "accuracy", "precision", "recall", "f1"}
    assert (output / "tf_model.h5").is_file()


def test_config_file_supplies_options_and_flags_override_it(tmp_path, tiny_model_dir, data):
    config = tmp_path / "fit.yaml"
    config.write_text(f"model: {tiny_model_dir}\ntrain: {data['train']}\n"
                      f"output_dir: {tmp_path / 'from-yaml'}\nepochs: 7\nmax_length: 16\n"
                      "batch_size: 32\n")
    result = run("fit", "--config", config, "--epochs", 1, "--output-dir", tmp_path / "flag")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "from-yaml").exists()
    saved = (tmp_path / "flag" / "fit_config.yaml").read_text()
    assert "epochs: 1\n" in saved and "max_length: 16\n" in saved


def _csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing_file", ["nope.csv", "not found"]),
    ("missing_column", ["'label'", "Columns found", "'sentiment'"]),
    ("empty_file", ["empty.csv", "empty"]),
    ("header_only", ["header.csv", "at least one data row"]),
    ("empty_text", ["Empty text", "bad.csv:3"]),
    ("unseen_label", ["Label not seen", "Received: label='neutral' at ", "dev.csv:3",
                      "['negative', 'positive']"]),
    ("unreadable_row", ["ragged.csv:3"]),
    ("bad_jsonl", ["bad.jsonl:2"]),
    ("empty_label", ["Empty label", "nolabel.csv:2"]),
])
def test_data_errors_name_file_and_row_and_write_nothing(tmp_path, tiny_model_dir, data, case,
                                                         expected):
    train, validation = data["train"], None
    if case == "missing_file":
        train = tmp_path / "nope.csv"
    elif case == "missing_column":
        train = _csv(tmp_path / "cols.csv", "text,sentiment\ngood film,positive\n")
    elif case == "empty_file":
        train = _csv(tmp_path / "empty.csv", "")
    elif case == "header_only":
        train = _csv(tmp_path / "header.csv", "text,label\n")
    elif case == "empty_text":
        train = _csv(tmp_path / "bad.csv", "text,label\ngood,positive\n  ,negative\n")
    elif case == "unseen_label":
        validation = _csv(tmp_path / "dev.csv", "text,label\ngood,positive\nmeh,neutral\n")
    elif case == "unreadable_row":
        train = _csv(tmp_path / "ragged.csv", "text,label\ngood,positive\nbad,negative,extra\n")
    elif case == "bad_jsonl":
        train = _csv(tmp_path / "bad.jsonl",
                     '{"text": "good", "label": "positive"}\n{"text": "bad", "label": \n')
    elif case == "empty_label":
        train = _csv(tmp_path / "nolabel.csv", "text,label\ngood,\n")
    output = tmp_path / "run"
    args = ["fit", "--model", tiny_model_dir, "--train", train, "--output-dir", output]
    if validation:
        args += ["--validation", validation]
    result = run(*args)
    assert result.exit_code != 0
    for fragment in expected:
        assert fragment in result.output, (fragment, result.output)
    assert not output.exists()


def test_bad_option_value_is_a_clear_error(tmp_path, data):
    result = run("fit", "--train", data["train"], "--output-dir", tmp_path / "run",
                 "--epochs", "2.5")
    assert result.exit_code != 0
    assert "epochs" in result.output and "Received: epochs=2.5" in result.output
    assert not (tmp_path / "run").exists()


def test_precision_choices_and_config_file(tmp_path, data):
    result = run("fit", "--train", data["train"], "--output-dir", tmp_path / "run",
                 "--precision", "float16")
    assert result.exit_code == 2
    assert "'float16' is not one of 'float32', 'mixed_bfloat16'" in result.output
    config = tmp_path / "fit.yaml"
    config.write_text(f"train: {data['train']}\noutput_dir: {tmp_path / 'run'}\n"
                      "precision: bfloat16\n")
    result = run("fit", "--config", config)
    assert result.exit_code == 1
    assert "Received: precision='bfloat16'" in result.output
    assert not (tmp_path / "run").exists()


def test_integer_labels_from_jsonl_keep_numeric_order(tmp_path, tiny_model_dir):
    rows = [{"text": row["text"], "label": 10 if row["label"] == "positive" else 2}
            for row in synthetic_sentiment_rows(32, seed=8)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run("fit", "--model", tiny_model_dir, "--train", train, "--output-dir",
                 tmp_path / "run", "--epochs", 1, "--max-length", 16)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == {"labels": ["2", "10"]}
