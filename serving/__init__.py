"""serving: a TensorFlow-Serving-compatible gRPC model server and a client.

    from serving import Server, Client
    server = Server({"sentiment": "/models/sentiment"}, port=0).start()
    with Client(f"127.0.0.1:{server.port}", "sentiment") as client:
        print(client.predict(["a great movie"]))
    server.stop()

The names are imported lazily: `import serving` does not import TensorFlow.
"""

_LAZY = {
    "Server": ("serving.server", "Server"),
    "Client": ("serving.client", "Client"),
    "Prediction": ("serving.prediction", "Prediction"),
    "ServingError": ("serving.serving_error", "ServingError"),
    "VersionPolicy": ("serving.version_policy", "VersionPolicy"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'serving' has no attribute {name!r}")


__all__ = ["Client", "Prediction", "Server", "ServingError", "VersionPolicy"]
