"""Another WordPiece family: DistilBERT (no token_type_ids), a pair model with three classes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from tests.export.reference import TOLERANCE
from tests.export.reference import decode
from tests.export.reference import reference_probabilities

LABELS3 = ["contradiction", "entailment", "neutral"]


@pytest.fixture(scope="module")
def distilbert_run_dir(tmp_path_factory, tiny_model_dir):
    from transformers import DistilBertConfig
    from transformers import DistilBertTokenizerFast
    from transformers import TFDistilBertForSequenceClassification

    run_dir = tmp_path_factory.mktemp("run-distilbert")
    shutil.copyfile(tiny_model_dir / "vocab.txt", run_dir / "vocab.txt")
    tokenizer = DistilBertTokenizerFast(vocab_file=str(run_dir / "vocab.txt"))
    tokenizer.save_pretrained(run_dir)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2,
                              hidden_dim=64, max_position_embeddings=64, num_labels=3,
                              id2label=dict(enumerate(LABELS3)),
                              label2id={label: i for i, label in enumerate(LABELS3)},
                              initializer_range=0.5)
    model = TFDistilBertForSequenceClassification(config)
    model(model.dummy_inputs)
    model.save_pretrained(run_dir)
    (run_dir / "labels.json").write_text(json.dumps({"labels": LABELS3}), encoding="utf-8")
    (run_dir / "fit_config.yaml").write_text(yaml.safe_dump(
        {"task": "text-classification", "max_length": 24, "text_column": "premise",
         "text_pair_column": "hypothesis"}), encoding="utf-8")
    return run_dir


@pytest.mark.slow  # ~20 s: one more pair-model export
def test_distilbert_pair_model_exports_and_matches(distilbert_run_dir, tmp_path):
    import tensorflow as tf

    import export
    from export.run_directory import RunDirectory

    result = export.export_model(distilbert_run_dir, tmp_path)
    loaded = tf.saved_model.load(str(result.path))
    texts = ["good movie", "the plot was dull and the acting was poor", ""]
    pairs = ["it was fun", "bad", "really really really great music and a great cast"]

    outputs = loaded.signatures["serving_default"](text=tf.constant(texts),
                                                   text_pair=tf.constant(pairs))

    run = RunDirectory.open(distilbert_run_dir)
    expected = reference_probabilities(run.load_model(), run.load_tokenizer(), texts, pairs,
                                       max_length=24)
    assert result.max_abs_difference <= TOLERANCE
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, rtol=0,
                               atol=TOLERANCE)
    assert decode(outputs["classes"].numpy().tolist()) == [LABELS3] * 3
    assert outputs["probabilities"].shape == (3, 3)
    tokens_inputs = loaded.signatures["tokens"].structured_input_signature[1]
    assert sorted(tokens_inputs) == ["attention_mask", "input_ids", "token_type_ids"]
