"""The reloaded SavedModel against the in-memory model, and the export's own parity check."""

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


def _check_serving_outputs(outputs, expected_probabilities):
    probabilities = outputs["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=0, atol=TOLERANCE)
    label_id = outputs["label_id"].numpy()
    np.testing.assert_array_equal(label_id, expected_probabilities.argmax(axis=-1))
    assert decode(outputs["label"].numpy().tolist()) == [LABELS[i] for i in label_id]
    assert decode(outputs["classes"].numpy().tolist()) == [LABELS] * len(label_id)


def test_fixture_model_is_sensitive_to_its_input(single_reference):
    """Guards the comparisons below: a model whose outputs hardly move would pass them anyway."""
    probabilities = reference_probabilities(*single_reference, CHECK_TEXTS)
    assert np.ptp(probabilities[:, 0]) > 0.05
    one_token_changed = reference_probabilities(*single_reference, ["good movie", "good movie ."])
    assert np.abs(one_token_changed[0] - one_token_changed[1]).max() > 100 * TOLERANCE


def test_serving_default_matches_in_memory_model(loaded_single, single_reference):
    import tensorflow as tf

    outputs = loaded_single.signatures["serving_default"](text=tf.constant(CHECK_TEXTS))

    _check_serving_outputs(outputs, reference_probabilities(*single_reference, CHECK_TEXTS))


def test_serving_default_matches_in_memory_model_for_pairs(loaded_pair, pair_reference):
    import tensorflow as tf

    outputs = loaded_pair.signatures["serving_default"](
        text=tf.constant(CHECK_TEXTS), text_pair=tf.constant(CHECK_PAIRS))

    _check_serving_outputs(
        outputs, reference_probabilities(*pair_reference, CHECK_TEXTS, CHECK_PAIRS))


def test_pair_order_matters(loaded_pair):
    """text and text_pair are wired to segments A and B, not swapped or merged."""
    import tensorflow as tf

    serve = loaded_pair.signatures["serving_default"]
    forward = serve(text=tf.constant(["good movie"]), text_pair=tf.constant(["awful plot"]))
    backward = serve(text=tf.constant(["awful plot"]), text_pair=tf.constant(["good movie"]))
    assert np.abs(forward["probabilities"].numpy() - backward["probabilities"].numpy()).max() > (
        10 * TOLERANCE)


def test_each_text_alone_gives_the_batch_result(loaded_single):
    import tensorflow as tf

    serve = loaded_single.signatures["serving_default"]
    batch = serve(text=tf.constant(CHECK_TEXTS))["probabilities"].numpy()
    alone = np.concatenate([serve(text=tf.constant([text]))["probabilities"].numpy()
                            for text in CHECK_TEXTS])
    np.testing.assert_allclose(alone, batch, rtol=0, atol=TOLERANCE)


def test_in_graph_tokens_equal_hugging_face_tokens(loaded_single, loaded_pair, single_reference,
                                                   pair_reference):
    import tensorflow as tf

    for loaded, (_, tokenizer), pairs in ((loaded_single, single_reference, None),
                                          (loaded_pair, pair_reference, CHECK_PAIRS)):
        kwargs = {"text": tf.constant(CHECK_TEXTS)}
        if pairs is not None:
            kwargs["text_pair"] = tf.constant(pairs)
        tokens = loaded.tokenize(**kwargs)
        for name, expected in encode(tokenizer, CHECK_TEXTS, pairs).items():
            np.testing.assert_array_equal(tokens[name].numpy(), expected, err_msg=name)


def test_tokens_signature_matches_in_memory_model(loaded_single, single_reference):
    import tensorflow as tf

    encoded = encode(single_reference[1], CHECK_TEXTS)
    outputs = loaded_single.signatures["tokens"](
        **{name: tf.constant(value, tf.int32) for name, value in encoded.items()})

    np.testing.assert_allclose(outputs["logits"].numpy(),
                               reference_logits(*single_reference, CHECK_TEXTS),
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(outputs["probabilities"].numpy(),
                               reference_probabilities(*single_reference, CHECK_TEXTS),
                               rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_classify_signature_on_serialized_examples(kind, loaded_single, loaded_pair,
                                                   single_reference, pair_reference):
    import tensorflow as tf

    loaded, reference, pairs = ((loaded_single, single_reference, None) if kind == "single"
                                else (loaded_pair, pair_reference, CHECK_PAIRS))
    outputs = loaded.signatures["classify"](
        inputs=tf.constant(serialized_examples(CHECK_TEXTS, pairs)))

    assert set(outputs) == {"classes", "scores"}
    assert decode(outputs["classes"].numpy().tolist()) == [LABELS] * len(CHECK_TEXTS)
    np.testing.assert_allclose(outputs["scores"].numpy(),
                               reference_probabilities(*reference, CHECK_TEXTS, pairs),
                               rtol=0, atol=TOLERANCE)


def test_classify_without_text_feature_is_an_invalid_argument(loaded_single):
    import tensorflow as tf

    example = tf.train.Example(features=tf.train.Features(feature={
        "review": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"good"]))}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="text"):
        loaded_single.signatures["classify"](inputs=tf.constant([example.SerializeToString()]))


def test_empty_batch_gives_empty_outputs(loaded_single):
    import tensorflow as tf

    outputs = loaded_single.signatures["serving_default"](text=tf.constant([], tf.string))

    assert outputs["probabilities"].shape == (0, 2)
    assert outputs["label_id"].shape == (0,)
    assert outputs["label"].shape == (0,)
    assert outputs["classes"].shape == (0, 2)


def test_export_result_reports_the_parity_check(single_export, single_base):
    assert single_export.version == 1
    assert single_export.path == single_base / "1"
    assert 0 <= single_export.max_abs_difference <= TOLERANCE


def test_check_parity_catches_a_tokenizer_difference(single_export, single_reference):
    """Hugging Face matches special tokens typed in the text; the in-graph tokenizer does not."""
    from export.errors import ParityError
    from export.parity_check import check_parity

    model, tokenizer = single_reference
    with pytest.raises(ParityError, match=r"in-graph tokenizer.*\[MASK\].*the \[MASK\] was good"):
        check_parity(single_export.path, model, tokenizer, texts=["the [MASK] was good"],
                     text_pairs=None, max_length=32, labels=LABELS)


def test_check_parity_catches_a_different_model(single_export, pair_reference):
    """Same tokenizer, other weights (the pair run's head): outputs differ beyond 1e-4."""
    from export.errors import ParityError
    from export.parity_check import check_parity

    model, tokenizer = pair_reference
    with pytest.raises(ParityError, match=r"does not reproduce the in-memory model.*0\.0001"):
        check_parity(single_export.path, model, tokenizer, texts=CHECK_TEXTS, text_pairs=None,
                     max_length=32, labels=LABELS)


def test_failed_parity_removes_the_export(tmp_path, tiny_run_dir, monkeypatch):
    """The written SavedModel no longer matches the in-memory model: nothing is left behind."""
    import export
    import export.exporter
    from export.errors import ParityError

    original_save = export.exporter.save_module

    def save_then_change_the_model(module, export_dir):
        original_save(module, export_dir)
        for variable in module.model_variables:
            if "classifier" in variable.name and "bias" in variable.name:
                variable.assign_add([1.0, -1.0])

    monkeypatch.setattr(export.exporter, "save_module", save_then_change_the_model)
    base = tmp_path / "models"
    (base / "1").mkdir(parents=True)
    before = sorted(p.name for p in base.iterdir())

    with pytest.raises(ParityError) as raised:
        export.export_model(tiny_run_dir, base)

    assert "does not reproduce the in-memory model" in str(raised.value)
    assert sorted(p.name for p in base.iterdir()) == before
    assert list((base / "1").iterdir()) == []
