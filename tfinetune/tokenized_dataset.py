"""Tokenise once, then batch with dynamic per-batch padding in `tf.data`."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tfinetune import _environment  # noqa: F401
import tensorflow as tf


def tokenize(tokenizer, texts: Sequence[str], text_pairs: Sequence[str] | None,
             max_length: int) -> dict[str, list[list[int]]]:
    """Token ids (unpadded, truncated to `max_length`) for every example, in order."""
    encoded = tokenizer(
        list(texts),
        list(text_pairs) if text_pairs is not None else None,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=True,
    )
    keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded]
    return {key: encoded[key] for key in keys}


def make_dataset(
    features: dict[str, list[list[int]]],
    targets: Sequence | None,
    *,
    batch_size: int,
    pad_token_id: int = 0,
    shuffle: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(features, labels)` batches padded to each batch's longest row.

    Args:
        features: Per-example token lists, as returned by `tokenize`.
        targets: Per example a class id, a 0/1 row (multi-label) or a float (regression);
            None for an unlabelled dataset.
        batch_size: Examples per batch (the last batch may be smaller).
        pad_token_id: Padding value of `input_ids` (masks and segment ids pad with 0).
        shuffle: Reshuffle the examples every epoch with `seed`.
        seed: Shuffle seed.
    """
    ragged = {}
    for key, rows in features.items():
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter((token for row in rows for token in row), dtype=np.int32,
                           count=int(lengths.sum()))
        ragged[key] = tf.RaggedTensor.from_row_lengths(flat, lengths)
    count = len(next(iter(features.values())))
    if targets is not None:
        targets = np.asarray(targets)
        targets = targets.astype(np.float32 if targets.dtype.kind == "f" else np.int32)
    elements = ragged if targets is None else (ragged, tf.constant(targets))
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    def pad(batch, labels=None):
        dense = {key: batch[key].to_tensor(default_value=pad_token_id if key == "input_ids" else 0)
                 for key in batch}
        return dense if labels is None else (dense, labels)

    dataset = dataset.ragged_batch(batch_size)
    if targets is None:
        return dataset.map(pad).prefetch(tf.data.AUTOTUNE)
    return dataset.map(lambda batch, labels: pad(batch, labels)).prefetch(tf.data.AUTOTUNE)
