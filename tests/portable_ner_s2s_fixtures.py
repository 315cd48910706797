"""Session fixtures of the `--portable` token-classification and seq2seq tests: each task's run
exported with `portable=True` (the default exports are `ner_export`, `spm_export` and
`byt5_export` of the task fixtures)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def portable_ner_export(tmp_path_factory, ner_run_dir):
    """The NER run exported with `portable=True` (`ExportResult`; version 1)."""
    import export

    return export.export_model(ner_run_dir, tmp_path_factory.mktemp("ner-portable") / "ner",
                               portable=True)


@pytest.fixture(scope="session")
def portable_spm_export(tmp_path_factory, spm_run_dir):
    """The SentencePiece T5 run (greedy) exported with `portable=True`."""
    import export

    return export.export_model(spm_run_dir, tmp_path_factory.mktemp("t5-portable") / "t5",
                               portable=True)


@pytest.fixture(scope="session")
def portable_byt5_export(tmp_path_factory, byt5_run_dir):
    """The ByT5 run (beam search, 2 beams) exported with `portable=True`."""
    import export

    return export.export_model(byt5_run_dir, tmp_path_factory.mktemp("byt5-portable") / "byt5",
                               portable=True)
