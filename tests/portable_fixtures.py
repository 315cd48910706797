"""Session fixtures of the `--portable` export tests: for each classifier kind (single text, text
pair, multi-label, regression) a run with text-dependent outputs, exported twice into separate
base paths: with the tokenizer in the graph (the default) and `portable=True`."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The classifier kinds every portable test covers.
KINDS = ("single", "pair", "multi-label", "regression")


@pytest.fixture(scope="session")
def portable_run_dirs(tmp_path_factory, tiny_run_dir, tiny_pair_run_dir,
                      sensitive_multi_label_run_dir, sensitive_regression_run_dir) -> dict:
    """Kind → run directory with seeded weights (outputs visibly text-dependent)."""
    from tests.export.conftest import _write_sensitive_copy

    return {
        "single": _write_sensitive_copy(tiny_run_dir, tmp_path_factory.mktemp("run-p-single"), 0),
        "pair": _write_sensitive_copy(tiny_pair_run_dir, tmp_path_factory.mktemp("run-p-pair"), 1),
        "multi-label": sensitive_multi_label_run_dir,
        "regression": sensitive_regression_run_dir,
    }


@pytest.fixture(scope="session")
def portable_bases(tmp_path_factory, portable_run_dirs) -> dict[str, Path]:
    """Kind → base path holding version 1 of the run exported with `portable=True`."""
    import export

    return {kind: export.export_model(run, tmp_path_factory.mktemp(f"portable-{kind}"),
                                      portable=True).path.parent
            for kind, run in portable_run_dirs.items()}


@pytest.fixture(scope="session")
def text_bases(tmp_path_factory, portable_run_dirs) -> dict[str, Path]:
    """Kind → base path holding version 1 of the same run exported with the tokenizer in the
    graph (text in)."""
    import export

    return {kind: export.export_model(run, tmp_path_factory.mktemp(f"text-{kind}")).path.parent
            for kind, run in portable_run_dirs.items()}
