"""Seq2SeqTask: tokenisation with prefix and -100 label padding, the loss, a fit that learns the
dictionary task, `evaluate_run` against metrics computed independently."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.seq2seq_fixtures import DICTIONARY
from tfinetune.errors import ModelError
from tfinetune.fit_config import FitConfig
from tfinetune.seq2seq_task import encode
from tfinetune.seq2seq_task import evaluate_generation
from tfinetune.seq2seq_task import load_seq2seq
from tfinetune.seq2seq_task import make_seq2seq_dataset


def config(**options) -> FitConfig:
    return FitConfig(**{"task": "seq2seq", "train": "train.jsonl", "output_dir": "run",
                        **options})


def byte_ids(text: str) -> list[int]:
    return [byte + 3 for byte in text.encode("utf-8")]


def test_encode_prefixes_sources_and_truncates_both_sides_before_eos():
    from transformers import ByT5Tokenizer

    features = encode(ByT5Tokenizer(), ["abcdefgh", "é"], ["wxyz", "ü"],
                      config(source_prefix="p: ", max_length=6, max_target_length=3))
    assert features["input_ids"] == [byte_ids("p: ab") + [1], byte_ids("p: é") + [1]]
    assert features["attention_mask"] == [[1] * 6, [1] * 6]
    assert features["labels"] == [byte_ids("wx") + [1], byte_ids("ü") + [1]]


def test_dataset_pads_inputs_with_pad_and_labels_with_minus_100_per_batch():
    features = {"input_ids": [[5, 6, 1], [7, 1]], "attention_mask": [[1, 1, 1], [1, 1]],
                "labels": [[8, 1], [9, 10, 11, 1]]}
    dataset = make_seq2seq_dataset(features, batch_size=2, pad_token_id=0)
    (batch, labels), = list(dataset)
    np.testing.assert_array_equal(batch["input_ids"], [[5, 6, 1], [7, 1, 0]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(batch["labels"], [[8, 1, -100, -100], [9, 10, 11, 1]])
    np.testing.assert_array_equal(labels, batch["labels"])


def test_validation_loss_is_the_mean_cross_entropy_of_the_real_target_tokens(byt5_model_dir):
    tokenizer, model = load_seq2seq(str(byt5_model_dir), "tiny")
    run_config = config(max_length=16, max_target_length=3, num_beams=1)
    features = encode(tokenizer, ["one two", "red"], ["eins zwei", "rot"], run_config)
    loss, metrics = evaluate_generation(model, tokenizer, features, ["eins zwei", "rot"],
                                        run_config, batch_size=2)
    # By hand: teacher forcing on each example alone (no padding), summed over tokens.
    total, count = 0.0, 0
    for i in range(2):
        labels = np.array([features["labels"][i]])
        decoder_inputs = np.concatenate([[[0]], labels[:, :-1]], axis=1)
        logits = model(input_ids=np.array([features["input_ids"][i]]),
                       decoder_input_ids=decoder_inputs, training=False).logits.numpy()[0]
        logits = logits.astype(np.float64)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        total -= sum(log_probs[t, label] for t, label in enumerate(labels[0]))
        count += labels.shape[1]
    assert loss == pytest.approx(total / count, rel=1e-4)
    assert metrics["count"] == 2 and 0 <= metrics["gen_len"] <= 3


def test_a_model_without_a_seq2seq_head_is_a_model_error(tiny_model_dir):
    with pytest.raises(ModelError, match="sequence-to-sequence model"):
        load_seq2seq(str(tiny_model_dir), "tiny-bert")


@pytest.mark.slow
def test_fit_learns_the_dictionary_task_and_keeps_the_best_bleu_epoch(spm_fit):
    history = spm_fit.history
    bleus = [epoch["val_bleu"] for epoch in history]
    assert bleus[0] < 20
    assert max(bleus) > 80
    assert spm_fit.best_epoch == 1 + int(np.argmax(bleus))
    best = history[spm_fit.best_epoch - 1]
    assert best["val_rouge1"] > 90
    assert history[-1]["loss"] < history[0]["loss"] / 4
    validation = spm_fit.validation_metrics
    assert validation["bleu"] == pytest.approx(best["val_bleu"])
    assert set(validation) == {"loss", "bleu", "rouge1", "rouge2", "rougeL", "gen_len", "count"}
    metrics = json.loads((spm_fit.output_dir / "metrics.json").read_text())
    assert metrics["task"] == "seq2seq" and metrics["labels"] == []
    assert metrics["validation"] == validation
    card = (spm_fit.output_dir / "README.md").read_text()
    assert "`translate: `" in card.replace("'", "") and "greedy search" in card


#: Word combinations that are not in the training data (`translation_rows(96, seed=1)`).
UNSEEN = ["four blue bird house", "four red dog garden", "one blue bird garden",
          "four red bird tree"]


def test_unseen_sources_are_unseen():
    from tests.seq2seq_fixtures import translation_rows

    assert not set(UNSEEN) & {row["source"] for row in translation_rows(96, seed=1)}


@pytest.mark.slow
def test_fitted_model_translates_unseen_combinations(spm_run_dir):
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSeq2SeqLM

    tokenizer = AutoTokenizer.from_pretrained(spm_run_dir)
    model = TFAutoModelForSeq2SeqLM.from_pretrained(spm_run_dir)
    encoded = tokenizer(["translate: " + text for text in UNSEEN], padding=True,
                        return_tensors="tf")
    generated = tokenizer.batch_decode(model.generate(**encoded, max_new_tokens=20),
                                       skip_special_tokens=True)
    expected = [[DICTIONARY[word] for word in text.split()] for text in UNSEEN]
    sentences = sum(g.split() == e for g, e in zip(generated, expected))
    words = sum(a == b for g, e in zip(generated, expected) for a, b in zip(g.split(), e))
    # A random model gets none; the fitted one most (run of this fixture: 14 of 16 words).
    assert sentences >= 2 and words >= 12, (generated, expected)


@pytest.mark.slow
def test_evaluate_run_equals_metrics_of_independently_generated_texts(spm_run_dir,
                                                                      translation_data):
    import sacrebleu
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSeq2SeqLM

    from tfinetune.seq2seq_task import Seq2SeqTask

    run_config = FitConfig.load(spm_run_dir / "fit_config.yaml")
    result = Seq2SeqTask.evaluate_run(spm_run_dir, run_config, translation_data["validation"],
                                      batch_size=5)
    rows = [json.loads(line) for line in translation_data["validation"].read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(spm_run_dir)
    model = TFAutoModelForSeq2SeqLM.from_pretrained(spm_run_dir)
    encoded = tokenizer([run_config.source_prefix + row["source"] for row in rows],
                        padding=True, return_tensors="tf")
    generated = tokenizer.batch_decode(
        model.generate(**encoded, max_new_tokens=run_config.max_target_length),
        skip_special_tokens=True)
    references = [row["target"] for row in rows]
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(generated, [references]).score)
    assert result["count"] == len(rows)
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    # The run's own validation (same file, same weights) agrees.
    saved = json.loads((spm_run_dir / "metrics.json").read_text())["validation"]
    assert result["bleu"] == pytest.approx(saved["bleu"])
    assert result["loss"] == pytest.approx(saved["loss"], rel=1e-4)


@pytest.mark.slow
def test_byt5_run_with_beam_search_reloads_its_byte_tokenizer(byt5_run_dir):
    from transformers import AutoTokenizer

    from tfinetune.fit_config import FitConfig as Config

    assert type(AutoTokenizer.from_pretrained(byt5_run_dir)).__name__ == "ByT5Tokenizer"
    saved = Config.load(byt5_run_dir / "fit_config.yaml")
    assert (saved.task, saved.num_beams, saved.max_target_length) == ("seq2seq", 2, 10)


@pytest.mark.slow
def test_evaluate_command_prints_the_runs_generation_metrics(spm_run_dir, translation_data):
    from click.testing import CliRunner

    from tfinetune.cli.evaluate import command

    result = CliRunner().invoke(command, [str(spm_run_dir), "--data",
                                          str(translation_data["validation"]), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.splitlines()[-1])
    saved = json.loads((spm_run_dir / "metrics.json").read_text())["validation"]
    assert printed["task"] == "seq2seq"
    assert {key: printed[key] for key in saved} == pytest.approx(saved, rel=1e-4)


def test_xla_input_lengths_are_powers_of_two_within_max_length():
    from tfinetune.seq2seq_task import input_length

    assert [input_length(width, 100) for width in (1, 16, 17, 33, 64, 65, 99)] == [
        16, 16, 32, 64, 64, 100, 100]
    assert input_length(5, 8) == 8


@pytest.mark.slow
def test_xla_generation_gives_the_eager_tokens(spm_run_dir, translation_data):
    from tfinetune.seq2seq_examples import Seq2SeqExamples
    from tfinetune.seq2seq_task import generate

    run_config = FitConfig.load(spm_run_dir / "fit_config.yaml")
    tokenizer, model = load_seq2seq(str(spm_run_dir), "run")
    examples = Seq2SeqExamples.read(translation_data["validation"], source_column="source",
                                    target_column="target")
    features = encode(tokenizer, examples.sources, None, run_config)
    eager = generate(model, tokenizer, features, run_config, batch_size=5, use_xla=False)
    compiled = generate(model, tokenizer, features, run_config, batch_size=5, use_xla=True)
    assert compiled == eager
    assert sum(eager[1]) > 0
