"""`make_dataset`: length-grouped training batches and bucketed padding on hand-made rows."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfinetune.tokenized_dataset import make_dataset

PAD = 7


def rows_of_lengths(lengths):
    """Row i is [100 + i, 1, 1, ...] (its first id names it), `lengths[i]` ids long."""
    input_ids = [[100 + i] + [1] * (length - 1) for i, length in enumerate(lengths)]
    return {"input_ids": input_ids, "attention_mask": [[1] * len(row) for row in input_ids]}


def epochs(dataset, count):
    """`count` passes over `dataset`, each a list of (input_ids, attention_mask, labels)."""
    return [[(x["input_ids"].numpy(), x["attention_mask"].numpy(), y.numpy())
             for x, y in dataset] for _ in range(count)]


LENGTHS = np.random.default_rng(0).integers(1, 40, size=103).tolist()


def grouped(seed=3, **options):
    return make_dataset(rows_of_lengths(LENGTHS), list(range(len(LENGTHS))), batch_size=8,
                        pad_token_id=PAD, shuffle=True, seed=seed, length_window=4, **options)


STEPS = math.ceil(len(LENGTHS) / 8)


def repeated_epochs(dataset, count, steps=STEPS):
    """The first `count` epochs of a `repeat=True` dataset (`steps` batches each)."""
    batches = iter(dataset)
    return [[(x["input_ids"].numpy(), x["attention_mask"].numpy(), y.numpy())
             for x, y in (next(batches) for _ in range(steps))] for _ in range(count)]


def test_length_grouping_yields_every_row_once_per_epoch_with_its_label_and_mask():
    dataset = grouped()
    # Keras reads the number of steps from the cardinality (progress, backups, resume).
    assert int(dataset.cardinality()) == math.ceil(103 / 8)
    assert int(grouped(repeat=True).cardinality()) == tf.data.INFINITE_CARDINALITY
    for batches in epochs(dataset, 1) + repeated_epochs(grouped(repeat=True), 3)[1:]:
        assert len(batches) == math.ceil(103 / 8)
        labels = np.concatenate([y for _, _, y in batches])
        assert sorted(labels.tolist()) == list(range(103))
        for ids, mask, y in batches:
            assert (ids[:, 0] - 100 == y).all()
            assert (mask.sum(axis=1) == np.asarray(LENGTHS)[y]).all()
            assert (ids[mask == 0] == PAD).all()


def labels_of(epochs_):
    return [[y.tolist() for _, _, y in epoch] for epoch in epochs_]


@pytest.mark.parametrize("window", [4, 0])
def test_each_epochs_order_is_a_function_of_seed_and_epoch_only(window):
    def dataset(seed=3):
        return make_dataset(rows_of_lengths(LENGTHS), list(range(len(LENGTHS))), batch_size=8,
                            shuffle=True, seed=seed, length_window=window, repeat=True)

    order = labels_of(repeated_epochs(dataset(), 3))
    assert order == labels_of(repeated_epochs(dataset(), 3))
    assert order[0] != order[1] != order[2]
    assert labels_of(repeated_epochs(dataset(seed=4), 3)) != order
    # A fresh dataset that skips the batches of 1 epoch and 5 steps (a run resumed in a new
    # process) continues exactly where the first one was.
    resumed = dataset().skip(13 + 5)
    assert labels_of(repeated_epochs(resumed, 1, steps=13 + 8))[0] == order[1][5:] + order[2]
    # Without `repeat`, every iteration is epoch 0.
    once = make_dataset(rows_of_lengths(LENGTHS), list(range(len(LENGTHS))), batch_size=8,
                        shuffle=True, seed=3, length_window=window)
    assert labels_of(epochs(once, 2)) == [order[0], order[0]]


def test_a_window_spanning_the_data_makes_batches_of_consecutive_lengths():
    # Lengths 1..64 once each, 8 batches of 8, one window of 8 batches: after sorting, batch k
    # holds exactly the lengths 8k+1..8k+8 (in a shuffled batch order), so padding is minimal.
    lengths = list(range(1, 65))
    np.random.default_rng(1).shuffle(lengths)
    dataset = make_dataset(rows_of_lengths(lengths), list(range(64)), batch_size=8,
                           shuffle=True, seed=0, length_window=8, length_granularity=1)
    batches = epochs(dataset, 1)[0]
    groups = sorted(sorted(np.asarray(lengths)[y].tolist()) for _, _, y in batches)
    assert groups == [list(range(8 * k + 1, 8 * k + 9)) for k in range(8)]
    assert sum(ids.size for ids, _, _ in batches) == sum(8 * (8 * k + 8) for k in range(8))
    # The batch order is shuffled, not ascending length.
    assert [ids.shape[1] for ids, _, _ in batches] != sorted(ids.shape[1] for ids, _, _ in batches)


def test_lengths_within_a_granularity_step_stay_mixed():
    # 3 lengths (5, 6, 7: one 4-token step) each tied to a label, as when the label adds words:
    # sorted exactly, every batch would hold one label; with granularity 4 batches stay mixed.
    lengths = [5, 6, 7] * 16

    def labels_per_batch(granularity):
        dataset = make_dataset(rows_of_lengths(lengths), [n - 5 for n in lengths], batch_size=8,
                               shuffle=True, seed=0, length_window=6,
                               length_granularity=granularity)
        return [len(set(y.tolist())) for _, _, y in epochs(dataset, 1)[0]]

    assert set(labels_per_batch(1)) == {1}
    assert max(labels_per_batch(4)) > 1


def test_length_grouping_pads_less_than_random_batches():
    def padded(window):
        dataset = make_dataset(rows_of_lengths(LENGTHS), list(range(103)), batch_size=8,
                               shuffle=True, seed=3, length_window=window)
        return sum(ids.size for ids, _, _ in epochs(dataset, 1)[0])

    assert padded(13) < padded(0)
    assert padded(13) < 1.1 * sum(LENGTHS)


def test_pad_to_multiple_of_rounds_each_batch_length_up():
    dataset = make_dataset(rows_of_lengths([3, 9, 16, 17]), [0, 1, 2, 3], batch_size=2,
                           pad_token_id=PAD, pad_to_multiple_of=8)
    (ids_a, _, _), (ids_b, mask_b, _) = epochs(dataset, 1)[0]
    assert ids_a.shape == (2, 16) and ids_b.shape == (2, 24)
    assert ids_a[0].tolist() == [100, 1, 1] + [PAD] * 13
    assert mask_b[1].tolist() == [1] * 17 + [0] * 7


def test_unlabelled_rows_can_be_length_grouped():
    dataset = make_dataset(rows_of_lengths(LENGTHS), None, batch_size=8, shuffle=True, seed=3,
                           length_window=4)
    names = np.concatenate([batch["input_ids"].numpy()[:, 0] for batch in dataset]) - 100
    assert sorted(names.tolist()) == list(range(103))


def test_invalid_grouping_options_are_refused():
    with pytest.raises(ValueError, match=r"pad_to_multiple_of >= 1.*pad_to_multiple_of=0"):
        make_dataset(rows_of_lengths([2]), [0], batch_size=1, pad_to_multiple_of=0)
    with pytest.raises(ValueError, match=r"length_granularity=0"):
        make_dataset(rows_of_lengths([2]), [0], batch_size=1, length_granularity=0)
