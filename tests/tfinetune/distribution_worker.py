"""Runs `tfinetune.fit` in a fresh process for the distribution tests (not a test module).

    python -m tests.tfinetune.distribution_worker SPEC.json

SPEC is a JSON object:
    runs: a list of {"config": FitConfig fields, "weights": path of an .npz to write}; each run's
        weights are dumped when training ends (before `fit` reloads the best epoch's weights),
        outside the run directory, by name.
    logical_cpus: split the CPU into this many logical devices before TensorFlow starts (0: no).
    fuse_min_elements: LeanAdamW's `fuse_min_elements` (so that the XLA-fused update runs on the
        tiny model's variables), or null for the default.
"""

from __future__ import annotations

import json
import logging
import re
import sys


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as file:
        spec = json.load(file)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from tfinetune import _environment  # noqa: F401
    import numpy as np
    import tensorflow as tf
    import tf_keras

    if spec.get("logical_cpus"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * spec["logical_cpus"])
    if spec.get("fuse_min_elements") is not None:
        from tfinetune import lean_adamw

        original = lean_adamw.LeanAdamW

        class SmallFuse(original):
            def __init__(self, *args, **kwargs):
                kwargs.setdefault("fuse_min_elements", spec["fuse_min_elements"])
                super().__init__(*args, **kwargs)

        lean_adamw.LeanAdamW = SmallFuse

    import tfinetune

    class DumpWeights(tf_keras.callbacks.Callback):
        """Writes the trained weights (by name, without the model instance's prefix) and the
        optimizer step when training ends."""

        def __init__(self, path):
            super().__init__()
            self.path = path

        def on_train_end(self, logs=None):
            values = {re.sub(r"^[^/]+/", "", weight.name): weight.numpy()
                      for weight in self.model.weights}
            values["optimizer_iterations"] = np.array(int(self.model.optimizer.iterations.numpy()))
            np.savez(self.path, **values)

    for run in spec["runs"]:
        result = tfinetune.fit(tfinetune.FitConfig(**run["config"]),
                               callbacks=[DumpWeights(run["weights"])])
        print(json.dumps({"chief": result.chief, "history": result.history}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
