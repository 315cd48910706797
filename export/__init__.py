"""export: SavedModel export of fine-tuned text classifiers, tokenizer included, for TF Serving.

The public entry points are imported lazily, so `import export` does not import TensorFlow:

    import export
    result = export.export_model("runs/sst2", "models/sst2")  # writes models/sst2/<version>/
"""

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

_LAZY = {
    "export_model": ("export.exporter", "export_model"),
    "ExportResult": ("export.export_result", "ExportResult"),
    "ExportError": ("export.errors", "ExportError"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'export' has no attribute {name!r}")


__all__ = ["ExportError", "ExportResult", "export_model"]
