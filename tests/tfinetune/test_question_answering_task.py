"""`fit --task question-answering`: windows and their labels, span decoding, learning the tiny
synthetic set, `evaluate_run` and `tfinetune evaluate`."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

import tfinetune
from tests.question_answering_fixtures import QA_DOC_STRIDE
from tests.question_answering_fixtures import QA_MAX_LENGTH
from tests.question_answering_fixtures import qa_context
from tests.question_answering_fixtures import qa_rows
from tests.question_answering_fixtures import write_jsonl
from tests.question_answering_fixtures import write_squad_json
from tfinetune.errors import DataError
from tfinetune.span_decoder import SpanDecoder

CONTEXT = "the river is long . the city of paris is in france ."


@pytest.fixture(scope="module")
def tokenizer(qa_base_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qa_base_model_dir)


def _features(tokenizer, answer: str, **options):
    from tfinetune.question_answering_features import QuestionAnsweringFeatures

    return QuestionAnsweringFeatures.build(
        tokenizer, ["where is paris ?"], [CONTEXT],
        answers=[([answer], [CONTEXT.index(answer)])], **{"max_length": 16, "doc_stride": 4,
                                                           **options})


def test_windows_and_answer_tokens_by_hand(tokenizer):
    # [CLS] where is paris ? [SEP] = 6 tokens before the context, [SEP] after: 9 context tokens
    # a window. The context has 13 tokens; windows start 9 - 4 = 5 tokens apart: tokens 0-8
    # and 5-12. "france" is context token 11: outside window 0 ([CLS] = 0), at 6 + 11 - 5 = 12
    # in window 1.
    features = _features(tokenizer, "france")
    assert features.example_ids == [0, 0]
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in features.inputs["input_ids"]]
    assert tokens[0][6:15] == ["the", "river", "is", "long", ".", "the", "city", "of", "paris"]
    assert tokens[1][6:14] == ["the", "city", "of", "paris", "is", "in", "france", "."]
    assert features.start_positions == [0, 12]
    assert features.end_positions == [0, 12]
    assert features.offsets[1][12] == (CONTEXT.index("france"), CONTEXT.index("france") + 6)
    assert features.offsets[1][:6] == [None] * 6

    # "paris is in france" (context tokens 8-11) is only whole in window 1: positions 9-12.
    features = _features(tokenizer, "paris is in france")
    assert (features.start_positions, features.end_positions) == ([0, 9], [0, 12])
    # One window when the context fits.
    features = _features(tokenizer, "france", max_length=32)
    assert (features.example_ids, features.start_positions) == ([0], [17])


def test_a_question_without_room_for_the_context_is_an_error(tokenizer):
    from tfinetune.question_answering_features import QuestionAnsweringFeatures

    with pytest.raises(DataError, match=r"too long for max_length 16 with doc_stride 4\. Expected "
                                        r"a question of at most 8 tokens\. Received: 10 tokens "
                                        r"at train\.jsonl:3"):
        QuestionAnsweringFeatures.build(tokenizer, ["where is the city of paris is in it ?"],
                                        [CONTEXT], max_length=16, doc_stride=4,
                                        locations=["train.jsonl:3"])


def _window(start, end):
    offsets = [None, None, None, (0, 2), (3, 5), (6, 8), None]
    return offsets, np.array(start, np.float32), np.array(end, np.float32)


def test_span_decoder_by_hand():
    context = "ab cd ef"
    offsets, start, end = _window([1, 0, 0, 2, 0.5, 0, 0], [1, 0, 0, 0, 3, 0, 0])

    (answer,) = SpanDecoder(30).decode([context], [0], [offsets], [start], [end])
    # Best start + end: "ab" (2) + "cd" (3) = 5.
    assert (answer.text, answer.start, answer.end) == ("ab cd", 0, 5)
    log_softmax_start = 2 - np.log(np.exp(start).sum())
    log_softmax_end = 3 - np.log(np.exp(end).sum())
    assert answer.score == pytest.approx(np.exp(log_softmax_start + log_softmax_end), rel=1e-5)

    # One token at most: "ab"-"ab" 2 + 0, "cd"-"cd" 0.5 + 3 = 3.5 wins.
    (answer,) = SpanDecoder(1).decode([context], [0], [offsets], [start], [end])
    assert (answer.text, answer.start, answer.end) == ("cd", 3, 5)

    # A second window of the same context with a better span ("ef": 4 + 4 = 8) wins; the
    # end never precedes the start (end logit of "ab" is 9, but "ab" is before "ef").
    offsets2, start2, end2 = _window([0, 0, 0, 0, 0, 4, 0], [0, 0, 0, 9, 0, 4, 0])
    (answer,) = SpanDecoder(30).decode([context], [0, 0], [offsets, offsets2],
                                       [start, start2], [end, end2])
    assert answer.text == "ab" and answer.start == 0  # start "ab" (0) + end "ab" (9) = 9 > 8
    start2[3] = -20.0  # now "ef"-"ef" (8) beats "ab"-"ab" (-20 + 9) and window 1's 5
    (answer,) = SpanDecoder(30).decode([context], [0, 0], [offsets, offsets2],
                                       [start, start2], [end, end2])
    assert (answer.text, answer.start, answer.end) == ("ef", 6, 8)


def test_span_decoder_no_answer_rule():
    context = "ab cd ef"
    offsets, start, end = _window([3, 0, 0, 2, 0.5, 0, 0], [3, 0, 0, 0, 3, 0, 0])
    # [CLS] score 3 + 3 = 6 > best span 5: no answer with version 2 only.
    v1 = SpanDecoder(30).decode([context], [0], [offsets], [start], [end])
    v2 = SpanDecoder(30, version_2_with_negative=True).decode([context], [0], [offsets],
                                                              [start], [end])
    assert v1[0].text == "ab cd"
    assert (v2[0].text, v2[0].start, v2[0].end) == ("", 0, 0)
    probability = np.exp(3 - np.log(np.exp(start).sum()) + 3 - np.log(np.exp(end).sum()))
    assert v2[0].score == pytest.approx(probability, rel=1e-5)
    # The smallest [CLS] score over the windows counts: a window with [CLS] 1 + 1 = 2 < 5.
    offsets2, start2, end2 = _window([1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0])
    v2 = SpanDecoder(30, version_2_with_negative=True).decode(
        [context], [0, 0], [offsets, offsets2], [start, start2], [end, end2])
    assert v2[0].text == "ab cd"
    # A window without context tokens has no span at all.
    (empty,) = SpanDecoder(30).decode([""], [0], [[None, None, None]],
                                      [np.zeros(3, np.float32)], [np.zeros(3, np.float32)])
    assert (empty.text, empty.start, empty.end) == ("", 0, 0)


def test_fit_learns_the_synthetic_set(qa_fit_result):
    result = qa_fit_result
    run = result.output_dir
    assert result.labels == []
    assert result.history[-1]["loss"] < result.history[0]["loss"] / 10
    assert result.validation_metrics["exact_match"] == 100.0
    assert result.validation_metrics["f1"] == 100.0
    assert result.validation_metrics["total"] == 40
    assert result.best_epoch == max(range(1, len(result.history) + 1),
                                    key=lambda e: (result.history[e - 1]["val_f1"], -e))
    assert {"val_exact_match", "val_f1", "val_loss"} <= set(result.history[0])
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["task"] == "question-answering"
    assert metrics["labels"] == [] and metrics["train_rows"] == 160
    assert not (run / "labels.json").exists()
    assert (run / "config.json").is_file() and (run / "tokenizer.json").is_file()
    card = (run / "README.md").read_text(encoding="utf-8")
    assert "Windows of 48 tokens over long contexts, overlapping by 16" in card


def test_an_epoch_counts_windows_not_questions(qa_base_model_dir, qa_data, tmp_path):
    from transformers import AutoTokenizer

    from tfinetune.question_answering_task import QuestionAnsweringTask

    task = QuestionAnsweringTask(tfinetune.FitConfig(
        task="question-answering", model=str(qa_base_model_dir), train=str(qa_data["train"]),
        output_dir=str(tmp_path / "run"), max_length=24, doc_stride=8, batch_size=16))
    task.read_data()
    tokenizer = AutoTokenizer.from_pretrained(qa_base_model_dir)
    dataset, steps = task.train_dataset(tokenizer)
    # The training dataset runs epoch after epoch: one epoch is `steps` batches.
    windows = sum(int(features["input_ids"].shape[0]) for features, _ in dataset.take(steps))
    assert windows > task.train_rows == 160
    assert steps == math.ceil(windows / 16)
    features, labels = next(iter(dataset))
    assert set(labels) == {"start_positions", "end_positions"}
    assert features["input_ids"].shape[1] <= 24


def _evaluation_rows() -> list[dict]:
    rng = random.Random(5)
    rows = []
    for city, country, gold in [("paris", "france", "france"), ("rome", "italy", "Italy"),
                                ("oslo", "norway", "in norway"), ("madrid", "austria", "spain")]:
        context, start = qa_context(city, country, rng, 2)
        if gold == "in norway":
            start -= 3
        elif gold == "spain":
            context += " spain ."
            start = len(context) - len("spain .")
        else:
            gold = context[start:start + len(gold)]
        rows.append({"question": f"where is {city} ?", "context": context,
                     "answers": {"text": [gold], "answer_start": [start]}})
    return rows


def test_evaluate_run_matches_hand_computed_metrics(qa_run_dir, tmp_path):
    from tfinetune.question_answering_task import QuestionAnsweringTask

    data = write_jsonl(tmp_path / "eval.jsonl", _evaluation_rows())
    config = tfinetune.FitConfig.load(qa_run_dir / "fit_config.yaml")
    metrics = QuestionAnsweringTask.evaluate_run(qa_run_dir, config, data)
    # Predictions france, italy, norway, austria against gold france, Italy, "in norway",
    # spain: EM 1, 1, 0, 0 = 50; F1 1, 1, 2/3 (p 1, r 1/2), 0 -> 66.67.
    assert metrics["exact_match"] == pytest.approx(50.0)
    assert metrics["f1"] == pytest.approx(100 * (2 + 2 / 3) / 4)
    assert metrics["total"] == 4
    assert metrics["loss"] > 0


def test_evaluate_command_prints_the_metrics(qa_run_dir, tmp_path):
    from click.testing import CliRunner

    from tfinetune.cli.evaluate import command

    data = write_squad_json(tmp_path / "eval.json", qa_rows(6, seed=9))
    result = CliRunner().invoke(command, [str(qa_run_dir), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)
    assert values["task"] == "question-answering"
    assert values["exact_match"] == 100.0 and values["f1"] == 100.0


def test_version_2_fit_learns_to_say_no_answer(qa_base_model_dir, tmp_path):
    """A second (~20 s) fit, with a third of the questions unanswerable."""
    from tests.question_answering_fixtures import QA_FILLERS
    from tests.question_answering_fixtures import fit_qa_run

    def rows(n, seed):
        rng = random.Random(seed)
        answerable = qa_rows(n, seed, max_fillers=2)
        for row in answerable[::3]:  # a third: the fact is not in the context
            row["context"] = " ".join(rng.choice(QA_FILLERS) for _ in range(3))
            row["answers"] = {"text": [], "answer_start": []}
        return answerable

    data = {"train": write_jsonl(tmp_path / "train.jsonl", rows(150, 3)),
            "validation": write_jsonl(tmp_path / "validation.jsonl", rows(30, 4))}
    result = fit_qa_run(tmp_path / "run", qa_base_model_dir, data, epochs=15,
                        version_2_with_negative=True)
    metrics = result.validation_metrics
    assert metrics["no_answer_total"] == 10 and metrics["has_answer_total"] == 20
    assert metrics["no_answer_exact_match"] >= 90.0
    assert metrics["has_answer_exact_match"] >= 90.0


def test_unanswerable_rows_are_refused_without_version_2(qa_base_model_dir, tmp_path):
    rows = qa_rows(2, seed=1)
    rows[1]["answers"] = {"text": [], "answer_start": []}
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=rf"Received: no answers at {train}:2"):
        tfinetune.fit(tfinetune.FitConfig(
            task="question-answering", model=str(qa_base_model_dir), train=str(train),
            output_dir=str(tmp_path / "run"), max_length=QA_MAX_LENGTH,
            doc_stride=QA_DOC_STRIDE))
    assert not (tmp_path / "run").exists()


def test_fit_command_trains_a_question_answering_run(qa_base_model_dir, tmp_path):
    from click.testing import CliRunner

    from tfinetune.cli.main import cli

    train = write_squad_json(tmp_path / "train.json", qa_rows(32, seed=21))
    validation = write_jsonl(tmp_path / "validation.jsonl", qa_rows(8, seed=22))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "fit", "--task", "question-answering", "--model", str(qa_base_model_dir),
        "--train", str(train), "--validation", str(validation), "--output-dir", str(run),
        "--max-length", "40", "--doc-stride", "12", "--max-answer-length", "4",
        "--epochs", "1", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    config = tfinetune.FitConfig.load(run / "fit_config.yaml")
    assert (config.task, config.max_length, config.doc_stride, config.max_answer_length) == (
        "question-answering", 40, 12, 4)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["train_rows"] == 32 and metrics["validation_rows"] == 8
    assert set(metrics["validation"]) >= {"loss", "exact_match", "f1", "total"}
