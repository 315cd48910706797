"""`tfinetune.fit` on the tiny BERT: it learns, writes the run, resumes after a crash."""

import json

import numpy as np
import pytest
import yaml

import tfinetune
import tf_keras

from tests.conftest import LABELS
from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tfinetune.errors import RunDirError
from tfinetune.fit_config import FitConfig

# Settings under which the tiny model reliably learns the synthetic task in a few seconds.
FAST = {"epochs": 8, "batch_size": 16, "learning_rate": 3e-3, "max_length": 32}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_model_dir, sentiment_data):
    output_dir = tmp_path_factory.mktemp("fit") / "run"
    config = FitConfig(model=str(tiny_model_dir), train=str(sentiment_data["train"]),
                       validation=str(sentiment_data["validation"]), output_dir=str(output_dir),
                       **FAST)
    return config, tfinetune.fit(config)


def test_fit_learns_the_task_well_above_chance(fitted):
    _, result = fitted
    assert result.validation_metrics["accuracy"] >= 0.9
    assert result.validation_metrics["f1"] >= 0.9
    assert result.history[0]["loss"] > result.history[-1]["loss"]


def test_run_directory_has_every_artefact(fitted):
    config, result = fitted
    run = result.output_dir
    for name in ["config.json", "tf_model.h5", "vocab.txt", "tokenizer_config.json",
                 "labels.json", "fit_config.yaml", "metrics.json", "training_curves.png",
                 "README.md"]:
        assert (run / name).is_file(), name
    assert json.loads((run / "labels.json").read_text()) == {"labels": LABELS}
    assert FitConfig.load(run / "fit_config.yaml") == config
    assert list((run / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event files"
    assert (run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "f1" in (run / "README.md").read_text()
    assert not (run / "checkpoints").exists()
    assert not (run / ".staging").exists()


def test_metrics_json_has_per_epoch_history_and_best_epoch_by_f1(fitted):
    config, result = fitted
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    history = metrics["history"]
    assert [entry["epoch"] for entry in history] == list(range(1, config.epochs + 1))
    for entry in history:
        for key in ("loss", "accuracy", "learning_rate", "val_loss", "val_accuracy",
                    "val_precision", "val_recall", "val_f1"):
            assert key in entry, key
    best_f1 = max(entry["val_f1"] for entry in history)
    first_best = min(entry["epoch"] for entry in history if entry["val_f1"] == best_f1)
    assert metrics["best_epoch"] == first_best == result.best_epoch
    assert metrics["validation"]["f1"] == pytest.approx(best_f1)
    assert metrics["validation"]["confusion_matrix"]
    # The learning rate decays to ~0 at the end of training (linear schedule).
    assert history[-1]["learning_rate"] < 0.05 * config.learning_rate


def test_saved_model_reloads_and_reproduces_the_reported_accuracy(fitted, sentiment_data):
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSequenceClassification

    _, result = fitted
    model = TFAutoModelForSequenceClassification.from_pretrained(result.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.output_dir)
    assert model.config.id2label == dict(enumerate(LABELS))
    rows = synthetic_sentiment_rows(40, seed=2)
    encoded = tokenizer([row["text"] for row in rows], padding=True, truncation=True,
                        max_length=32, return_tensors="tf")
    predicted = np.argmax(model(encoded).logits.numpy(), axis=-1)
    truth = np.array([LABELS.index(row["label"]) for row in rows])
    assert (predicted == truth).mean() == pytest.approx(result.validation_metrics["accuracy"])


class CrashAt(tf_keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("simulated crash")


class Recorder(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.first = None
        self.iterations = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.first is None:
            self.first = (self.epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_end(self, logs=None):
        self.iterations = int(self.model.optimizer.iterations.numpy())


def test_rerunning_after_a_crash_resumes_from_the_last_backup(tmp_path, tiny_model_dir,
                                                              sentiment_data):
    config = FitConfig(model=str(tiny_model_dir), train=str(sentiment_data["train"]),
                       validation=str(sentiment_data["validation"]),
                       output_dir=str(tmp_path / "run"), epochs=3, batch_size=16,
                       learning_rate=3e-3, max_length=32, save_steps=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tfinetune.fit(config, callbacks=[CrashAt(epoch=1, batch=5)])
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "backup").is_dir()
    assert [e["epoch"] for e in json.loads((checkpoints / "history.json").read_text())[
        "history"]] == [1]
    assert not (tmp_path / "run" / "labels.json").exists()

    recorder = Recorder()
    result = tfinetune.fit(config, callbacks=[recorder])
    assert result.resumed
    # 10 steps per epoch, backups every 4 steps: the last one before the crash at epoch 2
    # (index 1) batch 5 was at batch 3, so training restarts at batch 4 of that epoch.
    assert recorder.first == (1, 4)
    assert recorder.iterations == 30
    assert [entry["epoch"] for entry in result.history] == [1, 2, 3]
    assert (tmp_path / "run" / "labels.json").is_file()
    assert not checkpoints.exists()


def test_resume_with_different_options_is_refused(tmp_path, tiny_model_dir, sentiment_data):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    options = {"model": str(tiny_model_dir), "train": str(sentiment_data["train"]),
               "output_dir": str(run)}
    FitConfig(**options, epochs=3).save(run / "checkpoints" / "fit_config.yaml")
    with pytest.raises(RunDirError, match="epochs: 3 -> 5") as error:
        tfinetune.fit(FitConfig(**options, epochs=5))
    assert "--overwrite-output-dir" in str(error.value)


def test_finished_run_is_not_overwritten_without_the_flag(tmp_path, tiny_model_dir,
                                                          sentiment_data):
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.json").write_text(json.dumps({"labels": ["a", "b"]}))
    (run / "fit_config.yaml").write_text("task: text-classification\n")
    config = FitConfig(model=str(tiny_model_dir), train=str(sentiment_data["train"]),
                       output_dir=str(run))
    with pytest.raises(RunDirError, match="already holds a finished run"):
        tfinetune.fit(config)
    assert json.loads((run / "labels.json").read_text()) == {"labels": ["a", "b"]}


def test_overwrite_replaces_a_finished_run(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.json").write_text(json.dumps({"labels": ["a", "b"]}))
    train = write_csv(tmp_path / "train.csv", synthetic_sentiment_rows(32, seed=3))
    config = FitConfig(model=str(tiny_model_dir), train=str(train), output_dir=str(run),
                       epochs=1, batch_size=16, max_length=16, overwrite_output_dir=True,
                       schedule="cosine", text_column="text")
    result = tfinetune.fit(config)
    assert json.loads((run / "labels.json").read_text()) == {"labels": LABELS}
    # Without validation data the last epoch is kept.
    assert result.best_epoch == 1 and result.validation_metrics is None
    assert yaml.safe_load((run / "fit_config.yaml").read_text())["schedule"] == "cosine"


def test_weight_decay_skips_biases_and_layer_norm(tiny_model_dir):
    from transformers import TFAutoModelForSequenceClassification

    from tfinetune.trainer import NO_DECAY

    model = TFAutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    optimizer = tf_keras.optimizers.AdamW(weight_decay=0.01)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    optimizer.build(model.trainable_variables)
    decayed = {v.name for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    skipped = {v.name for v in model.trainable_variables} - decayed
    assert any("kernel" in name for name in decayed)
    assert skipped and all("bias" in name or "LayerNorm" in name for name in skipped)
    assert not any("bias" in name or "LayerNorm" in name for name in decayed)


def test_sentence_pair_runs_record_the_pair_column_and_use_both_segments(tiny_pair_run_dir):
    from transformers import AutoTokenizer

    config = FitConfig.load(tiny_pair_run_dir / "fit_config.yaml")
    assert config.text_pair_column == "text_pair"
    tokenizer = AutoTokenizer.from_pretrained(tiny_pair_run_dir)
    encoded = tokenizer("the movie", "was great")
    assert 1 in encoded["token_type_ids"]  # the second segment is marked for the model
    assert json.loads((tiny_pair_run_dir / "labels.json").read_text()) == {"labels": LABELS}
