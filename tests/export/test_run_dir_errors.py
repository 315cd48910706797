"""Bad run directories and options fail early with messages that say what to do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_copy(tmp_path, tiny_run_dir):
    """A writable copy of `tiny_run_dir` to break."""
    return shutil.copytree(tiny_run_dir, tmp_path / "run")


def _export(run_dir, base):
    import export

    return export.export_model(run_dir, base)


def test_import_export_does_not_import_tensorflow():
    code = ("import sys, export; assert callable(export.__getattr__); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_errors_share_one_base_class():
    import export
    from export import errors

    assert export.ExportError is errors.ExportError
    for name in ["RunDirError", "UnsupportedTokenizerError", "VersionError", "ParityError"]:
        assert issubclass(getattr(errors, name), export.ExportError)


def test_missing_run_dir(tmp_path):
    from export.errors import RunDirError

    with pytest.raises(RunDirError, match=r"Run directory not found.*tfinetune fit.*Received: "
                                          r"run_dir='.*nowhere'"):
        _export(tmp_path / "nowhere", tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_missing_labels_json(run_copy, tmp_path):
    from export.errors import RunDirError

    (run_copy / "labels.json").unlink()
    with pytest.raises(RunDirError) as raised:
        _export(run_copy, tmp_path / "models")
    message = str(raised.value)
    assert "Missing labels.json" in message
    assert "tfinetune fit" in message
    assert str(run_copy) in message


@pytest.mark.parametrize("content", ['{"labels": ["only-one"]}', '{"labels": ["a", "a"]}',
                                     '["negative", "positive"]', "not json"])
def test_invalid_labels_json(run_copy, tmp_path, content):
    from export.errors import RunDirError

    (run_copy / "labels.json").write_text(content, encoding="utf-8")
    with pytest.raises(RunDirError, match=r"Invalid labels\.json\. Expected"):
        _export(run_copy, tmp_path / "models")


def test_missing_fit_config(run_copy, tmp_path):
    from export.errors import RunDirError

    (run_copy / "fit_config.yaml").unlink()
    with pytest.raises(RunDirError, match=r"Missing fit_config\.yaml.*tfinetune fit"):
        _export(run_copy, tmp_path / "models")


def test_other_task(run_copy, tmp_path):
    from export.errors import RunDirError

    (run_copy / "fit_config.yaml").write_text("task: image-segmentation\nmax_length: 32\n",
                                              encoding="utf-8")
    with pytest.raises(RunDirError, match=r"Expected one of \['text-classification', "
                                          r"'token-classification', .*Received: "
                                          r"task='image-segmentation'"):
        _export(run_copy, tmp_path / "models")


def test_missing_model_config(run_copy, tmp_path):
    from export.errors import RunDirError

    (run_copy / "config.json").unlink()
    with pytest.raises(RunDirError, match=r"Missing config\.json.*save_pretrained"):
        _export(run_copy, tmp_path / "models")


def test_labels_that_do_not_match_the_model(run_copy, tmp_path):
    from export.errors import RunDirError

    (run_copy / "labels.json").write_text(json.dumps({"labels": ["a", "b", "c"]}),
                                          encoding="utf-8")
    with pytest.raises(RunDirError, match=r"disagree on the number of classes\. Expected 3 "
                                          r"classes.*Received: num_labels=2"):
        _export(run_copy, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_max_length_beyond_the_model(tiny_run_dir, tmp_path):
    import export
    from export.errors import ExportError

    base = tmp_path / "models"
    with pytest.raises(ExportError, match=r"Expected at most 128 \(the model's "
                                          r"max_position_embeddings\)\. Received: max_length=129"):
        export.export_model(tiny_run_dir, base, max_length=129)
    assert not base.exists()


def test_non_wordpiece_tokenizer(run_copy, tmp_path):
    """A BPE tokenizer cannot be embedded (yet): the export says so before writing anything."""
    from tokenizers import Tokenizer
    from tokenizers import models
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from export.errors import UnsupportedTokenizerError

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "g": 4, "o": 5, "d": 6, "go": 7}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[("g", "o")], unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"]:
        (run_copy / name).unlink(missing_ok=True)
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]").save_pretrained(run_copy)
    base = tmp_path / "models"

    with pytest.raises(UnsupportedTokenizerError) as raised:
        _export(run_copy, base)

    message = str(raised.value)
    assert "Only BERT-style WordPiece tokenizers can be embedded in the graph for now" in message
    assert "Received: PreTrainedTokenizerFast with a BPE model" in message
    assert not base.exists()


def test_empty_parity_texts(tiny_run_dir, tmp_path):
    import export
    from export.errors import ExportError

    base = tmp_path / "models"
    with pytest.raises(ExportError, match="Invalid parity_texts"):
        export.export_model(tiny_run_dir, base, parity_texts=[])
    assert not base.exists()
