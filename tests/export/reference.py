"""Helpers: what the in-memory Hugging Face model says, and how to build tf.Example inputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_LENGTH = 32  # max_length in the fixtures' fit_config.yaml
TOLERANCE = 1e-4


def encode(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None,
           max_length: int = MAX_LENGTH) -> dict[str, np.ndarray]:
    """The Hugging Face encoding the model was fine-tuned with."""
    return dict(tokenizer(list(texts), None if pairs is None else list(pairs), padding=True,
                          truncation=True, max_length=max_length, return_tensors="np"))


def reference_logits(model, tokenizer, texts, pairs=None, max_length=MAX_LENGTH) -> np.ndarray:
    import tensorflow as tf

    encoded = {k: tf.constant(v, tf.int32)
               for k, v in encode(tokenizer, texts, pairs, max_length).items()}
    return model(**encoded, training=False).logits.numpy()


def reference_probabilities(model, tokenizer, texts, pairs=None,
                            max_length=MAX_LENGTH) -> np.ndarray:
    import tensorflow as tf

    logits = reference_logits(model, tokenizer, texts, pairs, max_length)
    return tf.nn.softmax(logits, axis=-1).numpy()


def serialized_examples(texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[bytes]:
    """tf.Example protos with a `text` (and `text_pair`) bytes feature, serialized."""
    import tensorflow as tf

    examples = []
    for i, text in enumerate(texts):
        feature = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[text.encode("utf-8")]))}
        if pairs is not None:
            feature["text_pair"] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[pairs[i].encode("utf-8")]))
        examples.append(tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString())
    return examples


def decode(strings) -> list:
    """bytes (nested) → str (nested)."""
    if isinstance(strings, bytes):
        return strings.decode("utf-8")
    return [decode(s) for s in strings]
