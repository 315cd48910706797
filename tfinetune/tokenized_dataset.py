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
    repeat: bool = False,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(features, labels)` batches padded to each batch's longest row.

    Args:
        features: Per-example token lists, as returned by `tokenize`.
        targets: Per example a class id, a 0/1 row (multi-label) or a float (regression);
            None for an unlabelled dataset.
        batch_size: Examples per batch (the last batch of an epoch may be smaller).
        pad_token_id: Padding value of `input_ids` (masks and segment ids pad with 0).
        shuffle: Shuffle the examples. The order of epoch `e` is a function of `(seed, e)`
            only (stateless random ops), so a training run resumed in a new process sees the
            same batches as an uninterrupted one (see `shuffled_batches`).
        seed: Shuffle seed (a random one when None).
        length_window: With `shuffle`, group examples of similar length: sort each window of
            `length_window` shuffled batches by length, cut it into batches and shuffle the
            batches of the epoch. Every example still comes exactly once per epoch and the
            number of batches is unchanged (`ceil(rows / batch_size)`). 0 or 1: plain shuffled
            batches.
        length_granularity: With `length_window`, sort by `length // length_granularity`:
            rows whose lengths differ within a step keep their shuffled order.
        pad_to_multiple_of: Pad each batch's length up to a multiple of this (bounds the number
            of distinct shapes, e.g. for XLA); 1 pads to the longest row only.
        repeat: With `shuffle`, yield epoch 0, 1, 2, ... one after the other without end (for
            `model.fit(..., steps_per_epoch=...)`; skip `k` batches to resume after `k` steps).
            Without it, one epoch (epoch 0's order on every iteration).
    """
    if length_window < 0 or length_granularity < 1 or pad_to_multiple_of < 1:
        raise ValueError(
            "length_window must be >= 0, length_granularity and pad_to_multiple_of >= 1. "
            f"Received: length_window={length_window}, length_granularity={length_granularity}, "
            f"pad_to_multiple_of={pad_to_multiple_of}")
    ragged = {}
    row_lengths = None
    for key, rows in features.items():
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter((token for row in rows for token in row), dtype=np.int32,
                           count=int(lengths.sum()))
        ragged[key] = tf.RaggedTensor.from_row_lengths(flat, lengths)
        if key == "input_ids":
            row_lengths = lengths
    count = len(next(iter(features.values())))
    if targets is not None:
        targets = np.asarray(targets)
        targets = targets.astype(np.float32 if targets.dtype.kind == "f" else np.int32)
    elements = ragged if targets is None else (ragged, tf.constant(targets))

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

    if shuffle:
        grouped = length_window > 1
        dataset = shuffled_batches(
            elements, count, batch_size=batch_size, seed=seed,
            lengths=row_lengths if grouped else None, length_window=length_window,
            length_granularity=length_granularity, repeat=repeat)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(elements).ragged_batch(batch_size)
    if targets is None:
        return dataset.map(pad).prefetch(tf.data.AUTOTUNE)
    return dataset.map(lambda batch, labels: pad(batch, labels)).prefetch(tf.data.AUTOTUNE)


def shuffled_batches(elements, count: int, *, batch_size: int, seed: int | None,
                     lengths: np.ndarray | None = None, length_window: int = 0,
                     length_granularity: int = 1, repeat: bool = False) -> tf.data.Dataset:
    """Shuffled batches of `elements` (a structure of tensors or ragged tensors of `count`
    rows each), as `ragged_batch` makes them, in an order that depends on `(seed, epoch)` only.

    Each epoch's permutation comes from stateless random ops seeded with `(seed, epoch)`: no
    random state lives in the dataset or its iterators, so batch `b` of epoch `e` is the same
    in every process, and a resumed run gets back the exact batches it was at by skipping the
    steps it had done (`dataset.skip(steps_done)` on a `repeat` dataset).

    With `lengths` (one per row) and `length_window > 1`, each window of `length_window`
    shuffled batches is sorted (stably) by `lengths // length_granularity` and cut into
    batches, and the batches of the epoch are shuffled: similar lengths share a batch (little
    padding), every row still comes once per epoch.

    Args:
        elements: What `tf.data.Dataset.from_tensor_slices` would slice.
        count: Rows in `elements`.
        batch_size: Rows per batch (the last batch of an epoch may be smaller).
        seed: Shuffle seed (a random one when None).
        lengths: Per-row lengths for length grouping, or None.
        length_window: Batches per length-sorted window (0 or 1: no grouping).
        length_granularity: Lengths within a step of this many tokens count as equal.
        repeat: Yield epochs 0, 1, 2, ... without end; else epoch 0 only (on every iteration).
    """
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    num_batches = -(-count // batch_size)
    batch_lengths = np.full(num_batches, batch_size, dtype=np.int64)
    batch_lengths[-1] = count - (num_batches - 1) * batch_size
    grouped = lengths is not None and length_window > 1
    if grouped:
        buckets = np.asarray(lengths, dtype=np.int64) // length_granularity
        top = int(buckets.max()) + 1
        bucket_of = tf.constant(buckets)
        window_of = tf.constant(np.arange(count, dtype=np.int64) // (batch_size * length_window))
        positions = tf.range(count, dtype=tf.int64)

    def epoch_batches(epoch):
        rows = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64),
                                                             2 * epoch]))
        if grouped:
            # One sort over the epoch: by window, then length bucket, then shuffled position
            # (a unique key, so the result does not depend on the sort's stability).
            key = (window_of * top + tf.gather(bucket_of, rows)) * count + positions
            rows = tf.gather(rows, tf.argsort(key))
        batches = tf.RaggedTensor.from_row_lengths(rows, batch_lengths)
        if grouped:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(num_batches, dtype=tf.int64),
                seed=tf.stack([tf.constant(seed, tf.int64), 2 * epoch + 1]))
            batches = tf.gather(batches, order)
        return tf.data.Dataset.from_tensor_slices(batches)

    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    indices = epochs.flat_map(epoch_batches)
    # Keras needs the number of batches (progress, backups, resume); flat_map hides it.
    indices = indices.apply(tf.data.experimental.assert_cardinality(
        tf.data.INFINITE_CARDINALITY if repeat else num_batches))

    def gather(rows):
        return tf.nest.map_structure(lambda values: tf.gather(values, rows), elements)

    return indices.map(gather)
