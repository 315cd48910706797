"""Export of `head_hidden_sizes` runs: export rebuilds `DenseHeadClassifier` from the run
directory (without tfinetune), the parity check passes, the signatures are the classifier's
usual ones and the served outputs equal the in-memory model's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.errors import RunDirError
from tests.conftest import multi_label_rows
from tests.conftest import write_csv
from tests.dense_head_fixtures import fitted_head_run
from tests.dense_head_fixtures import sensitive_base_dir
from tests.export.reference import TOLERANCE
from tests.export.test_signatures import EXPECTED
from tests.export.test_signatures import _meta_graph
from tests.export.test_signatures import _tensor_infos

TEXTS = ["a good movie", "the plot was awful and boring", "wonderful!", "",
         "it was fine, the acting was not great but the music is brilliant"]


@pytest.fixture(scope="module")
def head_run(tmp_path_factory, tiny_model_dir, sentiment_data):
    # The same run as tests/tfinetune/test_head_hidden_sizes.py (fitted once per session).
    base = sensitive_base_dir(tmp_path_factory, tiny_model_dir, "bert")
    return fitted_head_run(tmp_path_factory, base, sentiment_data["train"],
                           name="single", validation=str(sentiment_data["validation"]))


@pytest.fixture(scope="module")
def head_export(tmp_path_factory, head_run):
    import export

    return export.export_model(head_run.run_dir, tmp_path_factory.mktemp("models") / "head")


def in_memory_logits(model, run_dir, texts) -> np.ndarray:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="tf")
    return model(dict(encoded), training=False).logits.numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_export_has_the_plain_classifier_signatures_and_passes_parity(head_export):
    meta_graph = _meta_graph(head_export.path)
    public = {name: signature for name, signature in meta_graph.signature_def.items()
              if not name.startswith("__")}

    assert head_export.signatures == ("serving_default", "tokens", "classify")
    assert head_export.max_abs_difference <= TOLERANCE
    assert set(public) == set(EXPECTED["single"])
    for name, signature in public.items():
        expected = EXPECTED["single"][name]
        assert signature.method_name == expected["method_name"], name
        assert _tensor_infos(signature.inputs) == expected["inputs"], name
        assert _tensor_infos(signature.outputs) == expected["outputs"], name


def test_served_probabilities_equal_the_in_memory_model(head_export, head_run):
    from serving import Client
    from serving import Server

    server = Server({"head": head_export.path.parent}, port=0,
                    file_system_poll_wait_seconds=0).start()
    try:
        with Client(f"127.0.0.1:{server.port}", "head") as client:
            predictions = client.predict(TEXTS)
    finally:
        server.stop(grace=5)

    expected = softmax(in_memory_logits(head_run.model, head_run.run_dir, TEXTS))
    served = np.array([[p.probabilities["negative"], p.probabilities["positive"]]
                       for p in predictions])
    assert np.ptp(expected[:, 1]) > 0.01  # the texts get visibly different probabilities
    np.testing.assert_allclose(served, expected, rtol=0, atol=TOLERANCE)
    assert [p.label for p in predictions] == [["negative", "positive"][i]
                                              for i in expected.argmax(axis=1)]


def test_run_directory_loads_the_head_model(head_run):
    from export.dense_head import DenseHeadClassifier
    from export.run_directory import RunDirectory

    model = RunDirectory.open(head_run.run_dir).load_model()

    assert isinstance(model, DenseHeadClassifier)
    assert model.hidden_sizes == (16, 8)


def test_export_rebuilds_the_head_model_without_importing_tfinetune(head_run):
    code = (
        "import sys\n"
        "from export.run_directory import RunDirectory\n"
        f"model = RunDirectory.open({str(head_run.run_dir)!r}).load_model()\n"
        "assert type(model).__name__ == 'DenseHeadClassifier', type(model)\n"
        "imported = [m for m in sys.modules if m.split('.')[0] == 'tfinetune']\n"
        "assert not imported, imported\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300,
                   cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize("sizes, problem", [
    ([16, 8, 8], r"no saved weights for \['head_hidden_2'\]"),
    ([16, 4], (r"other shapes for \['head_hidden_1/kernel:0 \(saved \(16, 8\), expected "
               r"\(16, 4\)\)'")),
])
def test_a_head_config_the_weights_do_not_match_is_a_run_dir_error(head_run, tmp_path, sizes,
                                                                    problem):
    import export

    run_dir = tmp_path / "run"
    shutil.copytree(head_run.run_dir, run_dir)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    config["head_hidden_sizes"] = sizes
    (run_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")

    with pytest.raises(RunDirError, match=r"dense-head classifier is incomplete.*" + problem):
        export.export_model(run_dir, tmp_path / "models")
    assert not (tmp_path / "models").exists()


@pytest.mark.slow  # ~35 s: a DistilBERT fit and export
def test_distilbert_head_exports_and_matches(tmp_path_factory, tiny_model_dir, sentiment_data):
    import tensorflow as tf

    import export

    base = sensitive_base_dir(tmp_path_factory, tiny_model_dir, "distilbert")
    run = fitted_head_run(tmp_path_factory, base, sentiment_data["train"], name="distilbert",
                          epochs=1)
    result = export.export_model(run.run_dir, tmp_path_factory.mktemp("models") / "distil")
    loaded = tf.saved_model.load(str(result.path))

    served = loaded.signatures["serving_default"](text=tf.constant(TEXTS))["probabilities"]

    expected = softmax(in_memory_logits(run.model, run.run_dir, TEXTS))
    assert result.max_abs_difference <= TOLERANCE
    assert np.ptp(expected[:, 1]) > 0.01
    np.testing.assert_allclose(served.numpy(), expected, rtol=0, atol=TOLERANCE)


@pytest.mark.slow  # ~30 s: a multi-label fit and export
def test_multi_label_head_exports_sigmoid_scores(tmp_path_factory, tiny_model_dir):
    import tensorflow as tf

    import export

    rows = multi_label_rows(48, seed=3)
    train = write_csv(tmp_path_factory.mktemp("multi-label") / "train.csv", rows)
    base = sensitive_base_dir(tmp_path_factory, tiny_model_dir, "bert")
    run = fitted_head_run(tmp_path_factory, base, train, name="multi-label-export", epochs=1,
                          problem_type="multi-label", label_delimiter="|")
    result = export.export_model(run.run_dir, tmp_path_factory.mktemp("models") / "multi")
    loaded = tf.saved_model.load(str(result.path))

    outputs = loaded.signatures["serving_default"](text=tf.constant(TEXTS))

    expected = 1.0 / (1.0 + np.exp(-in_memory_logits(run.model, run.run_dir, TEXTS)))
    assert result.signatures == ("serving_default", "tokens", "classify")
    np.testing.assert_allclose(outputs["scores"].numpy(), expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(outputs["predicted"].numpy(), (expected >= 0.5).astype(int))
