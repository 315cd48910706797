"""Session-wide fixtures: tiny BERT models and synthetic data, built once, offline.

Nothing here downloads anything. The tiny model is a real `transformers` BERT (2 layers,
hidden size 32) with a real WordPiece vocabulary, saved with `save_pretrained` so that the
code under test loads it exactly the way it loads `bert-base-uncased`.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

import tfinetune  # noqa: F401  (sets USE_TORCH=0 / TF_USE_LEGACY_KERAS before TF imports)

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


def _write_run_dir(directory: Path, tiny_model_dir: Path, text_pair_column: str | None) -> Path:
    """A run directory with the layout `tfinetune fit` writes (model, tokenizer, labels, config)."""
    import yaml
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSequenceClassification

    model = TFAutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(directory)
    (directory / "labels.json").write_text(json.dumps({"labels": LABELS}), encoding="utf-8")
    config = {
        "task": "text-classification",
        "model": str(tiny_model_dir),
        "text_column": "text",
        "text_pair_column": text_pair_column,
        "label_column": "label",
        "max_length": 32,
    }
    (directory / "fit_config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished single-text classification run directory (untrained head, fixed weights)."""
    return _write_run_dir(tmp_path_factory.mktemp("run-single"), tiny_model_dir, None)


@pytest.fixture(scope="session")
def tiny_pair_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished sentence-pair classification run directory (`text` + `text_pair`)."""
    return _write_run_dir(tmp_path_factory.mktemp("run-pair"), tiny_model_dir, "text_pair")
