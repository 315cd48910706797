"""Checks that a written SavedModel reproduces the in-memory Hugging Face model and tokenizer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from export.classifier_serving_module import CLASSIFY  # noqa: E402
from export.classifier_serving_module import DEFAULT_THRESHOLD  # noqa: E402
from export.classifier_serving_module import MULTI_LABEL  # noqa: E402
from export.classifier_serving_module import REGRESS  # noqa: E402
from export.classifier_serving_module import REGRESSION  # noqa: E402
from export.classifier_serving_module import SINGLE_LABEL  # noqa: E402
from export.classifier_serving_module import SERVING_DEFAULT  # noqa: E402
from export.classifier_serving_module import TEXT  # noqa: E402
from export.classifier_serving_module import TEXT_PAIR  # noqa: E402
from export.classifier_serving_module import TOKEN_INPUTS  # noqa: E402
from export.classifier_serving_module import TOKENS  # noqa: E402
from export.errors import ParityError  # noqa: E402

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4

DEFAULT_PARITY_TEXTS = (
    "This movie was absolutely wonderful!",
    "I HATED the ending, and the acting was dull...",
    "A café scene, a naïve plot and a brilliant cast.",
    "ok",
    "",
    "Not bad? Not good either; it's just... fine (3/10).",
    "  Spaces, tabs\tand\nnewlines  ",
)


def default_parity_texts(max_length: int) -> list[str]:
    """The fixed parity texts plus two texts longer than `max_length` tokens."""
    sentence = "the story was really good, and the music was great"
    repeats = max_length // 10 + 1
    return [
        *DEFAULT_PARITY_TEXTS,
        " ".join([sentence] * repeats),
        " ".join(["An overlong, BORING film."] * (repeats + 1)),
    ]


def parity_pairs(texts: Sequence[str]) -> list[str]:
    """Second segments for pair models: the texts rotated by one, so lengths vary per row."""
    return [*texts[1:], *texts[:1]]


def check_parity(
    export_dir: str | Path,
    model: Any,
    tokenizer: Any,
    *,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None,
    max_length: int,
    labels: Sequence[str],
    problem_type: str = SINGLE_LABEL,
    threshold: float = DEFAULT_THRESHOLD,
    tolerance: float = TOLERANCE,
) -> float:
    """Reloads the SavedModel and compares it with the in-memory model on `texts`.

    Compared: the reloaded `tokenize` function's ids with the Hugging Face tokenizer's (exactly);
    the `tokens` signature's logits with the in-memory model's on the Hugging Face encoding;
    and, per problem type, every signature's outputs with what the in-memory logits give:

    - single-label: `serving_default` probabilities, `tokens` probabilities and `classify`
      scores against their softmax; `classes`/`label`/`label_id` against `labels`.
    - multi-label: `serving_default`, `tokens` and `classify` scores against their sigmoid;
      `classes` against `labels`; `predicted` against score >= `threshold` (a score within
      `tolerance` of the threshold may go either way).
    - regression: `serving_default` and `tokens` value and `regress` outputs against the single
      logit.

    Args:
        export_dir: The written SavedModel.
        model: The in-memory `TFAutoModelForSequenceClassification`.
        tokenizer: The Hugging Face tokenizer the model was fine-tuned with.
        texts: Texts to classify.
        text_pairs: Second segments (pair models), same length as `texts`, or None.
        max_length: The export's maximum sequence length.
        labels: Label names, index = class id.
        problem_type: `single-label`, `multi-label` or `regression`.
        threshold: Multi-label: the score from which `predicted` is 1.
        tolerance: Largest allowed absolute difference.

    Returns:
        The largest absolute difference seen.

    Raises:
        ParityError: Token ids differ, or an output differs by more than `tolerance`.
    """
    texts = list(texts)
    pairs = None if text_pairs is None else list(text_pairs)
    loaded = tf.saved_model.load(str(export_dir))
    text_inputs = {TEXT: tf.constant(texts, tf.string)}
    if pairs is not None:
        text_inputs[TEXT_PAIR] = tf.constant(pairs, tf.string)

    encoded = tokenizer(
        texts, pairs, padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    _check_tokens(loaded.tokenize(**text_inputs), encoded, tokenizer, texts, pairs)

    model_inputs = {k: tf.constant(v, tf.int32) for k, v in encoded.items()}
    logits = model(**model_inputs, training=False).logits.numpy().astype(np.float32)

    token_inputs = {
        name: model_inputs.get(name, tf.zeros_like(model_inputs["input_ids"]))
        for name in TOKEN_INPUTS
    }
    serving = loaded.signatures[SERVING_DEFAULT](**text_inputs)
    tokens = loaded.signatures[TOKENS](**token_inputs)
    examples = tf.constant(_examples(texts, pairs))
    differences = [_difference(TOKENS, "logits", tokens["logits"], logits)]
    if problem_type == REGRESSION:
        value = logits[:, 0]
        regress = loaded.signatures[REGRESS](inputs=examples)
        differences += [
            _difference(SERVING_DEFAULT, "value", serving["value"], value),
            _difference(TOKENS, "value", tokens["value"], value),
            _difference(REGRESS, "outputs", regress["outputs"], value),
        ]
    elif problem_type == MULTI_LABEL:
        scores = tf.math.sigmoid(logits).numpy()
        classify = loaded.signatures[CLASSIFY](inputs=examples)
        differences += [
            _difference(SERVING_DEFAULT, "scores", serving["scores"], scores),
            _difference(TOKENS, "scores", tokens["scores"], scores),
            _difference(CLASSIFY, "scores", classify["scores"], scores),
        ]
    else:
        probabilities = tf.nn.softmax(logits, axis=-1).numpy()
        classify = loaded.signatures[CLASSIFY](inputs=examples)
        differences += [
            _difference(SERVING_DEFAULT, "probabilities", serving["probabilities"],
                        probabilities),
            _difference(TOKENS, "probabilities", tokens["probabilities"], probabilities),
            _difference(CLASSIFY, "scores", classify["scores"], probabilities),
        ]
    worst = max(differences, key=lambda d: d[0])
    difference, signature, output, row = worst
    if not difference <= tolerance:
        raise ParityError(
            f"The exported SavedModel does not reproduce the in-memory model. Expected every "
            f"output within {tolerance:g} of the in-memory model. Received: max |difference| "
            f"{difference:.3g} in {signature!r} output {output!r} for text={texts[row]!r}"
        )
    if problem_type == MULTI_LABEL:
        _check_classes(serving, classify, labels)
        _check_predicted(serving, scores, threshold, tolerance, labels, texts)
    elif problem_type != REGRESSION:
        _check_labels(serving, classify, labels, probabilities, texts)
    logger.info(
        "Parity check passed on %d texts: max |difference| %.3g (tolerance %g)",
        len(texts),
        difference,
        tolerance,
    )
    return float(difference)


def _check_tokens(in_graph, encoded, tokenizer, texts, pairs) -> None:
    for name in TOKEN_INPUTS:
        if name not in encoded:
            continue
        expected = np.asarray(encoded[name])
        received = in_graph[name].numpy()
        if expected.shape == received.shape and np.array_equal(expected, received):
            continue
        row = _first_different_row(expected, received)
        pair = "" if pairs is None else f", text_pair={pairs[row]!r}"
        raise ParityError(
            f"The in-graph tokenizer does not reproduce the Hugging Face tokenizer. Expected "
            f"{name} {_row(expected, row, tokenizer, name)}. Received: "
            f"{_row(received, row, tokenizer, name)} for text={texts[row]!r}{pair}"
        )


def _first_different_row(expected: np.ndarray, received: np.ndarray) -> int:
    for row in range(min(len(expected), len(received))):
        a, b = np.trim_zeros(expected[row], "b"), np.trim_zeros(received[row], "b")
        if a.shape != b.shape or not np.array_equal(a, b):
            return row
    return 0


def _row(values: np.ndarray, row: int, tokenizer: Any, name: str) -> str:
    ids = [int(v) for v in np.trim_zeros(values[row], "b")]
    if name == "input_ids":
        return str(tokenizer.convert_ids_to_tokens(ids))
    return str(ids)


def _check_classes(serving, classify, labels) -> None:
    rows = serving["classes"].shape[0]
    expected = np.array([[label.encode("utf-8") for label in labels]] * rows, dtype=object)
    for signature, output in ((SERVING_DEFAULT, serving), (CLASSIFY, classify)):
        received = output["classes"].numpy()
        if received.shape != expected.shape or not (received == expected).all():
            raise ParityError(
                f"The exported {signature!r} output 'classes' has the wrong label names. "
                f"Expected {list(labels)} in every row. Received: {received.tolist()[:1]}"
            )


def _check_predicted(serving, scores, threshold, tolerance, labels, texts) -> None:
    received = serving["predicted"].numpy()
    expected = (scores >= threshold).astype(np.int64)
    # A score within the tolerance of the threshold may legitimately fall on either side.
    wrong = (received != expected) & (np.abs(scores - threshold) > tolerance)
    if received.shape != expected.shape or wrong.any():
        row = int(np.argwhere(wrong)[0][0]) if received.shape == expected.shape else 0
        raise ParityError(
            f"The exported 'serving_default' output 'predicted' does not mark the labels whose "
            f"score is >= the threshold {threshold:g}. Expected {expected[row].tolist()} "
            f"(scores {scores[row].tolist()}, labels {list(labels)}). Received: "
            f"{received.tolist()[row] if received.ndim == 2 else received.tolist()} for "
            f"text={texts[row]!r}"
        )


def _check_labels(serving, classify, labels, probabilities, texts) -> None:
    _check_classes(serving, classify, labels)
    label_id = serving["label_id"].numpy()
    names = serving["label"].numpy()
    for row, (index, name) in enumerate(zip(label_id, names)):
        if not 0 <= index < len(labels) or name.decode("utf-8") != labels[index]:
            raise ParityError(
                f"The exported 'serving_default' outputs 'label' and 'label_id' disagree. "
                f"Expected label == labels[label_id]. Received: label_id={index}, "
                f"label={name!r} for text={texts[row]!r}"
            )
        if probabilities[row, index] < probabilities[row].max() - TOLERANCE:
            raise ParityError(
                f"The exported 'serving_default' output 'label_id' is not the most probable "
                f"class. Expected {int(probabilities[row].argmax())}. Received: {index} for "
                f"text={texts[row]!r}"
            )


def _difference(signature: str, output: str, received, expected: np.ndarray):
    received = np.asarray(received)
    if received.shape != expected.shape:
        raise ParityError(
            f"The exported {signature!r} output {output!r} has the wrong shape. Expected "
            f"{expected.shape}. Received: {received.shape}"
        )
    difference = np.abs(received - expected)
    per_row = difference.reshape(len(difference), -1).max(axis=-1)
    row = int(per_row.argmax())
    return float(per_row[row]), signature, output, row


def _examples(texts: Sequence[str], pairs: Sequence[str] | None) -> list[bytes]:
    examples = []
    for i, text in enumerate(texts):
        feature = {TEXT: _bytes_feature(text)}
        if pairs is not None:
            feature[TEXT_PAIR] = _bytes_feature(pairs[i])
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        examples.append(example.SerializeToString())
    return examples


def _bytes_feature(value: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
