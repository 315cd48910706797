"""Session fixtures of the seq2seq task (tiny models and data, built offline).

- `byt5_model_dir`: a tiny random T5 with ByT5's byte tokenizer (no vocabulary file at all).
- `spm_model_dir`: a tiny random T5 with a `T5Tokenizer` over a SentencePiece model trained
  here on the synthetic "translation" lines (64 pieces, mostly sub-words, + 4 extra ids).
- `translation_data`: a word-for-word English → "German" dictionary task (one word per word
  class, see `WORD_CLASSES`), which the tiny SentencePiece T5 learns in 12 epochs (BLEU > 80).
- `byt5_run_dir` / `spm_run_dir`: finished `tfinetune.fit` runs of both models.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import tfinetune

#: The "translation" dictionary, by word class: a sentence is one word of each class, in this
#: order, so a tiny model learns it from the words alone (no counting of positions).
WORD_CLASSES = (
    {"one": "eins", "two": "zwei", "three": "drei", "four": "vier"},
    {"red": "rot", "blue": "blau", "green": "gruen"},
    {"cat": "katze", "dog": "hund", "bird": "vogel"},
    {"house": "haus", "garden": "garten", "tree": "baum"},
)
DICTIONARY = {word: translation for words in WORD_CLASSES for word, translation in words.items()}
PREFIX = "translate: "
#: Tiny T5 layout shared by both models.
T5_SIZES = {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
            "num_heads": 2, "d_kv": 16}


def translation_rows(n: int, seed: int) -> list[dict]:
    """Rows `{"source", "target"}`: one word of each `WORD_CLASSES` class (4 words, so that
    BLEU's 4-grams exist) and their word-for-word translation."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        source = [rng.choice(sorted(words)) for words in WORD_CLASSES]
        rows.append({"source": " ".join(source),
                     "target": " ".join(DICTIONARY[word] for word in source)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def tiny_t5(vocab_size: int, seed: int = 0):
    """A random tiny `TFT5ForConditionalGeneration` (pad 0, eos 1, decoding starts at 0)."""
    import tf_keras
    from transformers import T5Config
    from transformers import TFT5ForConditionalGeneration

    tf_keras.utils.set_random_seed(seed)
    config = T5Config(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0, dropout_rate=0.0, **T5_SIZES)
    model = TFT5ForConditionalGeneration(config)
    model(model.dummy_inputs)
    return model


def build_byt5_model(directory: Path) -> Path:
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    tiny_t5(len(tokenizer)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def train_sentencepiece(directory: Path, vocab_size: int = 64) -> Path:
    """A unigram SentencePiece model with T5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece

    lines = directory / "lines.txt"
    rows = translation_rows(300, seed=99)
    extra = ["the quick brown fox jumps over the lazy dog", "hello world, how are you?"]
    lines.write_text("\n".join([row["source"] for row in rows] + [row["target"] for row in rows]
                               + [PREFIX.strip()] * 20 + extra * 5) + "\n", encoding="utf-8")
    prefix = directory / "spiece"
    sentencepiece.SentencePieceTrainer.train(
        input=str(lines), model_prefix=str(prefix), vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        minloglevel=2, num_threads=1)
    return prefix.with_suffix(".model")


def build_spm_model(directory: Path) -> Path:
    from transformers import T5Tokenizer

    work = directory.parent / f"{directory.name}-spm"
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = T5Tokenizer(vocab_file=str(train_sentencepiece(work)), extra_ids=4,
                            legacy=False)
    tiny_t5(len(tokenizer), seed=1).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def byt5_model_dir(tmp_path_factory) -> Path:
    """A pretrained-style tiny T5 with the ByT5 byte tokenizer."""
    return build_byt5_model(tmp_path_factory.mktemp("tiny-byt5"))


@pytest.fixture(scope="session")
def spm_model_dir(tmp_path_factory) -> Path:
    """A pretrained-style tiny T5 with a SentencePiece `T5Tokenizer` trained in the fixture."""
    return build_spm_model(tmp_path_factory.mktemp("tiny-t5-spm") / "model")


@pytest.fixture(scope="session")
def translation_data(tmp_path_factory) -> dict:
    """{"train": Path, "validation": Path} JSONL files of the dictionary task."""
    directory = tmp_path_factory.mktemp("translation-data")
    return {"train": write_jsonl(directory / "train.jsonl", translation_rows(96, seed=1)),
            "validation": write_jsonl(directory / "validation.jsonl",
                                      translation_rows(12, seed=2))}


def fit_seq2seq(model_dir: Path, data: dict, output_dir: Path, **options):
    """A real `tfinetune.fit` of a seq2seq model on `data` (options: FitConfig fields)."""
    return tfinetune.fit(tfinetune.FitConfig(**{
        "task": "seq2seq", "model": str(model_dir), "train": str(data["train"]),
        "validation": str(data["validation"]), "output_dir": str(output_dir),
        "source_prefix": PREFIX, "max_length": 24, "max_target_length": 20, "epochs": 2,
        "batch_size": 16, "eval_batch_size": 16, "learning_rate": 3e-3, "seed": 0,
        "warmup_ratio": 0.0, **options}))


@pytest.fixture(scope="session")
def spm_fit(tmp_path_factory, spm_model_dir, translation_data):
    """The `FitResult` of fitting the SentencePiece T5 on the dictionary task until it learns."""
    return fit_seq2seq(spm_model_dir, translation_data,
                       tmp_path_factory.mktemp("runs") / "seq2seq-spm", epochs=12,
                       learning_rate=1e-2)


@pytest.fixture(scope="session")
def spm_run_dir(spm_fit) -> Path:
    return spm_fit.output_dir


@pytest.fixture(scope="session")
def byt5_run_dir(tmp_path_factory, byt5_model_dir, translation_data) -> Path:
    """A finished (barely trained) ByT5 run; beam search with 2 beams."""
    return fit_seq2seq(byt5_model_dir, translation_data,
                       tmp_path_factory.mktemp("runs") / "seq2seq-byt5", epochs=1,
                       num_beams=2, max_length=32, max_target_length=10).output_dir


@pytest.fixture(scope="session")
def spm_export(tmp_path_factory, spm_run_dir):
    """The `ExportResult` of exporting the learned SentencePiece run (greedy search)."""
    import export

    return export.export_model(spm_run_dir, tmp_path_factory.mktemp("models-seq2seq") / "t5")


@pytest.fixture(scope="session")
def byt5_export(tmp_path_factory, byt5_run_dir):
    """The `ExportResult` of exporting the ByT5 run (beam search, 2 beams)."""
    import export

    return export.export_model(byt5_run_dir, tmp_path_factory.mktemp("models-byt5") / "byt5")
