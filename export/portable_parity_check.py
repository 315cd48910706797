"""Checks that a portable export (token ids in, see `PortableServingModule`), tokenised the way
its clients do, reproduces the in-memory Hugging Face model and tokenizer."""

from __future__ import annotations

import json
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
from export.classifier_serving_module import SERVING_DEFAULT  # noqa: E402
from export.classifier_serving_module import SINGLE_LABEL  # noqa: E402
from export.classifier_serving_module import TOKEN_INPUTS  # noqa: E402
from export.classifier_serving_module import TOKENS  # noqa: E402
from export.errors import ParityError  # noqa: E402
from export.parity_check import TOLERANCE  # noqa: E402
from export.parity_check import _check_classes  # noqa: E402
from export.parity_check import _check_labels  # noqa: E402
from export.parity_check import _check_predicted  # noqa: E402
from export.parity_check import _difference  # noqa: E402

logger = logging.getLogger(__name__)


def check_portable_parity(
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
    """Compares a written portable export with the in-memory model on `texts`.

    Compared: the ids that `assets.extra/tokenizer/tokenizer.json`, loaded with the `tokenizers`
    library alone and set up as `serving.ClientTokenizer` sets it up (truncation `longest_first`
    to `max_length`, padding to the longest), gives with the Hugging Face tokenizer's (exactly);
    then, on those ids, every signature's outputs with what the in-memory logits give (as
    `check_parity` does for the text export).

    Returns:
        The largest absolute difference seen.

    Raises:
        ParityError: Token ids differ, or an output differs by more than `tolerance`.
    """
    export_dir = Path(export_dir)
    texts = list(texts)
    pairs = None if text_pairs is None else list(text_pairs)
    encoded = tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_length,
                        return_tensors="np")
    _check_client_tokens(export_dir, encoded, tokenizer, texts, pairs, max_length)

    inputs = {name: tf.constant(encoded.get(name, np.zeros_like(encoded["input_ids"])),
                                tf.int32) for name in TOKEN_INPUTS}
    model_inputs = {name: inputs[name] for name in encoded}
    logits = model(**model_inputs, training=False).logits.numpy().astype(np.float32)

    from export.portable_export import token_examples

    loaded = tf.saved_model.load(str(export_dir))
    serving = loaded.signatures[SERVING_DEFAULT](**inputs)
    tokens = loaded.signatures[TOKENS](**inputs)
    examples = tf.constant([example.SerializeToString()
                            for example in token_examples(tokenizer, texts, pairs, max_length)])
    differences = [_difference(TOKENS, "logits", tokens["logits"], logits)]
    if problem_type == REGRESSION:
        value = logits[:, 0]
        regress = loaded.signatures[REGRESS](inputs=examples)
        differences += [_difference(SERVING_DEFAULT, "value", serving["value"], value),
                        _difference(TOKENS, "value", tokens["value"], value),
                        _difference(REGRESS, "outputs", regress["outputs"], value)]
    else:
        classify = loaded.signatures[CLASSIFY](inputs=examples)
        if problem_type == MULTI_LABEL:
            expected, name = tf.math.sigmoid(logits).numpy(), "scores"
        else:
            expected, name = tf.nn.softmax(logits, axis=-1).numpy(), "probabilities"
        differences += [_difference(SERVING_DEFAULT, name, serving[name], expected),
                        _difference(TOKENS, name, tokens[name], expected),
                        _difference(CLASSIFY, "scores", classify["scores"], expected)]
    difference, signature, output, row = max(differences, key=lambda d: d[0])
    if not difference <= tolerance:
        raise ParityError(
            f"The portable SavedModel does not reproduce the in-memory model. Expected every "
            f"output within {tolerance:g} of the in-memory model. Received: max |difference| "
            f"{difference:.3g} in {signature!r} output {output!r} for text={texts[row]!r}")
    if problem_type == MULTI_LABEL:
        _check_classes(serving, classify, labels)
        _check_predicted(serving, expected, threshold, tolerance, labels, texts)
    elif problem_type != REGRESSION:
        _check_labels(serving, classify, labels, expected, texts)
    logger.info("Portable parity check passed on %d texts: max |difference| %.3g (tolerance %g)",
                len(texts), difference, tolerance)
    return float(difference)


def _check_client_tokens(export_dir: Path, encoded: Any, tokenizer: Any, texts: list[str],
                         pairs: list[str] | None, max_length: int) -> None:
    """The written tokenizer.json, used as clients use it, must give the run tokenizer's ids."""
    from tokenizers import Tokenizer

    from export.exporter import ASSETS_EXTRA
    from export.portable_export import CLIENT_TOKENIZER_FILE

    path = export_dir / ASSETS_EXTRA / CLIENT_TOKENIZER_FILE
    client = Tokenizer.from_file(str(path))
    client.enable_truncation(max_length, strategy="longest_first", direction="right")
    client.enable_padding(direction="right", pad_id=tokenizer.pad_token_id, pad_type_id=0,
                          pad_token=tokenizer.pad_token)
    batch = list(zip(texts, pairs)) if pairs is not None else texts
    encodings = client.encode_batch(batch, add_special_tokens=True)
    received = {"input_ids": [e.ids for e in encodings],
                "attention_mask": [e.attention_mask for e in encodings],
                "token_type_ids": [e.type_ids for e in encodings]}
    for name in TOKEN_INPUTS:
        if name not in encoded:
            continue
        expected = np.asarray(encoded[name])
        got = np.asarray(received[name], dtype=expected.dtype)
        if expected.shape == got.shape and np.array_equal(expected, got):
            continue
        row = next((i for i in range(min(len(expected), len(got)))
                    if expected[i].tolist() != got[i].tolist()), 0)
        pair = "" if pairs is None else f", text_pair={pairs[row]!r}"
        raise ParityError(
            f"Clients would tokenise differently from the model's tokenizer. Expected {name} "
            f"{json.dumps(expected[row].tolist())} (the run's {type(tokenizer).__name__}). "
            f"Received: {json.dumps(got[row].tolist() if row < len(got) else None)} from {path} "
            f"for text={texts[row]!r}{pair}")
