"""`fit(precision="mixed_bfloat16")`: trains in bfloat16, saves float32, leaves float32 behind."""

from __future__ import annotations

import numpy as np
import pytest

import tfinetune
import tf_keras

from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tests.question_answering_fixtures import fit_qa_run
from tests.seq2seq_fixtures import fit_seq2seq
from tfinetune.errors import ConfigError


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match=r"precision.*Received: precision='float16'"):
        tfinetune.FitConfig(train="t.csv", output_dir="out", precision="float16")


def test_mixed_bfloat16_text_classification(tmp_path, tiny_model_dir):
    import export
    from transformers import TFAutoModelForSequenceClassification

    train = write_csv(tmp_path / "train.csv", synthetic_sentiment_rows(160, seed=1))
    validation = write_csv(tmp_path / "validation.csv", synthetic_sentiment_rows(40, seed=2))
    result = tfinetune.fit(tfinetune.FitConfig(
        model=str(tiny_model_dir), train=str(train), validation=str(validation),
        output_dir=str(tmp_path / "run"), epochs=8, batch_size=16, learning_rate=3e-3,
        max_length=32, seed=0, precision="mixed_bfloat16"))
    assert result.validation_metrics["accuracy"] >= 0.9
    # The process-wide policy is back to float32 and the saved weights are float32.
    assert tf_keras.mixed_precision.global_policy().name == "float32"
    model = TFAutoModelForSequenceClassification.from_pretrained(result.output_dir)
    assert {weight.dtype.name for weight in model.weights} == {"float32"}
    assert "precision: mixed_bfloat16" in (result.output_dir / "fit_config.yaml").read_text()
    # The export (float32, checked against the reloaded run by `export_model` itself) works.
    exported = export.export_model(result.output_dir, tmp_path / "models" / "sentiment")
    assert (exported.path / "saved_model.pb").is_file()
    assert exported.max_abs_difference <= 1e-4


def test_mixed_bfloat16_token_classification(tmp_path, ner_base_model_dir, ner_data):
    result = tfinetune.fit(tfinetune.FitConfig(
        task="token-classification", model=str(ner_base_model_dir), train=str(ner_data["train"]),
        validation=str(ner_data["validation"]), output_dir=str(tmp_path / "run"), epochs=1,
        batch_size=16, learning_rate=3e-3, max_length=32, seed=0, precision="mixed_bfloat16"))
    assert np.isfinite(result.history[-1]["loss"])
    assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_mixed_bfloat16_question_answering(tmp_path, qa_base_model_dir, qa_data):
    result = fit_qa_run(tmp_path / "run", qa_base_model_dir, qa_data, epochs=1,
                        precision="mixed_bfloat16")
    assert np.isfinite(result.history[-1]["loss"])
    assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_mixed_bfloat16_seq2seq(tmp_path, byt5_model_dir, translation_data):
    result = fit_seq2seq(byt5_model_dir, translation_data, tmp_path / "run", epochs=1,
                         max_length=32, max_target_length=10, precision="mixed_bfloat16")
    assert np.isfinite(result.history[-1]["loss"])
    assert tf_keras.mixed_precision.global_policy().name == "float32"
