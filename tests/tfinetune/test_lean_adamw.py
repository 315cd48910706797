"""LeanAdamW: Keras AdamW's result on dense variables, lazy Adam on embedding rows."""

from __future__ import annotations

import numpy as np
import pytest

from tfinetune import _environment  # noqa: F401
import tensorflow as tf
import tf_keras

from tfinetune.lean_adamw import LeanAdamW

HYPER = dict(learning_rate=0.01, weight_decay=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
ROWS, WIDTH = 10, 3
# Embedding rows each step's batch touches (row 2 twice in step 1: its gradients add up).
STEP_ROWS = ([2, 5, 2], [5, 7], [1, 2])


def _variables(seed: int = 0):
    rng = np.random.default_rng(seed)
    table = tf.Variable(rng.normal(size=(ROWS, WIDTH)).astype("float32"), name="embeddings")
    kernel = tf.Variable(rng.normal(size=(WIDTH, 2)).astype("float32"), name="kernel")
    bias = tf.Variable(rng.normal(size=(2,)).astype("float32"), name="bias")
    return table, kernel, bias


def _gradients(step: int):
    rng = np.random.default_rng(100 + step)
    rows = STEP_ROWS[step]
    sparse = tf.IndexedSlices(tf.constant(rng.normal(size=(len(rows), WIDTH)), tf.float32),
                              tf.constant(rows, tf.int64), tf.constant([ROWS, WIDTH], tf.int64))
    kernel = tf.constant(rng.normal(size=(WIDTH, 2)), tf.float32)
    bias = tf.constant(rng.normal(size=(2,)), tf.float32)
    return sparse, kernel, bias


def _train(optimizer):
    variables = _variables()
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    apply = tf.function(lambda grads: optimizer.apply_gradients(zip(grads, variables)))
    for step in range(len(STEP_ROWS)):
        apply(_gradients(step))
    return [variable.numpy() for variable in variables], optimizer


def _lazy_reference():
    """Lazy AdamW in numpy: only the rows a step touches change (moments, decay, value)."""
    table, kernel, bias = (v.numpy().astype("float64") for v in _variables())
    m, v = np.zeros_like(table), np.zeros_like(table)
    lr, wd, b1, b2, eps = (HYPER[k] for k in
                           ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon"))
    for step in range(len(STEP_ROWS)):
        sparse = _gradients(step)[0]
        dense = np.zeros_like(table)
        np.add.at(dense, sparse.indices.numpy(), sparse.values.numpy())
        rows = sorted(set(STEP_ROWS[step]))
        t = step + 1
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m[rows] = b1 * m[rows] + (1 - b1) * dense[rows]
        v[rows] = b2 * v[rows] + (1 - b2) * dense[rows] ** 2
        table[rows] -= table[rows] * wd * lr
        table[rows] -= alpha * m[rows] / (np.sqrt(v[rows]) + eps)
    return table


@pytest.mark.parametrize("fuse_min_elements", [0, 65536], ids=["fused", "small-unfused"])
def test_dense_variables_match_keras_adamw(fuse_min_elements):
    (_, kernel, bias), _ = _train(LeanAdamW(fuse_min_elements=fuse_min_elements, **HYPER))
    (_, keras_kernel, keras_bias), _ = _train(tf_keras.optimizers.AdamW(**HYPER))
    np.testing.assert_allclose(kernel, keras_kernel, rtol=1e-5, atol=1e-6)
    # The bias is excluded from weight decay in both.
    np.testing.assert_allclose(bias, keras_bias, rtol=1e-5, atol=1e-6)
    assert not np.allclose(kernel, _variables()[1].numpy())


def test_dense_embedding_updates_match_keras_adamw():
    (table, _, _), _ = _train(LeanAdamW(lazy_embeddings=False, fuse_min_elements=0, **HYPER))
    (keras_table, _, _), _ = _train(tf_keras.optimizers.AdamW(**HYPER))
    np.testing.assert_allclose(table, keras_table, rtol=1e-5, atol=1e-6)


def test_lazy_embedding_updates_touch_only_the_batch_rows():
    (table, _, _), optimizer = _train(LeanAdamW(**HYPER))
    np.testing.assert_allclose(table, _lazy_reference(), rtol=1e-5, atol=1e-6)
    untouched = sorted(set(range(ROWS)) - {row for rows in STEP_ROWS for row in rows})
    np.testing.assert_array_equal(table[untouched], _variables()[0].numpy()[untouched])
    momentum = optimizer._momentums[0].numpy()
    assert momentum.shape == (ROWS, WIDTH)
    assert not momentum[untouched].any() and momentum[[1, 2, 5, 7]].all()
    # Keras' AdamW decays and moves every row (moments carry over): the two differ.
    (keras_table, _, _), _ = _train(tf_keras.optimizers.AdamW(**HYPER))
    assert not np.allclose(keras_table[untouched], _variables()[0].numpy()[untouched])


def test_state_is_keras_adamw_state():
    """Same variables as AdamW, so backups written with either restore into the other."""
    _, lean = _train(LeanAdamW(**HYPER))
    _, keras = _train(tf_keras.optimizers.AdamW(**HYPER))
    assert [v.shape for v in lean.variables] == [v.shape for v in keras.variables]
    assert int(lean.iterations.numpy()) == len(STEP_ROWS)
    restored = LeanAdamW.from_config(lean.get_config())
    assert restored.lazy_embeddings is True and restored.fuse_min_elements == 65536


@pytest.mark.parametrize("lazy", [True, False])
def test_fits_a_keras_model_with_an_embedding(lazy):
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Embedding(20, 8),
                                 tf_keras.layers.GlobalAveragePooling1D(),
                                 tf_keras.layers.Dense(2)])
    tokens = np.random.default_rng(0).integers(0, 20, size=(64, 5))
    labels = ((tokens < 10).sum(axis=1) >= 3).astype("int32")  # majority of "low" tokens
    model.compile(optimizer=LeanAdamW(learning_rate=0.05, lazy_embeddings=lazy),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(tokens, labels, epochs=30, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
