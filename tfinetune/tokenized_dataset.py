"""Tokenise once, then batch with dynamic per-batch padding in `tf.data`.

Training batches can be grouped by length (`length_window`): SST-2-like data padded per random
batch carries ~3x its real tokens, length-grouped batches ~1.0x, and the model's cost is per padded
token (see `benchmarks/fit_throughput.py`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tfinetune import _environment  # noqa: F401
import tensorflow as tf

#: `length_window` of training datasets: length-sorted windows of 50 batches, as transformers'
#: `LengthGroupedSampler` mega-batches (measured in `benchmarks/fit_throughput.py`).
TRAIN_LENGTH_WINDOW = 50
#: `length_granularity` of training datasets: lengths within a 4-token step stay in shuffled order,
#: so a length that tracks the label (e.g. "3 words = no label, 5 = both") still mixes in a batch.
TRAIN_LENGTH_GRANULARITY = 4


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
    length_window: int = 0,
    length_granularity: int = 1,
    pad_to_multiple_of: int = 1,
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
        length_window: With `shuffle`, group examples of similar length: after the shuffle, sort
            each window of `length_window` batches by length (stable), cut it into batches and
            shuffle the batches of the epoch (with `seed`). Every example still comes exactly
            once per epoch, the number of batches is unchanged (`ceil(rows / batch_size)`), and
            the order is a function of the seed and epoch only. 0 or 1: plain shuffled batches.
        length_granularity: With `length_window`, sort by `length // length_granularity`:
            rows whose lengths differ within a step keep their shuffled order.
        pad_to_multiple_of: Pad each batch's length up to a multiple of this (bounds the number
            of distinct shapes, e.g. for XLA); 1 pads to the longest row only.
    """
    if length_window < 0 or length_granularity < 1 or pad_to_multiple_of < 1:
        raise ValueError(
            "length_window must be >= 0, length_granularity and pad_to_multiple_of >= 1. "
            f"Received: length_window={length_window}, length_granularity={length_granularity}, "
            f"pad_to_multiple_of={pad_to_multiple_of}")
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
        shape = None
        if pad_to_multiple_of > 1:
            ids = batch["input_ids"]
            multiple = tf.constant(pad_to_multiple_of, ids.row_splits.dtype)
            length = (tf.reduce_max(ids.row_lengths()) + multiple - 1) // multiple * multiple
            shape = tf.stack([ids.nrows(), length])
        dense = {key: batch[key].to_tensor(default_value=pad_token_id if key == "input_ids" else 0,
                                           shape=shape)
                 for key in batch}
        return dense if labels is None else (dense, labels)

    if shuffle and length_window > 1:
        dataset = _length_grouped_batches(dataset, batch_size, length_window,
                                          length_granularity, count, seed)
    else:
        dataset = dataset.ragged_batch(batch_size)
    if targets is None:
        return dataset.map(pad).prefetch(tf.data.AUTOTUNE)
    return dataset.map(lambda batch, labels: pad(batch, labels)).prefetch(tf.data.AUTOTUNE)


def _length_grouped_batches(dataset: tf.data.Dataset, batch_size: int, length_window: int,
                            granularity: int, count: int, seed: int | None) -> tf.data.Dataset:
    """Ragged batches of similar-length examples from an (already shuffled) example dataset."""

    def sort_by_length(*window):
        features = window[0]
        lengths = features["input_ids"].row_lengths()
        order = tf.argsort(lengths // tf.constant(granularity, lengths.dtype), stable=True)
        sorted_window = tf.nest.map_structure(lambda rows: tf.gather(rows, order), window)
        return sorted_window if len(window) > 1 else sorted_window[0]

    # Windows are whole numbers of batches, so no batch straddles two windows.
    dataset = (dataset.ragged_batch(batch_size * length_window)
               .map(sort_by_length)
               .unbatch()
               .ragged_batch(batch_size))
    batches = -(-count // batch_size)
    # `unbatch` hides the number of batches; Keras needs it (progress, backups, resume).
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.shuffle(batches, seed=None if seed is None else seed + 1,
                           reshuffle_each_iteration=True)
