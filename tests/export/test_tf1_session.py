"""The export loads the way TF Serving (and `serving`) loads it: a TF1 session, fed by tensor name.

`tf.compat.v1.saved_model.loader.load` inside a `tf.Graph()`, after `import tensorflow_text`
(which registers the tokenizer ops), then `Session.run` on the signature's tensor names.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import LABELS
from tests.export.conftest import CHECK_PAIRS
from tests.export.conftest import CHECK_TEXTS
from tests.export.reference import TOLERANCE
from tests.export.reference import decode
from tests.export.reference import encode
from tests.export.reference import reference_logits
from tests.export.reference import reference_probabilities
from tests.export.reference import serialized_examples


class Tf1Session:
    """One export loaded into a fresh graph and session, the way TF Serving loads it."""

    def __init__(self, path):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the TF Text ops before loading)

        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            self.meta_graph = tf.compat.v1.saved_model.loader.load(self.session, {"serve"},
                                                                   str(path))

    def run(self, signature_name, feeds):
        """Runs one signature, feeding and fetching by the SignatureDef's tensor names."""
        signature = self.meta_graph.signature_def[signature_name]
        assert set(signature.inputs) == set(feeds)
        feed_dict = {signature.inputs[key].name: value for key, value in feeds.items()}
        fetches = {key: info.name for key, info in signature.outputs.items()}
        return self.session.run(fetches, feed_dict=feed_dict)


@pytest.fixture(scope="module")
def tf1_single(single_export):
    loaded = Tf1Session(single_export.path)
    yield loaded
    loaded.session.close()


@pytest.fixture(scope="module")
def tf1_pair(pair_export):
    loaded = Tf1Session(pair_export.path)
    yield loaded
    loaded.session.close()


def _strings(values):
    return np.array([v.encode("utf-8") for v in values], dtype=object)


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_serving_default_in_a_tf1_session(kind, request):
    tf1 = request.getfixturevalue(f"tf1_{kind}")
    model, tokenizer = request.getfixturevalue(f"{kind}_reference")
    pairs = CHECK_PAIRS if kind == "pair" else None
    feeds = {"text": _strings(CHECK_TEXTS)}
    if pairs is not None:
        feeds["text_pair"] = _strings(pairs)

    outputs = tf1.run("serving_default", feeds)

    expected = reference_probabilities(model, tokenizer, CHECK_TEXTS, pairs)
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(outputs["label_id"], expected.argmax(axis=-1))
    assert decode(outputs["label"].tolist()) == [LABELS[i] for i in outputs["label_id"]]
    assert decode(outputs["classes"].tolist()) == [LABELS] * len(CHECK_TEXTS)


def test_the_session_graph_has_the_signatures(tf1_single):
    signatures = tf1_single.meta_graph.signature_def
    assert {"serving_default", "tokens", "classify"} <= set(signatures)
    assert signatures["classify"].method_name == "tensorflow/serving/classify"


def test_tf1_session_gives_the_tf2_signature_result(tf1_single, loaded_single):
    import tensorflow as tf

    tf2 = loaded_single.signatures["serving_default"](
        text=tf.constant(CHECK_TEXTS))["probabilities"].numpy()
    tf1 = tf1_single.run("serving_default", {"text": _strings(CHECK_TEXTS)})["probabilities"]
    np.testing.assert_allclose(tf1, tf2, rtol=0, atol=1e-6)


def test_tokens_in_a_tf1_session(tf1_single, single_reference):
    encoded = encode(single_reference[1], CHECK_TEXTS)
    feeds = {name: value.astype(np.int32) for name, value in encoded.items()}

    outputs = tf1_single.run("tokens", feeds)

    np.testing.assert_allclose(outputs["logits"],
                               reference_logits(*single_reference, CHECK_TEXTS),
                               rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_classify_in_a_tf1_session(kind, request):
    tf1 = request.getfixturevalue(f"tf1_{kind}")
    model, tokenizer = request.getfixturevalue(f"{kind}_reference")
    pairs = CHECK_PAIRS if kind == "pair" else None
    examples = np.array(serialized_examples(CHECK_TEXTS, pairs), dtype=object)

    outputs = tf1.run("classify", {"inputs": examples})

    np.testing.assert_allclose(outputs["scores"],
                               reference_probabilities(model, tokenizer, CHECK_TEXTS, pairs),
                               rtol=0, atol=TOLERANCE)
    assert decode(outputs["classes"].tolist()) == [LABELS] * len(CHECK_TEXTS)
