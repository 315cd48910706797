"""Freezing options of fit: frozen weights do not move, the head does; dropout is saved."""

import json

import numpy as np
import pytest

import tfinetune
from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tfinetune.errors import ConfigError
from tfinetune.fit_config import FitConfig


def weights_by_name(directory):
    from transformers import TFAutoModelForSequenceClassification

    model = TFAutoModelForSequenceClassification.from_pretrained(directory, num_labels=2)
    return {w.name.split("/", 1)[1]: w.numpy() for w in model.weights}


def fit_with(tmp_path, tiny_model_dir, **options):
    train = write_csv(tmp_path / "train.csv", synthetic_sentiment_rows(32, seed=9))
    tfinetune.fit(FitConfig(model=str(tiny_model_dir), train=str(train),
                            output_dir=str(tmp_path / "run"), epochs=1, batch_size=16,
                            learning_rate=1e-2, max_length=16, weight_decay=0.0, **options))
    return tmp_path / "run"


def changed(before, after, fragment):
    names = [name for name in after if fragment in name and name in before]
    assert names, fragment
    return [name for name in names if not np.array_equal(before[name], after[name])]


def test_freeze_layers_keeps_embeddings_and_first_layers_fixed(tmp_path, tiny_model_dir):
    base = weights_by_name(tiny_model_dir)
    after = weights_by_name(fit_with(tmp_path, tiny_model_dir, freeze_layers=1))
    assert changed(base, after, "embeddings/") == []
    assert changed(base, after, "layer_._0/") == []
    assert changed(base, after, "layer_._1/")  # the unfrozen layer trained


def test_freeze_backbone_trains_only_the_head(tmp_path, tiny_model_dir):
    base = weights_by_name(tiny_model_dir)
    run = fit_with(tmp_path, tiny_model_dir, freeze_backbone=True, classifier_dropout=0.3)
    after = weights_by_name(run)
    backbone = [name for name in after if name.startswith("bert/") and name in base]
    assert backbone and all(np.array_equal(base[n], after[n]) for n in backbone)
    assert json.loads((run / "config.json").read_text())["classifier_dropout"] == 0.3


def test_freeze_options_are_validated(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="either freeze_backbone"):
        FitConfig(train="t.csv", output_dir="o", freeze_backbone=True, freeze_layers=2)
    with pytest.raises(ConfigError, match="classifier_dropout"):
        FitConfig(train="t.csv", output_dir="o", classifier_dropout=1.5)
    with pytest.raises(ConfigError, match="larger than the model's 2 transformer layers"):
        fit_with(tmp_path, tiny_model_dir, freeze_layers=3)
