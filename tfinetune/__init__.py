"""tfinetune: fine-tune Hugging Face TF transformers with Keras, export and serve them.

The public entry points are imported lazily so that `tfinetune --help` does not import
TensorFlow:

    import tfinetune
    result = tfinetune.fit(tfinetune.FitConfig(model="...", train="train.csv", output_dir="run"))
"""

from tfinetune import _environment  # noqa: F401  (must run before TF/transformers imports)

__version__ = "0.1.0"

_LAZY = {
    "FitConfig": ("tfinetune.fit_config", "FitConfig"),
    "fit": ("tfinetune.trainer", "fit"),
    "FitResult": ("tfinetune.trainer", "FitResult"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'tfinetune' has no attribute {name!r}")


__all__ = ["FitConfig", "FitResult", "fit", "__version__"]
