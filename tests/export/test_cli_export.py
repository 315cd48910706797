"""`tfinetune export` (tfinetune/cli/export.py), invoked directly through click's CliRunner."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tfinetune.cli.export import ExportCommandConfig
from tfinetune.cli.export import command


def _invoke(*args):
    return CliRunner().invoke(command, [str(a) for a in args])


def test_export_prints_the_version_path(tiny_run_dir, tmp_path):
    import tensorflow as tf

    base = tmp_path / "models"
    result = _invoke(tiny_run_dir, "--base-path", base, "--version", 3, "--max-length", 16)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{base / '3'}\n"
    assert "Exported version 3 (signatures: serving_default, tokens, classify;" in result.stderr
    config = json.loads((base / "3" / "assets.extra" / "export_config.json").read_text())
    assert config["max_length"] == 16
    loaded = tf.saved_model.load(str(base / "3"))
    long_text = " ".join(["good"] * 40)
    assert loaded.tokenize(text=tf.constant([long_text]))["input_ids"].shape == (1, 16)


def test_existing_version_is_a_click_error(tiny_run_dir, tmp_path):
    (tmp_path / "3").mkdir()

    result = _invoke(tiny_run_dir, "-b", tmp_path, "--version", 3)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Error: Version 3 already exists" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3"]


def test_missing_run_files_is_a_click_error(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    result = _invoke(run_dir, "--base-path", tmp_path / "models")

    assert result.exit_code == 1
    assert "Missing fit_config.yaml" in result.stderr
    assert "tfinetune fit" in result.stderr


def test_base_path_is_required(tiny_run_dir):
    result = _invoke(tiny_run_dir)

    assert result.exit_code == 2
    assert "Missing option '-b' / '--base-path'" in result.stderr


@pytest.mark.parametrize("option, value", [("--version", "-1"), ("--max-length", "0"),
                                           ("--version", "latest")])
def test_invalid_numbers_are_usage_errors(tiny_run_dir, tmp_path, option, value):
    result = _invoke(tiny_run_dir, "--base-path", tmp_path, option, value)

    assert result.exit_code == 2
    assert option in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_options():
    result = _invoke("--help")

    assert result.exit_code == 0
    for option in ["RUN_DIR", "--base-path", "--version", "--max-length"]:
        assert option in result.stdout


def test_config_is_a_frozen_dataclass():
    config = ExportCommandConfig(run_dir=Path("run"), base_path=Path("models"))

    assert config.version is None and config.max_length is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.version = 2  # type: ignore[misc]
