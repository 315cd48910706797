"""Fixtures for the export tests: sensitive run directories and exports built once per session.

The shared `tiny_run_dir` model is randomly initialised with BERT's small initializer, so its
probabilities hardly depend on the input (they differ by ~1e-5 between texts): a comparison
with a 1e-4 tolerance would pass even with a broken tokenizer. `sensitive_run_dir` and
`sensitive_pair_run_dir` are copies with all weights re-drawn from a seeded, well-scaled
distribution: probabilities then differ by ~0.4 between texts, by ~0.01-0.2 for one changed
token and by ~0.2-0.3 when a pair's segments are swapped, while staying float32-stable (eager
vs graph differ by < 1e-6), and they are the same in every test session. The signature and
parity tests export these.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import LABELS

#: Texts the tests compare on; deliberately not the export's own parity texts.
CHECK_TEXTS = [
    "good movie",
    "The acting was AWFUL, and the plot was boring.",
    "I loved it!",
    "x",
    "",
    "a wonderful, brilliant film; really fun",
    "the the the the the the the the the the the the the the the the the the the the the "
    "the the the the the the the the the the the the the the the the the the the the the",
]
CHECK_PAIRS = [
    "the film",
    "bad",
    "fun fun fun",
    "the story was dull and the ending was poor",
    "",
    "?",
    "great great great great great great great great great great great great great great",
]

_RUN_FILES = ("labels.json", "fit_config.yaml")


def _write_sensitive_copy(source: Path, target: Path, seed: int) -> Path:
    import numpy as np
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSequenceClassification

    model = TFAutoModelForSequenceClassification.from_pretrained(source)
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        name, shape = variable.name, tuple(variable.shape)
        if "LayerNorm" in name:
            value = np.ones(shape) if "gamma" in name else np.zeros(shape)
        elif "embeddings" in name:
            value = rng.normal(0.0, 1.0, shape)
        elif "kernel" in name:
            value = rng.normal(0.0, 1.5 / np.sqrt(shape[0]), shape)
        else:
            value = np.zeros(shape)
        variable.assign(value.astype(np.float32))
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    for name in _RUN_FILES:
        shutil.copyfile(source / name, target / name)
    return target


@pytest.fixture(scope="session")
def sensitive_run_dir(tmp_path_factory, tiny_run_dir) -> Path:
    """`tiny_run_dir` with seeded weights whose outputs depend visibly on the text."""
    return _write_sensitive_copy(tiny_run_dir, tmp_path_factory.mktemp("run-sensitive"), 0)


@pytest.fixture(scope="session")
def sensitive_pair_run_dir(tmp_path_factory, tiny_pair_run_dir) -> Path:
    """`tiny_pair_run_dir` with other seeded weights, outputs visibly text-dependent."""
    return _write_sensitive_copy(tiny_pair_run_dir, tmp_path_factory.mktemp("run-pair-sensitive"),
                                  1)


@pytest.fixture(scope="session")
def single_base(tmp_path_factory) -> Path:
    """A base path that already holds entries TF Serving ignores (non-integer names, a file)."""
    base = tmp_path_factory.mktemp("models-single")
    (base / "notes").mkdir()
    (base / "2b").mkdir()
    (base / ".hidden").mkdir()
    (base / "7").write_text("a file, not a version directory\n", encoding="utf-8")
    return base


@pytest.fixture(scope="session")
def single_export(single_base, sensitive_run_dir):
    """The single-text model exported (auto version: 1) into `single_base`."""
    import export

    return export.export_model(sensitive_run_dir, single_base)


@pytest.fixture(scope="session")
def pair_export(tmp_path_factory, sensitive_pair_run_dir):
    """The text-pair model exported into a fresh base path."""
    import export

    return export.export_model(sensitive_pair_run_dir, tmp_path_factory.mktemp("models-pair"))


@pytest.fixture(scope="session")
def loaded_single(single_export):
    """`single_export` reloaded with `tf.saved_model.load`."""
    import tensorflow as tf

    return tf.saved_model.load(str(single_export.path))


@pytest.fixture(scope="session")
def loaded_pair(pair_export):
    """`pair_export` reloaded with `tf.saved_model.load`."""
    import tensorflow as tf

    return tf.saved_model.load(str(pair_export.path))


@pytest.fixture(scope="session")
def single_reference(sensitive_run_dir):
    """The in-memory model and Hugging Face tokenizer of `sensitive_run_dir`."""
    from export.run_directory import RunDirectory

    run = RunDirectory.open(sensitive_run_dir)
    return run.load_model(), run.load_tokenizer()


@pytest.fixture(scope="session")
def pair_reference(sensitive_pair_run_dir):
    """The in-memory model and Hugging Face tokenizer of `sensitive_pair_run_dir`."""
    from export.run_directory import RunDirectory

    run = RunDirectory.open(sensitive_pair_run_dir)
    return run.load_model(), run.load_tokenizer()


@pytest.fixture(scope="session")
def labels() -> list[str]:
    return list(LABELS)

