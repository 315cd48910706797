"""FitConfig: the options of the tasks other than plain text classification."""

from __future__ import annotations

import pytest

from tfinetune.errors import ConfigError
from tfinetune.fit_config import FitConfig


def _config(**options) -> FitConfig:
    return FitConfig(train="train.csv", output_dir="run", **options)


@pytest.mark.parametrize("task, expected", [
    ("text-classification", 128), ("token-classification", 128),
    ("question-answering", 384), ("seq2seq", 512)])
def test_max_length_defaults_per_task(task, expected):
    assert _config(task=task).max_length == expected
    assert _config(task=task, max_length=64 if task != "question-answering" else 256
                   ).max_length in (64, 256)


def test_unknown_task_names_the_choices():
    with pytest.raises(ConfigError, match=r"Expected one of \['text-classification', "
                                          r"'token-classification', 'question-answering', "
                                          r"'seq2seq'\]\. Received: task='ner'"):
        _config(task="ner")


@pytest.mark.parametrize("value, expected", [
    ("256,128", (256, 128)), ("64", (64,)), ([32, 16], (32, 16)), ((), ()), ("", ()),
    (8, (8,)), ([16.0], (16,))])
def test_head_hidden_sizes_are_parsed(value, expected):
    assert _config(head_hidden_sizes=value).head_hidden_sizes == expected


@pytest.mark.parametrize("value", ["256,abc", "0", [-4], [1.5], [True], {"a": 1}])
def test_bad_head_hidden_sizes_are_refused(value):
    with pytest.raises(ConfigError, match=r"'head_hidden_sizes' must be a list of positive "
                                          r"integers \(e\.g\. 256,128\)\. Received"):
        _config(head_hidden_sizes=value)


@pytest.mark.parametrize("name, value", [
    ("head_hidden_sizes", "32"), ("problem_type", "multi-label"), ("freeze_backbone", True),
    ("freeze_layers", 2), ("classifier_dropout", 0.2)])
@pytest.mark.parametrize("task", ["token-classification", "question-answering", "seq2seq"])
def test_classification_options_are_refused_for_other_tasks(task, name, value):
    if task == "token-classification" and name not in ("head_hidden_sizes", "problem_type"):
        assert getattr(_config(task=task, **{name: value}), name) == value
        return
    with pytest.raises(ConfigError, match=rf"Option '{name}' applies to text classification "
                                          rf"only\. Received: {name}=.* with task='{task}'"):
        _config(task=task, **{name: value})


def test_head_hidden_sizes_round_trip_through_yaml(tmp_path):
    config = _config(head_hidden_sizes="32,16")
    config.save(tmp_path / "fit_config.yaml")
    assert FitConfig.load(tmp_path / "fit_config.yaml") == config
    assert "- 32" in (tmp_path / "fit_config.yaml").read_text()


def test_doc_stride_must_be_below_max_length_for_question_answering():
    with pytest.raises(ConfigError, match=r"doc_stride=128, max_length=128"):
        _config(task="question-answering", max_length=128)
    assert _config(task="question-answering", max_length=256).doc_stride == 128


@pytest.mark.parametrize("name, value", [
    ("num_beams", 0), ("max_target_length", 0), ("doc_stride", 0), ("max_answer_length", 0)])
def test_task_numbers_are_checked(name, value):
    with pytest.raises(ConfigError, match=rf"'{name}' must be >= 1\. Received: {name}={value}"):
        _config(**{name: value})


def test_empty_task_column_is_refused():
    with pytest.raises(ConfigError, match=r"'source_column' must be a non-empty string"):
        _config(task="seq2seq", source_column=" ")


def test_classification_column_clash_is_not_checked_for_other_tasks():
    # The text/label columns mean nothing to a seq2seq run.
    assert _config(task="seq2seq", text_column="x", label_column="x").task == "seq2seq"
    with pytest.raises(ConfigError, match="must be different columns"):
        _config(text_column="x", label_column="x")


def test_hugging_face_names_of_task_options(tmp_path):
    path = tmp_path / "args.yaml"
    path.write_text("task: seq2seq\nmax_source_length: 256\nsummary_column: highlights\n"
                    "train_file: t.csv\noutput_dir: run\n")
    config = FitConfig.from_options({}, path)
    assert (config.max_length, config.target_column) == (256, "highlights")
