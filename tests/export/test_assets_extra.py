"""`assets.extra/`: labels, export config, the run's fit config, the tokenizer files and the
warm-up requests."""

from __future__ import annotations

import datetime
import json

import pytest

from tests.conftest import LABELS

RUN_DIRS = {"single": "sensitive_run_dir", "pair": "sensitive_pair_run_dir"}


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_assets_extra_contents(kind, request):
    result = request.getfixturevalue(f"{kind}_export")
    run_dir = request.getfixturevalue(RUN_DIRS[kind])
    extra = result.path / "assets.extra"

    assert sorted(p.name for p in extra.iterdir()) == [
        "export_config.json", "fit_config.yaml", "labels.json", "tf_serving_warmup_requests",
        "tokenizer"]
    assert json.loads((extra / "labels.json").read_text(encoding="utf-8")) == {"labels": LABELS}
    assert (extra / "fit_config.yaml").read_bytes() == (run_dir / "fit_config.yaml").read_bytes()

    config = json.loads((extra / "export_config.json").read_text(encoding="utf-8"))
    assert config["max_length"] == 32
    assert config["text_pair"] is (kind == "pair")
    assert config["labels"] == LABELS
    assert config["task"] == "text-classification"
    assert config["version"] == result.version
    assert config["run_dir"] == str(run_dir.resolve())
    assert config["signatures"] == ["serving_default", "tokens", "classify"]
    assert config["tfinetune_version"] == "0.1.0"
    created = datetime.datetime.fromisoformat(config["created"])
    assert created.tzinfo is not None


def test_saved_tokenizer_encodes_like_the_run_tokenizer(single_export, sensitive_run_dir):
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(single_export.path / "assets.extra" / "tokenizer")
    original = AutoTokenizer.from_pretrained(sensitive_run_dir)
    texts = ["The movie was GOOD!", "awful, boring film", ""]

    assert saved(texts)["input_ids"] == original(texts)["input_ids"]
    assert (single_export.path / "assets.extra" / "tokenizer" / "vocab.txt").read_text(
        encoding="utf-8") == (sensitive_run_dir / "vocab.txt").read_text(encoding="utf-8")


def test_version_directory_layout(single_export):
    names = sorted(p.name for p in single_export.path.iterdir())
    assert names == ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"]
    assert (single_export.path / "variables" / "variables.index").is_file()


def test_fingerprint_matches_the_rewritten_saved_model(single_export):
    """saved_model.pb is rewritten after saving (classify's method name): the fingerprint too."""
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting
    from tensorflow.core.protobuf import fingerprint_pb2

    written = fingerprint_pb2.FingerprintDef()
    written.ParseFromString((single_export.path / "fingerprint.pb").read_bytes())
    recomputed = fingerprint_pb2.FingerprintDef()
    recomputed.ParseFromString(fingerprinting.CreateFingerprintDef(str(single_export.path)))

    assert written.saved_model_checksum == recomputed.saved_model_checksum
