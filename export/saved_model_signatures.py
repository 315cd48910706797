"""Post-save edits of a SavedModel's signature definitions.

TF2's `tf.saved_model.save` stamps every signature with the method name
`tensorflow/serving/predict`. TF Serving's Classify API (and its
`--enable_signature_method_name_check`) wants `tensorflow/serving/classify` on a classification
signature, and its Regress API `tensorflow/serving/regress` on a regression signature, so the
method name is rewritten in `saved_model.pb` after saving.
"""

from __future__ import annotations

import logging
from pathlib import Path

from export import _environment  # noqa: F401  (must run before TF imports)

from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

logger = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"
PREDICT_METHOD_NAME = "tensorflow/serving/predict"
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
REGRESS_METHOD_NAME = "tensorflow/serving/regress"


def read_saved_model(export_dir: str | Path) -> saved_model_pb2.SavedModel:
    """Parses `export_dir/saved_model.pb`."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(export_dir) / SAVED_MODEL_FILE).read_bytes())
    return saved_model


def set_method_name(export_dir: str | Path, signature_name: str, method_name: str) -> None:
    """Sets one signature's `method_name` in every meta graph of the SavedModel.

    Args:
        export_dir: The SavedModel directory.
        signature_name: The signature to edit, e.g. `"classify"`.
        method_name: The new method name, e.g. `CLASSIFY_METHOD_NAME`.

    Raises:
        KeyError: No meta graph has that signature.
    """
    path = Path(export_dir) / SAVED_MODEL_FILE
    saved_model = read_saved_model(export_dir)
    found = False
    for meta_graph in saved_model.meta_graphs:
        if signature_name in meta_graph.signature_def:
            meta_graph.signature_def[signature_name].method_name = method_name
            found = True
    if not found:
        raise KeyError(f"No signature named {signature_name!r} in {path}")
    path.write_bytes(saved_model.SerializeToString(deterministic=True))
    _rewrite_fingerprint(export_dir)


def _rewrite_fingerprint(export_dir: str | Path) -> None:
    """Recomputes `fingerprint.pb`, whose checksum covers `saved_model.pb`."""
    try:
        from tensorflow.python.saved_model import fingerprinting_utils
    except ImportError:  # pragma: no cover - private TF module moved
        logger.debug("Cannot import fingerprinting_utils; fingerprint.pb left as written")
        return
    try:
        fingerprinting_utils.write_fingerprint(str(export_dir))
    except (ValueError, AttributeError) as error:  # pragma: no cover - private TF API changed
        logger.debug("Could not rewrite fingerprint.pb: %s", error)
