"""`gate`: a test model whose session runs wait at a gate the test opens, one token per run.

Its graph holds a FIFO queue of float "tokens". Every session run that fetches `token` takes
one token from the queue, blocking (without using a CPU) until the test releases one with the
`release` signature. That makes concurrency deterministic: a run can be held while other
requests queue up behind it, and the token each row received tells which session run computed
it (rows of one batched run share a token), and `batch_size` tells how many rows that run had.

Signatures (all TF Serving "predict" unless noted; x, tokens are float32 [-1]):

* `serving_default`: x -> `y` = 2x, `token`, `batch_size` (int32, the rows of the run).
* `release`: tokens -> `accepted` (= tokens), `size` (queue size after the enqueue). Fetching
  only `accepted` (an `output_filter`) matches no signature, so with batching it bypasses the
  batcher, as in TF Serving: the test can open the gate while the batch threads are busy.
* `matrix`: m float32 [-1, -1] -> `row_sum`, `width` (int32, columns the run saw), `token`.
* `scalar_output`: x -> `total` (a scalar: not batched along dimension 0).
* `fixed_output`: x -> `pair` (shape [2] whatever the batch).
* `odd_method`: x -> `y`, with the method name `custom/method`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_gate_model(export_dir: Path) -> Path:
    """Writes the gate model (a TF1 graph saved with SavedModelBuilder) to `export_dir`."""
    import tensorflow as tf

    v1 = tf.compat.v1
    info = v1.saved_model.utils.build_tensor_info
    build = v1.saved_model.signature_def_utils.build_signature_def
    predict = "tensorflow/serving/predict"
    graph = tf.Graph()
    with graph.as_default():
        queue = tf.queue.FIFOQueue(100000, [tf.float32], shapes=[[]], name="gate_queue")
        token = queue.dequeue(name="token_value")

        x = v1.placeholder(tf.float32, [None], name="x")
        rows = tf.shape(x)[:1]
        y = tf.multiply(2.0, x, name="y")
        x_token = tf.fill(rows, token, name="x_token")
        batch_size = tf.fill(rows, tf.shape(x)[0], name="batch_size")

        tokens = v1.placeholder(tf.float32, [None], name="tokens")
        enqueue = queue.enqueue_many([tokens])
        with tf.control_dependencies([enqueue]):
            accepted = tf.identity(tokens, name="accepted")
            size = tf.fill(tf.shape(tokens)[:1], queue.size(), name="size")

        m = v1.placeholder(tf.float32, [None, None], name="m")
        m_rows = tf.shape(m)[:1]
        row_sum = tf.reduce_sum(m, axis=1, name="row_sum")
        width = tf.fill(m_rows, tf.shape(m)[1], name="width")
        m_token = tf.fill(m_rows, token, name="m_token")

        total = tf.reduce_sum(x, name="total")
        pair = tf.add(tf.constant([1.0, 2.0]), 0.0 * total, name="pair")

        signatures = {
            "serving_default": build({"x": info(x)}, {"y": info(y), "token": info(x_token),
                                                      "batch_size": info(batch_size)}, predict),
            "release": build({"tokens": info(tokens)},
                             {"accepted": info(accepted), "size": info(size)}, predict),
            "matrix": build({"m": info(m)}, {"row_sum": info(row_sum), "width": info(width),
                                             "token": info(m_token)}, predict),
            "scalar_output": build({"x": info(x)}, {"total": info(total)}, predict),
            "fixed_output": build({"x": info(x)}, {"pair": info(pair)}, predict),
            "odd_method": build({"x": info(x)}, {"y": info(y)}, "custom/method"),
        }
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
            builder.add_meta_graph_and_variables(session, ["serve"],
                                                 signature_def_map=signatures)
            builder.save()
    return export_dir


def release_request(name: str, tokens):
    """A Predict on `release` that fetches only `accepted` (bypasses the batcher)."""
    from tests.serving.models import predict_request

    return predict_request(name, {"tokens": np.asarray(tokens, np.float32)},
                           signature="release", output_filter=["accepted"])
