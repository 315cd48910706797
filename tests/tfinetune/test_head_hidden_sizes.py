"""`head_hidden_sizes`: extra dense layers before the output, trained by fit, saved, reloaded.

The model is `export.dense_head.DenseHeadClassifier`; these tests fit it through
`tfinetune.fit` and check what the run directory holds and what evaluate computes from it.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

import tfinetune
from tests.conftest import VOCAB
from tests.conftest import multi_label_rows
from tests.conftest import regression_rows
from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tests.dense_head_fixtures import HEAD_SIZES
from tests.dense_head_fixtures import fitted_head_run
from tests.dense_head_fixtures import sensitive_base_dir
from tests.dense_head_fixtures import values_by_name
from tfinetune.errors import ModelError

HEAD_PREFIXES = ("head_hidden_", "head_output/")


@pytest.fixture(scope="module")
def head_run(tmp_path_factory, tiny_model_dir, sentiment_data):
    base = sensitive_base_dir(tmp_path_factory, tiny_model_dir, "bert")
    return fitted_head_run(tmp_path_factory, base, sentiment_data["train"],
                           name="single", validation=str(sentiment_data["validation"]))


def rows_of(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def logits_of(model, run_dir, texts) -> np.ndarray:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="tf")
    return model(dict(encoded), training=False).logits.numpy()


def is_head(name: str) -> bool:
    return name.startswith(HEAD_PREFIXES)


def test_config_json_records_the_head(head_run):
    config = json.loads((head_run.run_dir / "config.json").read_text(encoding="utf-8"))

    assert config["tfinetune_head"] == "dense"
    assert config["head_hidden_sizes"] == list(HEAD_SIZES)
    assert config["architectures"] == ["DenseHeadClassifier"]
    assert config["model_type"] == "bert"
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_head_layers_have_the_requested_shapes_and_were_trained(head_run):
    from export.dense_head import DenseHeadClassifier
    from export.dense_head import load_classifier

    model = load_classifier(head_run.run_dir)
    saved = values_by_name(model)

    assert isinstance(model, DenseHeadClassifier)
    assert saved["head_hidden_0/kernel:0"].shape == (32, 16)
    assert saved["head_hidden_1/kernel:0"].shape == (16, 8)
    assert saved["head_output/kernel:0"].shape == (8, 2)
    assert sorted(saved) == sorted(head_run.initial)
    for name in ("head_hidden_0/kernel:0", "head_hidden_1/kernel:0", "head_output/kernel:0",
                 "bert/encoder/layer_._1/output/dense/kernel:0"):
        assert not np.allclose(saved[name], head_run.initial[name], atol=1e-4), name


def test_reloaded_model_gives_the_in_memory_logits(head_run, sentiment_data):
    from export.dense_head import load_classifier

    texts = [row["text"] for row in rows_of(sentiment_data["validation"])]
    in_memory = logits_of(head_run.model, head_run.run_dir, texts)
    reloaded = logits_of(load_classifier(head_run.run_dir), head_run.run_dir, texts)

    # The logits depend on the text, so equal logits mean equal weights (and the same head).
    assert np.ptp(in_memory[:, 1] - in_memory[:, 0]) > 0.1
    np.testing.assert_allclose(reloaded, in_memory, rtol=0, atol=1e-6)


def test_a_plain_classifier_reload_does_not_take_the_head_as_its_own(head_run):
    from transformers import TFAutoModelForSequenceClassification

    _, info = TFAutoModelForSequenceClassification.from_pretrained(
        head_run.run_dir, output_loading_info=True)

    assert {"head_hidden_0", "head_hidden_1", "head_output"} <= set(info["unexpected_keys"])
    assert "classifier" in info["missing_keys"]


def test_evaluate_command_matches_the_in_memory_model(head_run, sentiment_data):
    from tfinetune.cli.main import cli

    rows = rows_of(sentiment_data["validation"])
    result = CliRunner().invoke(cli, ["evaluate", str(head_run.run_dir), "--data",
                                      str(sentiment_data["validation"]), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])

    logits = logits_of(head_run.model, head_run.run_dir, [row["text"] for row in rows])
    truth = np.array([["negative", "positive"].index(row["label"]) for row in rows])
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert metrics["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == truth))
    assert metrics["loss"] == pytest.approx(
        -log_probabilities[np.arange(len(rows)), truth].mean(), abs=1e-5)


def test_freeze_backbone_trains_only_the_head_and_keeps_the_dropout(
        tmp_path_factory, tiny_model_dir, sentiment_data):
    from export.dense_head import load_classifier

    run = fitted_head_run(tmp_path_factory, tiny_model_dir, sentiment_data["train"],
                          name="frozen", epochs=1, freeze_backbone=True,
                          classifier_dropout=0.3)
    model = load_classifier(run.run_dir)
    saved = values_by_name(model)

    assert run.trainable and all(is_head(name) for name in run.trainable)
    assert sorted(run.trainable) == sorted(name for name in saved if is_head(name))
    for name, value in saved.items():
        if is_head(name):
            assert not np.array_equal(value, run.initial[name]), name
        else:
            np.testing.assert_array_equal(value, run.initial[name], err_msg=name)
    assert model.config.classifier_dropout == 0.3
    assert model.dropout.rate == 0.3


def test_freeze_layers_keeps_the_first_blocks_and_trains_the_rest(
        tmp_path_factory, tiny_model_dir, sentiment_data):
    from export.dense_head import load_classifier

    run = fitted_head_run(tmp_path_factory, tiny_model_dir, sentiment_data["train"],
                          name="freeze-1", epochs=1, freeze_layers=1)
    saved = values_by_name(load_classifier(run.run_dir))

    for name, value in saved.items():
        if name.startswith(("bert/embeddings/", "bert/encoder/layer_._0/")):
            np.testing.assert_array_equal(value, run.initial[name], err_msg=name)
    for name in ("bert/encoder/layer_._1/output/dense/kernel:0", "head_hidden_0/kernel:0"):
        assert not np.array_equal(saved[name], run.initial[name]), name


def _bert_head_model(num_labels: int):
    from transformers import BertConfig

    from export.dense_head import DenseHeadClassifier

    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=num_labels,
                        head_hidden_sizes=[8, 4], initializer_range=0.5)
    model = DenseHeadClassifier(config)
    model.build_in_name_scope()
    return model


INPUTS = {"input_ids": np.array([[2, 5, 9, 3, 0], [2, 12, 3, 0, 0], [2, 7, 30, 31, 3]]),
          "attention_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}


def test_single_label_loss_is_cross_entropy_of_the_logits():
    model = _bert_head_model(3)
    labels = np.array([2, 0, 1])

    output = model(**INPUTS, labels=labels, training=False)

    logits = output.logits.numpy().astype(np.float64)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(output.loss.numpy(), -log_probabilities[[0, 1, 2], labels],
                               rtol=1e-5)


def test_regression_loss_is_squared_error_of_the_single_output():
    model = _bert_head_model(1)
    import tensorflow as tf

    targets = np.array([1.5, -2.0, 0.25], dtype=np.float32)

    output = model(**INPUTS, labels=tf.constant(targets), training=False)

    assert output.logits.shape == (3, 1)
    np.testing.assert_allclose(output.loss.numpy().ravel(),
                               (output.logits.numpy()[:, 0] - targets) ** 2, rtol=1e-5)


def test_multi_label_loss_uses_the_problem_types_override():
    from tfinetune.problem_type import ProblemType

    model = _bert_head_model(2)
    model.hf_compute_loss = ProblemType("multi-label").training_loss()
    truth = np.array([[1, 0], [1, 1], [0, 0]])

    output = model(**INPUTS, labels=truth, training=False)

    logits = output.logits.numpy().astype(np.float64)
    expected = (np.maximum(logits, 0) - logits * truth + np.log1p(np.exp(-np.abs(logits))))
    np.testing.assert_allclose(output.loss.numpy(), expected.mean(axis=1), rtol=1e-5)


@pytest.mark.parametrize("problem_type, rows, options", [
    ("multi-label", multi_label_rows(48, seed=3), {"label_delimiter": "|"}),
    ("regression", regression_rows(48, seed=4), {"label_column": "score"}),
])
def test_multi_label_and_regression_runs_reload_exactly(
        tmp_path_factory, tiny_model_dir, problem_type, rows, options):
    from export.dense_head import load_classifier

    train = write_csv(tmp_path_factory.mktemp(problem_type) / "train.csv", rows)
    run = fitted_head_run(tmp_path_factory, tiny_model_dir, train, name=problem_type, epochs=1,
                          problem_type=problem_type, **options)
    texts = [row["text"] for row in rows[:12]]

    reloaded = load_classifier(run.run_dir)

    assert reloaded.config.problem_type == run.model.config.problem_type
    assert reloaded.output_layer.units == (1 if problem_type == "regression" else 2)
    np.testing.assert_allclose(logits_of(reloaded, run.run_dir, texts),
                               logits_of(run.model, run.run_dir, texts), rtol=0, atol=1e-6)


def test_distilbert_head_reads_the_first_token_and_reloads_exactly(
        tmp_path_factory, tiny_model_dir, sentiment_data):
    from export.dense_head import load_classifier

    base = sensitive_base_dir(tmp_path_factory, tiny_model_dir, "distilbert")
    run = fitted_head_run(tmp_path_factory, base, sentiment_data["train"], name="distilbert",
                          epochs=1)
    texts = [row["text"] for row in synthetic_sentiment_rows(10, seed=8)]

    reloaded = load_classifier(run.run_dir)
    in_memory = logits_of(run.model, run.run_dir, texts)

    assert json.loads((run.run_dir / "config.json").read_text())["model_type"] == "distilbert"
    assert reloaded.base_model_prefix == "distilbert" and not reloaded._pooled
    assert reloaded.dropout.rate == reloaded.config.seq_classif_dropout
    assert np.ptp(in_memory[:, 0]) > 0.1
    np.testing.assert_allclose(logits_of(reloaded, run.run_dir, texts), in_memory,
                               rtol=0, atol=1e-6)


def test_an_unsupported_architecture_is_a_model_error(tmp_path, tiny_model_dir):
    from transformers import GPT2Config

    model_dir = tmp_path / "gpt2"
    model_dir.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                 "tokenizer.json"):
        if (tiny_model_dir / name).is_file():
            (model_dir / name).write_bytes((tiny_model_dir / name).read_bytes())
    GPT2Config(vocab_size=len(VOCAB), n_embd=32, n_layer=1, n_head=2).save_pretrained(model_dir)
    train = write_csv(tmp_path / "train.csv", synthetic_sentiment_rows(8, seed=1))

    with pytest.raises(ModelError, match=r"--head-hidden-sizes does not support model type "
                                         r"'gpt2'.*Received: model_type='gpt2'"):
        tfinetune.fit(tfinetune.FitConfig(model=str(model_dir), train=str(train),
                                          output_dir=str(tmp_path / "run"),
                                          head_hidden_sizes=(8,)))
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.slow  # ~45 s: a crashed fit and its resumption
def test_a_crashed_head_run_resumes_with_the_backed_up_head_weights(tmp_path, tiny_model_dir,
                                                                   sentiment_data):
    import tf_keras

    snapshots = {}

    class Watch(tf_keras.callbacks.Callback):
        """Records the head's output kernel before `batch`, then optionally crashes there."""

        def __init__(self, key, batch, crash):
            super().__init__()
            self.key, self.batch, self.crash, self.done = key, batch, crash, False

        def on_train_batch_begin(self, batch, logs=None):
            if not self.done and (self.batch is None or batch == self.batch):
                self.done = True
                snapshots[self.key] = (batch, self.model.output_layer.kernel.numpy())
                if self.crash:
                    raise RuntimeError("simulated crash")

    config = tfinetune.FitConfig(
        model=str(tiny_model_dir), train=str(sentiment_data["train"]),
        output_dir=str(tmp_path / "run"), epochs=1, batch_size=16, learning_rate=3e-3,
        max_length=32, save_steps=4, head_hidden_sizes=HEAD_SIZES)
    # 10 steps per epoch, a backup after step 4: the crash before batch 5 loses one step.
    with pytest.raises(RuntimeError, match="simulated crash"):
        tfinetune.fit(config, callbacks=[Watch("backed_up", 4, crash=False),
                                         Watch("crash", 5, crash=True)])

    result = tfinetune.fit(config, callbacks=[Watch("resumed", None, crash=False)])

    assert result.resumed
    assert snapshots["resumed"][0] == 4
    np.testing.assert_array_equal(snapshots["resumed"][1], snapshots["backed_up"][1])
    assert not np.array_equal(snapshots["crash"][1], snapshots["backed_up"][1])
    config_json = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert config_json["head_hidden_sizes"] == list(HEAD_SIZES)


def test_a_plain_classifier_fine_tuned_from_a_head_run_reloads_as_a_plain_classifier(
        tmp_path_factory, head_run, sentiment_data):
    from transformers import TFBertForSequenceClassification

    from export.dense_head import load_classifier

    run = fitted_head_run(tmp_path_factory, head_run.run_dir, sentiment_data["train"],
                          name="plain-from-head", epochs=1, head_hidden_sizes=())
    texts = [row["text"] for row in synthetic_sentiment_rows(10, seed=8)]

    reloaded = load_classifier(run.run_dir)

    # Nothing of the source run's head is left in the plain run's config.json.
    config_json = json.loads((run.run_dir / "config.json").read_text())
    assert config_json["architectures"] == ["BertForSequenceClassification"]
    assert "tfinetune_head" not in config_json and "head_hidden_sizes" not in config_json
    assert isinstance(reloaded, TFBertForSequenceClassification)
    np.testing.assert_allclose(logits_of(reloaded, run.run_dir, texts),
                               logits_of(run.model, run.run_dir, texts), rtol=0, atol=1e-6)
