"""Session-wide fixtures: tiny BERT models and synthetic data, built once, offline.

Nothing here downloads anything. The tiny model is a real `transformers` BERT (2 layers,
hidden size 32) with a real WordPiece vocabulary, saved with `save_pretrained` so that the
code under test loads it exactly the way it loads `bert-base-uncased`.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

import tfinetune  # (sets USE_TORCH=0 / TF_USE_LEGACY_KERAS before TF imports)

# Each task's fixtures live in their own module.
pytest_plugins = ["tests.token_classification_fixtures", "tests.question_answering_fixtures",
                  "tests.seq2seq_fixtures", "tests.portable_fixtures",
                  "tests.portable_ner_s2s_fixtures"]

POSITIVE_WORDS = ["good", "great", "excellent", "wonderful", "loved", "brilliant", "fun"]
NEGATIVE_WORDS = ["bad", "awful", "terrible", "boring", "hated", "dull", "poor"]
NEUTRAL_WORDS = [
    "the", "a", "movie", "film", "was", "is", "this", "it", "and", "very", "really", "plot",
    "acting", "story", "ending", "music", "quite", "so", "cast", "script",
]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIAL_TOKENS + POSITIVE_WORDS + NEGATIVE_WORDS + NEUTRAL_WORDS + [
    ".", ",", "!", "?", "##s", "##ly", "##ed", "##ing", "not", "i", "we", "they",
]
LABELS = ["negative", "positive"]


def synthetic_sentiment_rows(n: int, seed: int = 0) -> list[dict]:
    """Rows `{"text", "label"}` whose label is decided by one sentiment word: learnable."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        word = rng.choice(POSITIVE_WORDS if label == "positive" else NEGATIVE_WORDS)
        filler = rng.sample(NEUTRAL_WORDS, rng.randint(2, 6))
        position = rng.randint(0, len(filler))
        words = filler[:position] + [word] + filler[position:]
        rows.append({"text": " ".join(words) + rng.choice([".", "!", ""]), "label": label})
    return rows


def multi_label_rows(n: int, seed: int) -> list[dict]:
    """Rows `{"text", "label"}`: each text has 0, 1 or 2 of the labels `neg`/`pos`, signalled
    by their words; `label` joins them with "|"."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tags = [tag for tag, present in (("pos", i % 2 == 0), ("neg", i % 3 == 0)) if present]
        words = rng.sample(NEUTRAL_WORDS, 3)
        if "pos" in tags:
            words.append(rng.choice(POSITIVE_WORDS))
        if "neg" in tags:
            words.append(rng.choice(NEGATIVE_WORDS))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "|".join(tags)})
    return rows


def regression_rows(n: int, seed: int) -> list[dict]:
    """Rows `{"text", "score"}`: the number of positive words minus negative words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positives, negatives = rng.randint(0, 2), rng.randint(0, 2)
        words = (rng.sample(NEUTRAL_WORDS, 2) + rng.sample(POSITIVE_WORDS, positives)
                 + rng.sample(NEGATIVE_WORDS, negatives))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": float(positives - negatives)})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _build_tiny_base_model(directory: Path) -> Path:
    from transformers import BertConfig
    from transformers import BertTokenizerFast
    from transformers import TFBertModel

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A pretrained-style tiny BERT (base model, no head) plus its WordPiece tokenizer."""
    return _build_tiny_base_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def sentiment_data(tmp_path_factory) -> dict:
    """Synthetic, learnable sentiment CSVs: {"train": Path, "validation": Path}."""
    directory = tmp_path_factory.mktemp("sentiment-data")
    return {
        "train": write_csv(directory / "train.csv", synthetic_sentiment_rows(160, seed=1)),
        "validation": write_csv(directory / "validation.csv", synthetic_sentiment_rows(40, seed=2)),
    }


def _fit_run_dir(directory: Path, tiny_model_dir: Path, rows: list[dict], **options) -> Path:
    """A run directory written by a real (short) `tfinetune.fit` of the tiny BERT on `rows`;
    `options` are FitConfig fields (2 epochs unless given)."""
    train = write_csv(directory.parent / f"{directory.name}-train.csv", rows)
    tfinetune.fit(tfinetune.FitConfig(
        model=str(tiny_model_dir), train=str(train), output_dir=str(directory),
        **{"epochs": 2, "batch_size": 16, "learning_rate": 3e-3, "max_length": 32, "seed": 0,
           **options}))
    return directory


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished single-text classification run directory, written by `tfinetune.fit`."""
    return _fit_run_dir(tmp_path_factory.mktemp("runs") / "single", tiny_model_dir,
                        synthetic_sentiment_rows(64, seed=11))


@pytest.fixture(scope="session")
def tiny_pair_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished sentence-pair classification run directory (`text` + `text_pair`)."""
    # The sentiment sits in the second segment; the first is neutral context.
    rows = [{"text": " ".join(NEUTRAL_WORDS[i % 7:i % 7 + 3]), "text_pair": row["text"],
             "label": row["label"]}
            for i, row in enumerate(synthetic_sentiment_rows(64, seed=11))]
    return _fit_run_dir(tmp_path_factory.mktemp("runs") / "pair", tiny_model_dir, rows,
                        text_pair_column="text_pair")


@pytest.fixture(scope="session")
def tiny_multi_label_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A multi-label run directory (labels `neg`, `pos`; delimiter "|"; threshold 0.5) written
    by a short real `tfinetune.fit`. Barely trained: tests needing text-dependent outputs use
    the sensitive copies of tests/export/conftest.py."""
    return _fit_run_dir(tmp_path_factory.mktemp("runs") / "multi-label", tiny_model_dir,
                        multi_label_rows(32, seed=11), problem_type="multi-label",
                        label_delimiter="|", epochs=1)


@pytest.fixture(scope="session")
def tiny_regression_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A regression run directory (target column `score`) written by a short real
    `tfinetune.fit`."""
    return _fit_run_dir(tmp_path_factory.mktemp("runs") / "regression", tiny_model_dir,
                        regression_rows(32, seed=11), label_column="score",
                        problem_type="regression", epochs=1)


@pytest.fixture(scope="session")
def sensitive_multi_label_run_dir(tmp_path_factory, tiny_multi_label_run_dir) -> Path:
    """`tiny_multi_label_run_dir` with seeded weights (see tests/export/conftest.py): sigmoid
    scores visibly text-dependent, the same in every session."""
    from tests.export.conftest import _write_sensitive_copy

    return _write_sensitive_copy(tiny_multi_label_run_dir,
                                 tmp_path_factory.mktemp("run-multi-label-sensitive"), 2)


@pytest.fixture(scope="session")
def sensitive_regression_run_dir(tmp_path_factory, tiny_regression_run_dir) -> Path:
    """`tiny_regression_run_dir` with seeded weights: values visibly text-dependent."""
    from tests.export.conftest import _write_sensitive_copy

    return _write_sensitive_copy(tiny_regression_run_dir,
                                 tmp_path_factory.mktemp("run-regression-sensitive"), 3)


@pytest.fixture(scope="session")
def multi_label_export(tmp_path_factory, sensitive_multi_label_run_dir):
    """The multi-label model exported into a fresh base path."""
    import export

    return export.export_model(sensitive_multi_label_run_dir,
                               tmp_path_factory.mktemp("models-multi-label"))


@pytest.fixture(scope="session")
def regression_export(tmp_path_factory, sensitive_regression_run_dir):
    """The regression model exported into a fresh base path."""
    import export

    return export.export_model(sensitive_regression_run_dir,
                               tmp_path_factory.mktemp("models-regression"))


@pytest.fixture(scope="session")
def multi_label_reference(sensitive_multi_label_run_dir):
    """The in-memory model and tokenizer of `sensitive_multi_label_run_dir`."""
    from export.run_directory import RunDirectory

    run = RunDirectory.open(sensitive_multi_label_run_dir)
    return run.load_model(), run.load_tokenizer()


@pytest.fixture(scope="session")
def regression_reference(sensitive_regression_run_dir):
    """The in-memory model and tokenizer of `sensitive_regression_run_dir`."""
    from export.run_directory import RunDirectory

    run = RunDirectory.open(sensitive_regression_run_dir)
    return run.load_model(), run.load_tokenizer()
