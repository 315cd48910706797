"""The serving tests' models and helpers.

Models (each under its own base path, built once per session by conftest.py):

* `half`: a TF1 graph saved with `SavedModelBuilder` (like TF Serving's half_plus_two): y = 0.5x + 2
  with `serving_default` (x float [-1, 1]), `classify_x_to_y` / `regress_x_to_y` over serialized
  tf.Examples, and `add_with_default` whose input `right` has a signature default.
* `tf2`: a `tf.Module` saved with `tf.saved_model.save`, versions 1 and 2 (y = version * x), plus
  a string signature `greet`; the base path also holds non-version entries to ignore.
* `spin`: a request runs a loop of as many steps as asked (slow requests on demand).
* `text`, `pair`: stand-ins for tfinetune's exported classifiers (same `serving_default`
  contract: text[, text_pair] -> probabilities, label_id, label, classes), tokenizing with
  tensorflow_text so that loading them needs its ops; logits = [#"bad", #"good"].
"""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest

LABELS = ["negative", "positive"]
TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "tfserving-testdata"


def expected_probabilities(text: str, text_pair: str | None = None) -> list[float]:
    """What the stand-in classifiers compute: softmax([#"bad", #"good"]) over lower-cased words."""
    words = (text + " " + (text_pair or "")).lower().split()
    logits = np.array([words.count("bad"), words.count("good")], dtype=np.float64)
    exp = np.exp(logits - logits.max())
    return (exp / exp.sum()).tolist()


def tfserving_testdata(name: str) -> Path:
    """A TF Serving testdata base path, or skip the test when the directory is absent."""
    path = TESTDATA / name
    if not path.is_dir():
        pytest.skip(f"TF Serving testdata {path} is absent (copy tensorflow_serving/servables/"
                    f"tensorflow/testdata there to run this test)")
    return path


def build_half_plus_two(export_dir: Path) -> Path:
    """A TF1-style SavedModel, built in a graph + session with SavedModelBuilder."""
    import tensorflow as tf

    v1 = tf.compat.v1
    utils = v1.saved_model.signature_def_utils
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        x = v1.placeholder(tf.float32, [None, 1], name="x")
        y = tf.add(a * x, b, name="y")
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        y_example = tf.add(a * features["x"], b, name="y_example")
        classes = tf.tile(tf.constant([["low", "high"]]), [tf.shape(serialized)[0], 1])
        scores = tf.concat([y_example, 2 * y_example], axis=1)
        left = v1.placeholder(tf.float32, [None], name="left")
        right = v1.placeholder(tf.float32, [None], name="right")
        total = tf.add(left, right, name="sum")
        info = v1.saved_model.utils.build_tensor_info
        add_signature = utils.build_signature_def(
            inputs={"left": info(left), "right": info(right)}, outputs={"sum": info(total)},
            method_name="tensorflow/serving/predict")
        add_signature.defaults["right"].CopyFrom(
            tf.make_tensor_proto(np.array([10.0], np.float32)))
        signatures = {
            "serving_default": utils.predict_signature_def({"x": x}, {"y": y}),
            "two_outputs": utils.predict_signature_def(
                {"x": x}, {"y": y, "x_copy": tf.identity(x, name="x_copy")}),
            "classify_x_to_y": utils.classification_signature_def(serialized, classes, scores),
            "regress_x_to_y": utils.regression_signature_def(serialized, y_example),
            "add_with_default": add_signature,
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
            builder.save()
    return export_dir


def build_times_model(export_dir: Path, factor: float) -> Path:
    """A TF2 SavedModel: `serving_default` y = factor * x, and a string signature `greet`."""
    import tensorflow as tf

    class Times(tf.Module):
        def __init__(self):
            super().__init__()
            self.factor = tf.Variable(factor)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def times(self, x):
            return {"y": x * self.factor}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="name")])
        def greet(self, name):
            return {"greeting": tf.strings.join(["hello ", name]),
                    "length": tf.strings.length(name)}

    module = Times()
    tf.saved_model.save(module, str(export_dir),
                        signatures={"serving_default": module.times, "greet": module.greet})
    return export_dir


def build_spin_model(export_dir: Path) -> Path:
    """A model whose request takes as long as asked: a loop of `iterations` (int64 scalar)."""
    import tensorflow as tf

    class Spin(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="iterations")])
        def spin(self, iterations):
            (count,) = tf.while_loop(lambda i: i < iterations, lambda i: (i + 1,),
                                     [tf.constant(0, tf.int64)])
            return {"count": count}

    module = Spin()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.spin})
    return export_dir


def build_text_classifier(export_dir: Path, pair: bool = False) -> Path:
    """A stand-in for an exported tfinetune classifier (same serving_default contract)."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    labels = tf.constant(LABELS)
    tokenizer = tf_text.WhitespaceTokenizer()

    def outputs(text):
        words = tokenizer.tokenize(tf.strings.lower(text))
        counts = [tf.reduce_sum(tf.cast(tf.equal(words, word), tf.float32), axis=1)
                  for word in ("bad", "good")]
        probabilities = tf.nn.softmax(tf.stack(counts, axis=1))
        label_id = tf.argmax(probabilities, axis=1)
        return {"probabilities": probabilities, "label_id": label_id,
                "label": tf.gather(labels, label_id),
                "classes": tf.tile(labels[tf.newaxis], [tf.shape(text)[0], 1])}

    class Classifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def single(self, text):
            return outputs(text)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None], tf.string, name="text_pair")])
        def pair(self, text, text_pair):
            return outputs(tf.strings.join([text, text_pair], separator=" "))

    module = Classifier()
    tf.saved_model.save(module, str(export_dir),
                        signatures={"serving_default": module.pair if pair else module.single})
    return export_dir


def copy_version(source: Path, base: Path, version: int) -> Path:
    """Copies a version directory into `base` atomically (write aside, then rename)."""
    staging = base / f".staging-{version}"
    shutil.copytree(source, staging)
    target = base / str(version)
    staging.rename(target)
    return target


def predict_request(name: str, inputs: dict | None = None, *, signature: str | None = None,
                    version: int | None = None, version_label: str | None = None,
                    output_filter=()):
    """A PredictRequest; `inputs` maps alias -> numpy array (or TensorProto)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if signature is not None:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if version_label is not None:
        request.model_spec.version_label = version_label
    for alias, value in (inputs or {}).items():
        proto = value if hasattr(value, "SerializeToString") else tf.make_tensor_proto(value)
        request.inputs[alias].CopyFrom(proto)
    request.output_filter.extend(output_filter)
    return request


def rpc_error(call, request) -> tuple[grpc.StatusCode, str]:
    """Makes a call that must fail; returns its status code and message."""
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)
    return raised.value.code(), raised.value.details()


def build_bytes_model(export_dir: Path) -> Path:
    """A TF2 SavedModel with binary data in and out: `image_bytes` (string) -> `echo_bytes`
    (the same bytes; TF Serving's REST API writes aliases ending in `_bytes` as {"b64": ...})
    and `size` (int32 byte counts)."""
    import tensorflow as tf

    class Bytes(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def echo(self, image_bytes):
            return {"echo_bytes": image_bytes, "size": tf.strings.length(image_bytes)}

    module = Bytes()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.echo})
    return export_dir


def rest_request(port: int, method: str, path: str, body=None, headers: dict | None = None):
    """One HTTP request to a REST port; `body` may be a dict/list (sent as JSON), str or bytes.

    Returns:
        (HTTP status, response headers as a dict, body bytes).
    """
    import http.client
    import json

    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def rest_json(port: int, method: str, path: str, body=None) -> tuple[int, object]:
    """`rest_request` whose answer must be JSON: (HTTP status, parsed body)."""
    import json

    status, headers, payload = rest_request(port, method, path, body)
    assert headers["Content-Type"] == "application/json", headers
    return status, json.loads(payload)


def metric_value(page: bytes, name: str, **labels: str) -> float:
    """The value of one sample on a Prometheus page (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(page.decode("utf-8")):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    return 0.0
