"""Session fixtures of the token_classification task (tiny models and data, built offline).

The synthetic NER data: short sentences from a small vocabulary where first names and surnames
are PER (one or two words: `B-PER I-PER`) and city names LOC (`New York`: `B-LOC I-LOC`), so
that a tiny BERT learns the tags in a few epochs. Some words are split into several WordPieces
(`München` → `mun ##chen`, `Berlin` → `ber ##lin`) and some carry accents the uncased
tokenizer strips (`Zoë`, `München`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import tfinetune  # noqa: F401  (sets USE_TORCH=0 / TF_USE_LEGACY_KERAS before TF imports)

FIRST_NAMES = ["Alice", "Bob", "Carol", "Dave", "Zoë", "Emma"]
SURNAMES = ["Smith", "Jones", "Brown"]
CITIES = [["Paris"], ["London"], ["Rome"], ["Berlin"], ["München"], ["New", "York"]]
TEMPLATES = [
    "{PER} lives in {LOC} .",
    "mr {PER} visited {LOC} today",
    "{PER} met {PER} in {LOC}",
    "yesterday {PER} went to {LOC} and {LOC}",
    "the office in {LOC} likes {PER} ,",
    "{PER} works at the {LOC} office",
    "{X} {PER} lives in {LOC} {X}",
]
#: Filler words, always `O`; most are outside the vocabulary ([UNK] for the tokenizer).
UNKNOWN_WORDS = ["nobody", "here", "really", "quite", "soon", "!", "&"]
NER_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "alice", "bob", "carol", "dave", "zoe", "emma", "smith", "jones", "brown",
    "paris", "london", "rome", "ber", "##lin", "mun", "##chen", "new", "york",
    "mr", "lives", "in", "visited", "today", "met", "yesterday", "went", "to", "and", "the",
    "office", "likes", "works", "at", "is", "a", ".", ",", "!", "?", "-", "'", "##s",
]


def ner_sentences(count: int, seed: int) -> list[dict]:
    """`count` sentences `{"tokens": [...], "tags": [...]}` from `TEMPLATES`."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        tokens, tags = [], []
        for slot in rng.choice(TEMPLATES).split():
            if slot == "{PER}":
                words = [rng.choice(FIRST_NAMES)] + ([rng.choice(SURNAMES)]
                                                     if rng.random() < 0.4 else [])
                kind = "PER"
            elif slot == "{LOC}":
                words, kind = rng.choice(CITIES), "LOC"
            elif slot == "{X}":
                tokens.append(rng.choice(UNKNOWN_WORDS))
                tags.append("O")
                continue
            else:
                tokens.append(slot)
                tags.append("O")
                continue
            tokens.extend(words)
            tags.extend(["B-" + kind] + ["I-" + kind] * (len(words) - 1))
        sentences.append({"tokens": tokens, "tags": tags})
    return sentences


def write_jsonl(path: Path, sentences: list[dict]) -> Path:
    path.write_text("".join(json.dumps(sentence, ensure_ascii=False) + "\n"
                            for sentence in sentences), encoding="utf-8")
    return path


def write_conll(path: Path, sentences: list[dict]) -> Path:
    """CoNLL-2003 layout: `-DOCSTART-`, then `token POS chunk tag` lines, blank-separated."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for sentence in sentences:
        lines += [f"{token} NN I-NP {tag}" for token, tag in zip(sentence["tokens"],
                                                                  sentence["tags"])]
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_ner_base_model(directory: Path) -> Path:
    """A pretrained-style tiny BERT (2 layers, hidden 32) with the NER vocabulary."""
    from transformers import BertConfig
    from transformers import BertTokenizerFast
    from transformers import TFBertModel

    import tf_keras

    directory.mkdir(parents=True, exist_ok=True)
    tf_keras.utils.set_random_seed(0)  # the same "pretrained" weights in every session
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(NER_VOCAB) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True).save_pretrained(directory)
    config = BertConfig(vocab_size=len(NER_VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def ner_base_model_dir(tmp_path_factory) -> Path:
    return build_ner_base_model(tmp_path_factory.mktemp("ner-tiny-bert"))


@pytest.fixture(scope="session")
def ner_data(tmp_path_factory) -> dict:
    """`{"train": JSONL, "validation": CoNLL, "sentences": validation sentences}`."""
    directory = tmp_path_factory.mktemp("ner-data")
    validation = ner_sentences(40, seed=2)
    return {"train": write_jsonl(directory / "train.jsonl", ner_sentences(160, seed=1)),
            "validation": write_conll(directory / "validation.conll", validation),
            "sentences": validation}


@pytest.fixture(scope="session")
def ner_fit_result(tmp_path_factory, ner_base_model_dir, ner_data):
    """A real `tfinetune.fit` of the tiny BERT on the synthetic NER data (learns it)."""
    return tfinetune.fit(tfinetune.FitConfig(
        task="token-classification", model=str(ner_base_model_dir),
        train=str(ner_data["train"]), validation=str(ner_data["validation"]),
        output_dir=str(tmp_path_factory.mktemp("ner-runs") / "run"), epochs=5, batch_size=16,
        learning_rate=3e-3, max_length=32, seed=0, warmup_ratio=0.1))


@pytest.fixture(scope="session")
def ner_run_dir(ner_fit_result) -> Path:
    return ner_fit_result.output_dir


@pytest.fixture(scope="session")
def ner_export(tmp_path_factory, ner_run_dir):
    """The NER run exported into a fresh base path (`ExportResult`)."""
    import export

    return export.export_model(ner_run_dir, tmp_path_factory.mktemp("ner-models") / "ner")
