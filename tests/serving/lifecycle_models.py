"""Models and files of the model-config, reload, warm-up and MultiInference tests.

* `build_counter_model`: TF Serving's `saved_model_counter` rebuilt (a float variable with
  `get_counter`, `incr_counter`, `incr_counter_by(delta)`, `reset_counter`), so warm-up replays
  are visible as state.
* `build_half_plus_two_heads`: TF Serving's half_plus_two signatures over serialized tf.Examples:
  `classify_x_to_y`, `regress_x_to_y` (0.5x + 2), `regress_x_to_y2` (0.5x + 3) on one input
  tensor, `regress_x2_to_y3` (0.5x2 + 3) on another, plus `serving_default` (predict).
* `write_model_config`: a text `ModelServerConfig`; `write_warmup_requests`: a TFRecord of
  `PredictionLog`s in `assets.extra/`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import grpc

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def build_counter_model(export_dir: Path) -> Path:
    """A TF2 SavedModel with TF Serving's counter signatures (all return `output`)."""
    import tensorflow as tf

    class Counter(tf.Module):
        def __init__(self):
            super().__init__()
            self.counter = tf.Variable(0.0)

        @tf.function(input_signature=[])
        def get_counter(self):
            return {"output": tf.identity(self.counter)}

        @tf.function(input_signature=[])
        def incr_counter(self):
            return {"output": self.counter.assign_add(1.0)}

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32, name="delta")])
        def incr_counter_by(self, delta):
            return {"output": self.counter.assign_add(delta)}

        @tf.function(input_signature=[])
        def reset_counter(self):
            return {"output": self.counter.assign(0.0)}

    module = Counter()
    tf.saved_model.save(module, str(export_dir), signatures={
        "get_counter": module.get_counter, "incr_counter": module.incr_counter,
        "incr_counter_by": module.incr_counter_by, "reset_counter": module.reset_counter})
    return export_dir


def build_half_plus_two_heads(export_dir: Path, tags: Iterable[str] = ("serve",)) -> Path:
    """A TF1 SavedModel with half_plus_two's classify/regress signatures over tf.Examples,
    saved under the MetaGraphDef `tags`."""
    import tensorflow as tf

    v1 = tf.compat.v1
    utils = v1.saved_model.signature_def_utils
    graph = tf.Graph()
    with graph.as_default():
        a, b, c = v1.Variable(0.5, name="a"), v1.Variable(2.0, name="b"), v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        serialized2 = v1.placeholder(tf.string, [None], name="tf_example2")
        spec = {"x": tf.io.FixedLenFeature([1], tf.float32)}
        x = tf.io.parse_example(serialized, spec)["x"]
        x2 = tf.io.parse_example(serialized2, {"x2": tf.io.FixedLenFeature([1], tf.float32)})["x2"]
        y = tf.add(a * x, b, name="y")
        y2 = tf.add(a * x, c, name="y2")
        y3 = tf.add(a * x2, c, name="y3")
        plain_x = v1.placeholder(tf.float32, [None, 1], name="x")
        signatures = {
            "serving_default": utils.predict_signature_def({"x": plain_x},
                                                           {"y": a * plain_x + b}),
            "classify_x_to_y": utils.classification_signature_def(serialized, None, y),
            "regress_x_to_y": utils.regression_signature_def(serialized, y),
            "regress_x_to_y2": utils.regression_signature_def(serialized, y2),
            "regress_x2_to_y3": utils.regression_signature_def(serialized2, y3),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
            builder.add_meta_graph_and_variables(session, list(tags),
                                                 signature_def_map=signatures)
            builder.save()
    return export_dir


def predict_log(name: str = "", signature: str = "", inputs: Mapping | None = None):
    """A `PredictionLog` holding a PredictRequest (inputs: alias -> numpy value)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for alias, value in (inputs or {}).items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return log


def write_warmup_requests(version_dir: Path, logs: Iterable, raw: Iterable[bytes] = ()) -> Path:
    """Writes `version_dir/assets.extra/tf_serving_warmup_requests` (logs, then raw records)."""
    import tensorflow as tf

    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
        for record in raw:
            writer.write(record)
    return path


def model_config_proto(models: Iterable[Mapping]):
    """A `ModelServerConfig` of `{"name", "base_path", "policy"?, "labels"?, "platform"?}`.

    `policy` is "all", ("latest", n) or ("specific", [versions]); `platform` defaults to
    "tensorflow" (None leaves it unset).
    """
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for model in models:
        entry = config.model_config_list.config.add(name=model["name"],
                                                     base_path=str(model["base_path"]))
        platform = model.get("platform", "tensorflow")
        if platform is not None:
            entry.model_platform = platform
        policy = model.get("policy")
        if policy == "all":
            entry.model_version_policy.all.SetInParent()
        elif policy is not None and policy[0] == "latest":
            entry.model_version_policy.latest.num_versions = policy[1]
        elif policy is not None:
            entry.model_version_policy.specific.versions.extend(policy[1])
        for label, version in model.get("labels", {}).items():
            entry.version_labels[label] = version
    return config


def write_model_config(path: Path, models: Iterable[Mapping]) -> Path:
    """Writes a text `ModelServerConfig` atomically (a poller never reads half a file)."""
    from google.protobuf import text_format

    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text_format.MessageToString(model_config_proto(models)))
    os.replace(staging, path)
    return path


def reload_request(models: Iterable[Mapping]):
    """A `ReloadConfigRequest` for `model_config_proto(models)`."""
    from tensorflow_serving.apis import model_management_pb2

    return model_management_pb2.ReloadConfigRequest(config=model_config_proto(models))


def versions_by_state(stub, name: str) -> list[tuple[int, str]]:
    """(version, state name) of every version GetModelStatus reports, highest first."""
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    try:
        response = stub.GetModelStatus(request, timeout=30)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return []
        raise
    states = get_model_status_pb2.ModelVersionStatus.State
    return [(s.version, states.Name(s.state)) for s in response.model_version_status]
