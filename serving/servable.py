"""`Servable`: one loaded version of a model, run the way TF Serving's SavedModelBundle runs it.

The SavedModel is loaded into its own `tf.Graph` and `tf.compat.v1.Session` (so TF1- and
TF2-era SavedModels both work), and a request runs the session with the signature's tensor
names as feeds and fetches. Like the C++ server it does not check shapes: requests run through
the session's C API (`SessionCallable`), which skips the Python `Session.run` feed-shape check,
with the request's deadline as the run timeout. With `--enable_batching` the runs of each
signature go through a `BatchingSession`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

import grpc
import numpy as np

from serving import tensor_codec
from serving.batching_session import BatchingSession
from serving.metrics import Metrics
from serving.request_deadline import RequestDeadline
from serving.servable_options import ServableOptions
from serving.serving_error import ServingError
from serving.session_callable import SessionCallable

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"  # kDefaultServingSignatureDefKey
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"  # kClassifyMethodName
REGRESS_METHOD_NAME = "tensorflow/serving/regress"  # kRegressMethodName
PREDICT_METHOD_NAME = "tensorflow/serving/predict"  # kPredictMethodName
_PREDICT_API_METHODS = (PREDICT_METHOD_NAME, CLASSIFY_METHOD_NAME, REGRESS_METHOD_NAME)
_MAX_CACHED_CALLABLES = 64
_tensorflow_text_imported = False
_import_lock = threading.Lock()


def _import_tensorflow_text() -> None:
    """Registers the TF Text ops (tokenizers inside SavedModels need them to load)."""
    global _tensorflow_text_imported
    with _import_lock:
        if _tensorflow_text_imported:
            return
        try:
            import tensorflow_text  # noqa: F401
        except ImportError as error:  # the server still serves models without TF Text ops
            logger.warning("tensorflow_text could not be imported (%s); SavedModels that use "
                           "its ops will fail to load.", error)
        _tensorflow_text_imported = True


def _silenced_deprecation():
    """Silences "load is deprecated, use tf.saved_model.load": the TF1 loader is the point here
    (tf.saved_model.load does not give a session over the graph)."""
    try:
        from tensorflow.python.util import deprecation

        return deprecation.silence()
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


def _load_error(error: Exception, tags: Sequence[str] = ()) -> ServingError:
    """The status of a failed load, with the code (and, for a tag-set the SavedModel lacks, the
    text) the C++ loader would report."""
    import tensorflow as tf

    if isinstance(error, RuntimeError) and "could not be found in SavedModel" in str(error):
        # TF's C++ FindMetaGraphDef text, which tensorflow_model_server reports.
        return ServingError(
            grpc.StatusCode.NOT_FOUND,
            f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(tags))} "
            f"}}. To inspect available tag-sets in the SavedModel, please use the SavedModel "
            f"CLI: `saved_model_cli`")
    if isinstance(error, tf.errors.OpError):
        return ServingError.from_op_error(error)
    message = str(error) or type(error).__name__
    if isinstance(error, ValueError) and "is not a valid checkpoint" in message:
        # The graph has variables but variables/ is missing or incomplete (Saver.restore).
        return ServingError(grpc.StatusCode.NOT_FOUND,
                            f"The SavedModel's variables could not be restored: {message}")
    if isinstance(error, (OSError, RuntimeError)) and (
            "does not exist" in message or "could not be found" in message):
        return ServingError(grpc.StatusCode.NOT_FOUND, message)
    if isinstance(error, OSError):
        return ServingError(grpc.StatusCode.DATA_LOSS, message)
    return ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {message}")


def _join(keys) -> str:
    return ",".join(sorted(keys))


def _shape(array: np.ndarray) -> str:
    """A shape as `TensorShape::DebugString` writes it: `[2,3]`."""
    return "[" + ",".join(str(size) for size in array.shape) + "]"


def _dtype_name(array: np.ndarray) -> str:
    """The `DataType` enum name of an array's dtype, e.g. `DT_INT64`."""
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(tf.as_dtype(array.dtype).as_datatype_enum)


def _classification_tensors(signature) -> tuple[str, list[str]]:
    """TF Serving's `PreProcessClassification`: the input tensor and the classes/scores
    tensors to fetch (the method name is checked only with the signature method-name check,
    off by default, so TF2 signatures stamped "predict" work)."""
    if len(signature.inputs) != 1:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if "inputs" not in signature.inputs:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"No classification inputs found in SignatureDef: {signature}")
    if "classes" not in signature.outputs and "scores" not in signature.outputs:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            'Expected classification signature outputs to contain at least one of '
            f'"classes" or "scores". Signature was: {signature}')
    return signature.inputs["inputs"].name, [
        signature.outputs[alias].name for alias in ("classes", "scores")
        if alias in signature.outputs]


def _classification_result(signature, outputs: Mapping[str, np.ndarray], num_examples: int,
                           result) -> None:
    """TF Serving's `PostProcessClassificationResult`: checks the fetched classes/scores
    (by tensor name in `outputs`) and fills a `ClassificationResult`."""
    classes = scores = None
    if "classes" in signature.outputs:
        classes = outputs[signature.outputs["classes"].name]
    if "scores" in signature.outputs:
        scores = outputs[signature.outputs["scores"].name]
    for alias, value, dtype in (("classes", classes, np.object_),
                                ("scores", scores, np.float32)):
        if value is None:
            continue
        if value.ndim != 2:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Expected Tensor shape: [batch_size num_classes] but got "
                               f"{_shape(value)}")
        if value.dtype != dtype:
            expected = "DT_STRING" if alias == "classes" else "DT_FLOAT"
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Expected {alias} Tensor of {expected}. Got: "
                               f"{_dtype_name(value)}")
        if value.shape[0] != num_examples:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Expected {alias} output batch size of {num_examples}. "
                               f"Got: {value.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Tensors class and score should match in dim_size(1). Got "
                           f"{classes.shape[1]} vs. {scores.shape[1]}")
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            cls = classifications.classes.add()
            if classes is not None:
                cls.label = classes[i, c].decode("utf-8", errors="replace")
            if scores is not None:
                cls.score = float(scores[i, c])


def _regression_tensors(signature) -> tuple[str, list[str]]:
    """TF Serving's `PreProcessRegression`: the input tensor and the output tensor to fetch."""
    if len(signature.inputs) != 1:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"No regression inputs found in SignatureDef: {signature}")
    if "outputs" not in signature.outputs:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"No regression outputs found in SignatureDef: {signature}")
    return signature.inputs["inputs"].name, [signature.outputs["outputs"].name]


def _regression_result(signature, outputs: Mapping[str, np.ndarray], num_examples: int,
                       result) -> None:
    """TF Serving's `PostProcessRegressionResult`: checks the fetched output and fills a
    `RegressionResult`."""
    value = outputs[signature.outputs["outputs"].name]
    if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Expected output Tensor shape to be either [batch_size] or "
                           f"[batch_size, 1] but got {list(value.shape)}")
    if value.shape[0] != num_examples:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Input batch size did not match output batch size: "
                           f"{num_examples} vs. {value.shape[0]}")
    if value.dtype != np.float32:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(value)}")
    for number in value.ravel().tolist():
        result.regressions.add().value = number


class Servable:
    """A loaded model version: its session, signatures and the Predict/Classify/Regress logic.

    Build it with `Servable.load`. Every method is thread-safe; `Session.run` releases the GIL,
    so requests on one servable run concurrently.

    Attributes:
        name: The model name.
        version: The version number (the name of its directory under the base path).
        path: The version directory.
    """

    def __init__(self, name: str, version: int, path: Path, session, meta_graph_def,
                 options: ServableOptions | None = None) -> None:
        from tensorflow_serving.apis import get_model_metadata_pb2

        self.name = name
        self.version = version
        self.path = path
        self._session = session
        self._signatures = dict(meta_graph_def.signature_def)
        self._signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in self._signatures.items():
            self._signature_def_map.signature_def[key].CopyFrom(signature)
        self._callables: collections.OrderedDict = collections.OrderedDict()
        self._callables_lock = threading.Lock()
        self._users = 0
        self._users_changed = threading.Condition()
        self._options = options or ServableOptions()
        self._batching: BatchingSession | None = None
        if self._options.batch_scheduler is not None:
            self._batching = BatchingSession(self._run_session, self._signatures.values(),
                                             self._options.batch_scheduler, f"{name}/{version}")

    @classmethod
    def load(cls, name: str, version: int, path: str | Path,
             tags: Sequence[str] = ("serve",),
             options: ServableOptions | None = None) -> "Servable":
        """Loads `path` (a SavedModel directory) into a new graph and session.

        `options` carries the server-wide settings (batching, signature method-name check,
        tensor_content serialization); default: none of them.

        Raises:
            ServingError: the load failed; its code is the loader's status code.
        """
        import tensorflow as tf

        _import_tensorflow_text()
        path = Path(path)
        graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
        session = tf.compat.v1.Session(graph=graph, config=config)
        start = time.perf_counter()
        try:
            with graph.as_default(), _silenced_deprecation():
                meta_graph_def = tf.compat.v1.saved_model.loader.load(
                    session, set(tags), str(path))
        except Exception as error:  # noqa: BLE001  (any loader failure becomes a status)
            session.close()
            Metrics.default().record_load(str(path), False, time.perf_counter() - start)
            raise _load_error(error, tags) from error
        graph.finalize()
        Metrics.default().record_load(str(path), True, time.perf_counter() - start)
        return cls(name, version, path, session, meta_graph_def, options)

    @property
    def signature_def_map(self):
        """All signatures as a `SignatureDefMap` (what GetModelMetadata returns)."""
        return self._signature_def_map

    # -- reference counting: a version is unloaded only once no request uses it ---------------

    @property
    def requests_in_flight(self) -> int:
        """How many requests are using this version right now."""
        with self._users_changed:
            return self._users

    def acquire(self) -> None:
        with self._users_changed:
            self._users += 1

    def release(self) -> None:
        with self._users_changed:
            self._users -= 1
            self._users_changed.notify_all()

    def cancel_runs(self) -> None:
        """Cancels the session runs in progress (they fail with CANCELLED) and refuses new
        ones; `close` then need not wait long. Used when a shutdown's grace period is over."""
        logger.warning("Cancelling the %d request(s) running on version %d of model '%s'",
                       self.requests_in_flight, self.version, self.name)
        self._session.close()  # DirectSession::Close cancels every step in progress

    def close(self) -> None:
        """Waits for the requests running on this version, then closes its session."""
        with self._users_changed:
            self._users_changed.wait_for(lambda: self._users == 0)
        if self._batching is not None:
            self._batching.close()
        with self._callables_lock:
            self._callables.clear()
        self._session.close()

    # -- Predict --------------------------------------------------------------------------------

    def predict(self, request):
        """Runs a `PredictRequest` (TF Serving's `RunPredict`)."""
        from tensorflow_serving.apis import predict_pb2

        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self._signatures.get(signature_name)
        if signature is None:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{signature_name}" not found.')
        if (self._options.signature_method_name_check
                and signature.method_name not in _PREDICT_API_METHODS):
            raise ServingError(  # predict_util.cc VerifySignature
                grpc.StatusCode.INTERNAL,
                f"Expected prediction signature method_name to be one of {{"
                f"{', '.join(_PREDICT_API_METHODS)}}}. Was: {signature.method_name}")
        self._verify_inputs_size(signature, request.inputs)
        feed_names, feed_values = self._input_values(signature, request.inputs)
        aliases, fetch_names = self._outputs(signature, request.output_filter)
        outputs = self._run(feed_names, feed_values, fetch_names, api="Predict")

        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = signature_name
        response.model_spec.version.value = self.version
        for alias, value in zip(aliases, outputs):
            response.outputs[alias].CopyFrom(tensor_codec.to_tensor_proto(
                value, as_tensor_content=self._options.serialization_as_tensor_content))
        return response

    @staticmethod
    def _verify_inputs_size(signature, request_inputs: Mapping) -> None:
        """TF Serving's `VerifyRequestInputsSize`, same text."""
        sent, expected = len(request_inputs), len(signature.inputs)
        if sent > expected or (sent < expected and not signature.defaults):
            request_keys, signature_keys = set(request_inputs), set(signature.inputs)
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {sent}!={expected} "
                f"len({{{_join(request_keys)}}}) != len({{{_join(signature_keys)}}}). "
                f"Sent extra: {{{_join(request_keys - signature_keys)}}}. "
                f"Missing but required: {{{_join(signature_keys - request_keys)}}}.")

    @staticmethod
    def _input_values(signature, request_inputs: Mapping) -> tuple[list[str], list[np.ndarray]]:
        """TF's `saved_model::GetInputValues`: request tensors, else signature defaults."""
        feed_names, feed_values, seen = [], [], set()
        for alias in sorted(signature.inputs):
            feed_name = signature.inputs[alias].name
            if alias in request_inputs:
                proto = request_inputs[alias]
                seen.add(alias)
            elif alias in signature.defaults:
                proto = signature.defaults[alias]
            else:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Signature input alias: {alias}(feed name: {feed_name}) not found in "
                    f"request and no default value provided. Inputs expected to be in the "
                    f"request {{{_join(request_inputs)}}}, or default input alias set: "
                    f"{_join(signature.defaults)}")
            try:
                value = tensor_codec.to_ndarray(proto)
            except ValueError:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"tensor parsing error: {alias}") from None
            problem = tensor_codec.feed_shape_problem(value, signature.inputs[alias].tensor_shape)
            if problem:  # shapes that would crash TF kernels (and the server)
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input {alias}: {problem}")
            feed_names.append(feed_name)
            feed_values.append(value)
        if request_inputs and len(seen) != len(request_inputs):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Inputs contains invalid name. Used request inputs: {_join(seen)}, "
                f"request input: {_join(request_inputs)}")
        return feed_names, feed_values

    @staticmethod
    def _outputs(signature, output_filter: Sequence[str]) -> tuple[list[str], list[str]]:
        """Output aliases and tensor names to fetch (all outputs when the filter is empty)."""
        aliases, seen = [], set()
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{_join(signature.outputs)}}}.")
            if alias in seen:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"duplicate output tensor alias: {alias}")
            seen.add(alias)
            aliases.append(alias)
        if not aliases:
            aliases = sorted(signature.outputs)
        return aliases, [signature.outputs[alias].name for alias in aliases]

    # -- Classify / Regress / MultiInference ----------------------------------------------------

    def classify(self, request):
        """Runs a `ClassificationRequest` (TF Serving's SavedModel classifier)."""
        from tensorflow_serving.apis import classification_pb2

        signature_name, signature = self._example_signature(request.model_spec,
                                                            CLASSIFY_METHOD_NAME)
        input_name, fetch_names = _classification_tensors(signature)
        examples = self._serialized_examples(request.input)
        outputs = dict(zip(fetch_names, self._run([input_name], [examples], fetch_names,
                                                  api="Classify")))
        response = classification_pb2.ClassificationResponse()
        self._echo_model_spec(request.model_spec, signature_name, response.model_spec)
        _classification_result(signature, outputs, len(examples), response.result)
        return response

    def regress(self, request):
        """Runs a `RegressionRequest` (TF Serving's SavedModel regressor)."""
        from tensorflow_serving.apis import regression_pb2

        signature_name, signature = self._example_signature(request.model_spec,
                                                            REGRESS_METHOD_NAME)
        input_name, fetch_names = _regression_tensors(signature)
        examples = self._serialized_examples(request.input)
        outputs = dict(zip(fetch_names, self._run([input_name], [examples], fetch_names,
                                                  api="Regress")))
        response = regression_pb2.RegressionResponse()
        self._echo_model_spec(request.model_spec, signature_name, response.model_spec)
        _regression_result(signature, outputs, len(examples), response.result)
        return response

    def multi_inference(self, request):
        """Runs a `MultiInferenceRequest`: every task's classify/regress signature over the same
        examples in one session run (TF Serving's `TensorFlowMultiInferenceRunner::Infer`).

        Raises:
            ServingError: TF Serving's texts: a task without a model name, tasks naming several
                models, a signature evaluated twice or not in the graph (INVALID_ARGUMENT), a
                method other than classify/regress (UNIMPLEMENTED), no examples, and the
                classify/regress signature and output checks.
        """
        from tensorflow_serving.apis import inference_pb2

        model_name = ""
        tasks, feed_names, fetch_names = [], [], []
        for task in request.tasks:
            if not task.model_spec.name:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "Found ModelSpec with an empty model name.")
            if not model_name:
                model_name = task.model_spec.name
            elif task.model_spec.name != model_name:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "All ModelSpecs in a MultiInferenceRequest must access the "
                                   "same model name.")
            signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if any(signature_name == seen for _, seen, _ in tasks):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Duplicate evaluation of signature: {signature_name}")
            signature = self._signatures.get(signature_name)
            if signature is None:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Requested signature not found in model graph: "
                                   f"{signature_name}")
            if task.method_name == CLASSIFY_METHOD_NAME:
                self._check_method_name(signature, CLASSIFY_METHOD_NAME)
                input_name, names = _classification_tensors(signature)
            elif task.method_name == REGRESS_METHOD_NAME:
                self._check_method_name(signature, REGRESS_METHOD_NAME)
                input_name, names = _regression_tensors(signature)
            else:
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"Unsupported signature method_name: {task.method_name}")
            tasks.append((task, signature_name, signature))
            # Signatures with different input tensors are all fed the same examples.
            feed_names.extend(n for n in [input_name] if n not in feed_names)
            fetch_names.extend(n for n in names if n not in fetch_names)
        examples = self._serialized_examples(request.input)
        outputs = dict(zip(fetch_names, self._run(
            feed_names, [examples] * len(feed_names), fetch_names,
            api="MultiInference"))) if tasks else {}

        response = inference_pb2.MultiInferenceResponse()
        for task, signature_name, signature in tasks:
            result = response.results.add()
            self._echo_model_spec(task.model_spec, signature_name, result.model_spec)
            if task.method_name == CLASSIFY_METHOD_NAME:
                _classification_result(signature, outputs, len(examples),
                                       result.classification_result)
            else:
                _regression_result(signature, outputs, len(examples), result.regression_result)
        return response

    def _example_signature(self, model_spec, method_name: str | None = None):
        """The Classify/Regress signature; with the signature method-name check on, it must
        have `method_name` (classifier.cc / regressor.cc, same texts)."""
        signature_name = model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self._signatures.get(signature_name)
        if signature is None:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"No signature was found with the name: {signature_name}")
        if method_name is not None:
            self._check_method_name(signature, method_name)
        return signature_name, signature

    def _check_method_name(self, signature, method_name: str) -> None:
        """With the signature method-name check on, a Classify/Regress (or MultiInference task)
        signature must have `method_name` (classifier.cc / regressor.cc, same texts)."""
        if self._options.signature_method_name_check and signature.method_name != method_name:
            kind = "classification" if method_name == CLASSIFY_METHOD_NAME else "regression"
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Expected {kind} signature method_name to be {method_name}. "
                               f"Was: {signature.method_name}")

    @staticmethod
    def _serialized_examples(model_input) -> np.ndarray:
        """TF Serving's `InputToSerializedExampleTensor` (context bytes prefixed)."""
        kind = model_input.WhichOneof("kind")
        if kind == "example_list":
            examples = [e.SerializeToString() for e in model_input.example_list.examples]
        elif kind == "example_list_with_context":
            with_context = model_input.example_list_with_context
            context = with_context.context.SerializeToString()
            examples = [context + e.SerializeToString() for e in with_context.examples]
        else:
            examples = []
        if not examples:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
        array = np.empty(len(examples), dtype=object)
        array[:] = examples
        return array

    def _echo_model_spec(self, model_spec, signature_name: str, target) -> None:
        target.name = model_spec.name
        target.signature_name = signature_name
        target.version.value = self.version

    # -- running the session --------------------------------------------------------------------

    @property
    def batching_session(self) -> BatchingSession | None:
        """The `BatchingSession` of this version (None without `--enable_batching`)."""
        return self._batching

    def _run(self, feed_names: list[str], feed_values: list[np.ndarray],
             fetch_names: list[str], api: str = "") -> list[np.ndarray]:
        """Runs the session (batched when batching is on) within the request's deadline.

        A successful run of an `api` (`Predict`, `Classify`, ...) is recorded in the
        `runtime_latency` metric, as TF Serving's `RecordRuntimeLatency`.

        Raises:
            ServingError: DEADLINE_EXCEEDED when the deadline has passed or the run outlasts it
                (the run is cancelled); TF runtime and batching errors with their status codes.
        """
        deadline = RequestDeadline.current()
        if deadline is not None and deadline <= time.monotonic():
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        unique_fetches = sorted(set(fetch_names))
        start = time.perf_counter()
        if self._batching is not None:
            values = self._batching.run(feed_names, feed_values, unique_fetches, deadline)
        else:
            values = self._run_session(feed_names, feed_values, unique_fetches,
                                       RequestDeadline.timeout_in_ms(deadline))
        if api:
            Metrics.default().record_runtime_latency(self.name, api, time.perf_counter() - start)
        by_name = dict(zip(unique_fetches, values))
        return [by_name[name] for name in fetch_names]

    def _run_session(self, feed_names: Sequence[str], feed_values: Sequence[np.ndarray],
                     fetch_names: Sequence[str], timeout_in_ms: int = 0) -> list[np.ndarray]:
        """One run of the session (`timeout_in_ms` <= 0: none); maps TF runtime errors to
        their status code."""
        import tensorflow as tf

        run = self._callable(tuple(feed_names), tuple(fetch_names))
        try:
            return run(feed_values, timeout_in_ms)
        except tf.errors.OpError as error:
            raise ServingError.from_op_error(error) from error

    def _callable(self, feed_names: tuple[str, ...], fetch_names: tuple[str, ...]):
        """A cached `SessionCallable` for these feeds and fetches (no Python shape checks)."""
        key = (feed_names, fetch_names)
        with self._callables_lock:
            run = self._callables.get(key)
            if run is not None:
                self._callables.move_to_end(key)
                return run
            run = SessionCallable(self._session, feed_names, fetch_names)
            self._callables[key] = run
            if len(self._callables) > _MAX_CACHED_CALLABLES:
                self._callables.popitem(last=False)
            return run
