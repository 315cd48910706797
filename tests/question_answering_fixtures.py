"""Session fixtures of the question_answering task (tiny models and data, built offline).

The synthetic task: every context states "the city of <city> is in <country> ." somewhere among
filler sentences, and the question "where is <city> ?" is answered by the country. Cities and
countries are paired at random, so the model must read the context; a tiny BERT learns "the
word after `is in`" within a few epochs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import tfinetune  # noqa: F401  (sets USE_TORCH=0 / TF_USE_LEGACY_KERAS before TF imports)

QA_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
QA_CITIES = ["paris", "rome", "berlin", "madrid", "lisbon", "oslo", "vienna", "dublin"]
QA_COUNTRIES = ["france", "italy", "germany", "spain", "portugal", "norway", "austria",
                "ireland"]
QA_FILLERS = [
    "the river is long .",
    "a bridge is old .",
    "the park has a green tree .",
    "there is a big market and a small square .",
    "the town has old houses .",
    "a long road goes north .",
    "the market is in the square .",
    "a green tree is in the park .",
]
QA_VOCAB = QA_SPECIAL_TOKENS + QA_CITIES + QA_COUNTRIES + [
    "the", "city", "of", "is", "in", "where", "?", ".", ",", "river", "long", "a", "bridge",
    "old", "park", "has", "green", "tree", "there", "big", "market", "and", "small", "square",
    "town", "houses", "road", "goes", "north", "zurich", "cafe", "sao", "paulo", "brasil",
    "北", "京", "##s", "##ian", "##er",
]
#: `max_length` / `doc_stride` of the tiny QA runs: short, so long contexts need windows.
QA_MAX_LENGTH = 48
QA_DOC_STRIDE = 16


def qa_context(city: str, country: str, rng: random.Random, fillers: int,
               distractor: bool = False) -> tuple[str, int]:
    """A context with the fact among `fillers` filler sentences (and, with `distractor`, a
    fact about another city), and the country's offset."""
    sentences = [rng.choice(QA_FILLERS) for _ in range(fillers)]
    if distractor:
        other = rng.choice([name for name in QA_CITIES if name != city])
        sentences.insert(rng.randint(0, fillers),
                         f"the city of {other} is in {rng.choice(QA_COUNTRIES)} .")
        fillers += 1
    position = rng.randint(0, fillers)
    before = " ".join(sentences[:position])
    fact = f"the city of {city} is in {country} ."
    context = " ".join(part for part in (before, fact, " ".join(sentences[position:])) if part)
    start = (len(before) + 1 if before else 0) + fact.index(f" in {country}") + 4
    assert context[start:start + len(country)] == country
    return context, start


def qa_rows(n: int, seed: int, *, max_fillers: int = 5) -> list[dict]:
    """SQuAD-style rows `{"id", "question", "context", "answers"}` (HF datasets layout); half
    of the contexts also state where another city is."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        city, country = rng.choice(QA_CITIES), rng.choice(QA_COUNTRIES)
        context, start = qa_context(city, country, rng, rng.randint(0, max_fillers),
                                    distractor=False)
        rows.append({"id": f"q{seed}-{i}", "question": f"where is {city} ?", "context": context,
                     "answers": {"text": [country], "answer_start": [start]}})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def write_squad_json(path: Path, rows: list[dict]) -> Path:
    """The rows as SQuAD JSON: one paragraph per row."""
    paragraphs = [{"context": row["context"], "qas": [{
        "id": row["id"], "question": row["question"],
        "answers": [{"text": text, "answer_start": start} for text, start in
                    zip(row["answers"]["text"], row["answers"]["answer_start"])],
        **({"is_impossible": True} if not row["answers"]["text"] else {})}]}
        for row in rows]
    path.write_text(json.dumps({"version": "v2.0", "data": [
        {"title": "synthetic", "paragraphs": paragraphs}]}), encoding="utf-8")
    return path


def build_tiny_qa_base_model(directory: Path) -> Path:
    """A tiny pretrained-style BERT (no head) with the QA vocabulary and a fast tokenizer."""
    from transformers import BertConfig
    from transformers import BertTokenizerFast
    from transformers import TFBertModel

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(QA_VOCAB) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True).save_pretrained(directory)
    config = BertConfig(vocab_size=len(QA_VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def qa_base_model_dir(tmp_path_factory) -> Path:
    return build_tiny_qa_base_model(tmp_path_factory.mktemp("tiny-qa-bert"))


@pytest.fixture(scope="session")
def qa_data(tmp_path_factory) -> dict:
    """`{"train": Path, "validation": Path}`: JSONL training rows, SQuAD JSON validation."""
    directory = tmp_path_factory.mktemp("qa-data")
    return {"train": write_jsonl(directory / "train.jsonl", qa_rows(160, seed=1)),
            "validation": write_squad_json(directory / "validation.json",
                                           qa_rows(40, seed=2, max_fillers=10))}


def fit_qa_run(output_dir: Path, model_dir: Path, data: dict, **options):
    """A real `tfinetune.fit` of the tiny QA model (options override the defaults)."""
    return tfinetune.fit(tfinetune.FitConfig(
        task="question-answering", model=str(model_dir), train=str(data["train"]),
        validation=str(data["validation"]), output_dir=str(output_dir),
        **{"epochs": 12, "batch_size": 16, "learning_rate": 2e-3, "max_length": QA_MAX_LENGTH,
           "doc_stride": QA_DOC_STRIDE, "max_answer_length": 5, "seed": 0,
           **options}))


@pytest.fixture(scope="session")
def qa_fit_result(tmp_path_factory, qa_base_model_dir, qa_data):
    """The `FitResult` of the tiny QA run (its `output_dir` is the run directory)."""
    return fit_qa_run(tmp_path_factory.mktemp("qa-runs") / "qa", qa_base_model_dir, qa_data)


@pytest.fixture(scope="session")
def qa_run_dir(qa_fit_result) -> Path:
    return qa_fit_result.output_dir


@pytest.fixture(scope="session")
def qa_export(tmp_path_factory, qa_run_dir):
    """The tiny QA run exported (`export.export_model`) into a fresh base path."""
    import export

    return export.export_model(qa_run_dir, tmp_path_factory.mktemp("qa-models"))


@pytest.fixture(scope="session")
def qa_reference(qa_run_dir):
    """`(model, tokenizer)`: the QA run's in-memory Hugging Face model and fast tokenizer."""
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForQuestionAnswering

    return (TFAutoModelForQuestionAnswering.from_pretrained(qa_run_dir),
            AutoTokenizer.from_pretrained(qa_run_dir))


def reference_answers(model, tokenizer, questions, contexts, *, max_length=QA_MAX_LENGTH,
                      doc_stride=QA_DOC_STRIDE, max_answer_length=5,
                      version_2_with_negative=False):
    """The answers tfinetune's own windows + `SpanDecoder` give with the in-memory model."""
    from tfinetune.question_answering_features import QuestionAnsweringFeatures
    from tfinetune.span_decoder import SpanDecoder

    features = QuestionAnsweringFeatures.build(tokenizer, questions, contexts,
                                               max_length=max_length, doc_stride=doc_stride)
    starts, ends = features.logits(model, batch_size=8)
    decoder = SpanDecoder(max_answer_length, version_2_with_negative=version_2_with_negative)
    return decoder.decode(contexts, features.example_ids, features.offsets, starts, ends)


def long_context(city: str, country: str, fillers: int = 12) -> tuple[str, int]:
    """A context of many filler sentences with the fact at the end (several windows long)."""
    context = " ".join(QA_FILLERS[i % 5] for i in range(fillers))
    context += f" the city of {city} is in {country} . the river is long ."
    return context, context.index(f" in {country}") + 4


@pytest.fixture(scope="session")
def qa_portable_export(tmp_path_factory, qa_run_dir):
    """The tiny QA run exported with `portable=True` (token id windows in, logits out)."""
    import export

    return export.export_model(qa_run_dir, tmp_path_factory.mktemp("qa-portable-models"),
                               portable=True)


@pytest.fixture(scope="session")
def qa_v2_exports(tmp_path_factory, qa_run_dir) -> dict:
    """A copy of the tiny QA run marked `version_2_with_negative` (same weights: contexts
    without the fact get "no answer"), exported twice: `{"text": ..., "portable": ...}`
    (`ExportResult`s)."""
    import shutil

    import yaml

    import export

    run = shutil.copytree(qa_run_dir, tmp_path_factory.mktemp("qa-v2-run") / "run")
    config_file = run / "fit_config.yaml"
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    config["version_2_with_negative"] = True
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    return {"text": export.export_model(run, tmp_path_factory.mktemp("qa-v2-text")),
            "portable": export.export_model(run, tmp_path_factory.mktemp("qa-v2-portable"),
                                            portable=True)}
