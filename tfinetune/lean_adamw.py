"""AdamW with one fused pass per dense variable and row-wise updates of embedding tables."""

from __future__ import annotations

from tfinetune import _environment  # noqa: F401

import tensorflow as tf
import tf_keras


class LeanAdamW(tf_keras.optimizers.AdamW):
    """`tf_keras.optimizers.AdamW` with a cheaper step on CPU; same hyper-parameters and state.

    Keras' AdamW makes several passes over every variable per step (weight decay, first and
    second moments, the update), and it updates the whole of an embedding table every step
    although only the rows of the batch's tokens have a gradient (an `IndexedSlices`). For a
    BERT-family model the word-embedding table is about half of the parameters, so on a CPU
    the optimizer took a fifth of each fine-tuning step. This optimizer:

    - applies weight decay and the Adam update of each dense variable of at least
      `fuse_min_elements` values in one XLA-compiled function (one fused pass; the shapes are
      the variables', so it compiles once per variable, on the first step, whatever the batch
      shapes). Smaller variables (biases, LayerNorm, small models' weights) take Keras' path:
      for them a compilation costs more than it saves;
    - with `lazy_embeddings=True` (the default), updates only the rows of an embedding table
      that the batch touched — moments, weight decay and value, as `tfa.optimizers.LazyAdam`
      and PyTorch's `SparseAdam` do. Rows of tokens that are not in a batch keep their moments
      and values until a batch uses them. With `lazy_embeddings=False` sparse gradients take
      Keras' dense AdamW path, unchanged.

    Its variables (iterations, moments) are those of `AdamW`, so checkpoints are
    interchangeable.
    """

    def __init__(self, *args, lazy_embeddings: bool = True, fuse_min_elements: int = 65536,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_embeddings = lazy_embeddings
        self.fuse_min_elements = fuse_min_elements
        # tf_keras turns XLA off without a GPU; the fused per-variable update is what we want.
        self.jit_compile = True

    def _apply_weight_decay(self, variables) -> None:
        # Decay is applied inside `update_step`, fused with the Adam update.
        return

    def _update_step_xla(self, gradient, variable, key):
        if isinstance(gradient, tf.IndexedSlices):
            # Row updates: scatter ops, whose output size depends on the batch, stay out of XLA.
            return self._update_step(gradient, variable)
        if variable.shape.num_elements() < self.fuse_min_elements:
            return self._update_step(gradient, variable)
        return self._fused_update_step(gradient, variable, key)

    @tf.function(jit_compile=True)
    def _fused_update_step(self, gradient, variable, key):
        # `key` makes each variable its own trace (see Keras' `_update_step_xla`).
        return self._update_step(gradient, variable)

    def update_step(self, gradient, variable) -> None:
        if isinstance(gradient, tf.IndexedSlices) and self.lazy_embeddings:
            self._update_rows(gradient, variable)
            return
        if self.weight_decay is not None and self._use_weight_decay(variable):
            lr = tf.cast(self.learning_rate, variable.dtype)
            variable.assign_sub(variable * tf.cast(self.weight_decay, variable.dtype) * lr)
        super().update_step(gradient, variable)

    def _update_rows(self, gradient: tf.IndexedSlices, variable) -> None:
        """Adam on the rows in `gradient.indices` only (Keras has de-duplicated them)."""
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, local_step)) / (1 - tf.pow(beta_1, local_step))
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        rows = gradient.indices
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * gradient.values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(gradient.values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        values = tf.gather(variable, rows)
        if self.weight_decay is not None and self._use_weight_decay(variable):
            values -= values * tf.cast(self.weight_decay, dtype) * lr
        values -= m_rows * alpha / (tf.sqrt(v_rows) + self.epsilon)
        variable.scatter_update(tf.IndexedSlices(values, rows))

    def get_config(self) -> dict:
        config = super().get_config()
        config["lazy_embeddings"] = self.lazy_embeddings
        config["fuse_min_elements"] = self.fuse_min_elements
        return config
