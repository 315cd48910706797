"""`Client`: classify texts with a model served over TensorFlow Serving's gRPC API.

Works against this package's `Server` and against `tensorflow_model_server` alike, for models
exported with tfinetune's `serving_default` signature: inputs `text` (and `text_pair`), DT_STRING
[-1]; outputs, by problem type:

- single-label: `probabilities`, `label_id`, `label` and `classes`;
- multi-label: `scores`, `classes` and `predicted` (1 where the score reaches the threshold);
- regression: `value`;

and for the other tasks' exports those of their `TaskCodec` (`serving.task_codec`): token
classification (entities), question answering (`question` + `context` → answer span) and
seq2seq (generated text).

The client needs no flag for the type: it reads it from the outputs the model returns.

Models exported with `--portable` (for stock TF Serving images) take token ids instead of text
(`input_ids`, `attention_mask`, `token_type_ids`): the client tokenises with the export's
tokenizer (`tokenizer=ClientTokenizer.from_path(...)`, see `serving.client_tokenizer`) and
returns the same predictions.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Sequence

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2

from serving import tensor_codec
from serving.client_tokenizer import TOKEN_INPUTS
from serving.client_tokenizer import ClientTokenizer
from serving.client_tokenizer import placeholder_token_inputs
from serving.client_tokenizer import takes_token_ids
from serving.prediction import MULTI_LABEL
from serving.prediction import REGRESSION
from serving.prediction import SINGLE_LABEL
from serving.prediction import Prediction
from serving.replica_set import ReplicaSet
from serving.server_targets import parse_targets
from serving.serving_error import ServingError

logger = logging.getLogger(__name__)

#: The outputs `Client.predict` reads, per problem type.
_OUTPUTS = {
    SINGLE_LABEL: ("probabilities", "label_id", "label", "classes"),
    MULTI_LABEL: ("scores", "classes", "predicted"),
    REGRESSION: ("value",),
}
_MAX_MESSAGE_LENGTH = -1  # unlimited: the default 4 MB receive limit breaks big batches
_BACKOFF_SECONDS = 0.1
_MAX_BACKOFF_SECONDS = 5.0
#: Codes of failures that say nothing about the request (the server is down or restarting,
#: overloaded, or too slow this time): worth retrying after a pause, e.g. in bulk scoring.
#: CANCELLED is what a gRPC server that shuts down answers to the calls it was running
#: (grpc/grpc#41785); this client never cancels its own calls.
TRANSIENT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                   grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED)


def _string_tensor(values: Sequence[str]) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]),
        string_val=[value.encode("utf-8") for value in values])


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _problem_type(aliases) -> str | None:
    """The problem type whose outputs are among `aliases` (regression, then multi-label, then
    single-label), or None."""
    aliases = set(aliases)
    for problem_type in (REGRESSION, MULTI_LABEL, SINGLE_LABEL):
        if set(_OUTPUTS[problem_type]) <= aliases:
            return problem_type
    return None


class Client:
    """A thread-safe client for text classification models behind TF Serving's gRPC API.

    Single-label, multi-label and regression exports are all handled: `predict` returns
    `Prediction`s whose fields follow the outputs the model returns (see `Prediction`).

    Example:
        with Client("localhost:8500", "sentiment") as client:
            client.predict(["great movie"])[0].label

    Several replicas: `Client(["10.0.0.1:8500", "10.0.0.2:8500"], ...)` (or
    `"10.0.0.1:8500,10.0.0.2:8500"`, or a name resolving to every replica,
    `"dns:///tfserving-headless:8500"`) spreads the calls over them (see
    `serving.replica_set`); a call failing with one of `retry_codes` is retried on another
    replica at once (with the backoff only once every replica was tried).

    Args:
        target: `host:port` of the server, or of several replicas: a sequence of targets or
            one string of comma-separated ones (forms: `serving.server_targets`). A host
            name (or `dns:///NAME:PORT`) resolving to several addresses is spread over them
            all (gRPC `round_robin`).
        model_name: The served model's name.
        signature_name: The signature to call.
        version: A specific version; None asks for the latest available one.
        timeout: Deadline of each call, in seconds.
        retries: How many times a call failing with one of `retry_codes` is retried
            (exponential backoff from 0.1 s, at most 5 s, with jitter).
        retry_codes: The status codes worth a retry; default: UNAVAILABLE only.
            `TRANSIENT_CODES` adds DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (an overloaded
            server's answer) and CANCELLED (a server shutting down), as `tfinetune score`
            does.
        tls: Use TLS (`grpc.ssl_channel_credentials`).
        root_certificates: PEM root certificates for TLS (implies `tls`); None uses the
            system roots.
        private_key: PEM private key of a client certificate, for servers that verify clients
            (TF Serving's `client_verify`); needs `certificate_chain`; implies `tls`.
        certificate_chain: PEM client certificate (chain) matching `private_key`.
        tls_server_name: With TLS, the name the servers' certificates must carry, when it
            is not the host in `target` (e.g. replicas addressed by IP): gRPC's
            `grpc.ssl_target_name_override`.
        tokenizer: Tokenises texts for a signature that takes token ids (a `--portable`
            export), e.g. `ClientTokenizer.from_path("models/sentiment")`. Not needed (and not
            used) for signatures that take text.
    """

    def __init__(self, target: str | Sequence[str], model_name: str, *,
                 signature_name: str = "serving_default", version: int | None = None,
                 timeout: float = 30.0, retries: int = 3, tls: bool = False,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None,
                 tls_server_name: str | None = None,
                 tokenizer: ClientTokenizer | None = None,
                 retry_codes: Sequence[grpc.StatusCode] = (grpc.StatusCode.UNAVAILABLE,)
                 ) -> None:
        if (private_key is None) != (certificate_chain is None):
            raise ValueError(
                "A client certificate needs both its private key and its certificate chain. "
                f"Received: private_key={'set' if private_key else None}, "
                f"certificate_chain={'set' if certificate_chain else None}")
        self.targets = parse_targets(target)
        self.target = ",".join(self.targets)
        self.model_name = model_name
        self.signature_name = signature_name
        self.version = version
        self.timeout = timeout
        self.retries = retries
        self.retry_codes = frozenset(retry_codes)
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE_LENGTH),
                   ("grpc.max_send_message_length", _MAX_MESSAGE_LENGTH)]
        credentials = None
        if (tls or root_certificates is not None or private_key is not None
                or tls_server_name is not None):
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates,
                                                       private_key=private_key,
                                                       certificate_chain=certificate_chain)
            if tls_server_name is not None:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
        self._replicas = ReplicaSet(self.targets, credentials, options)
        self._label_names: list[str] | None = None
        self._problem_type: str | None = None
        self._task_codec = None
        self._codec_known = False
        self.tokenizer = tokenizer
        self._takes_tokens = False
        self._lock = threading.Lock()

    def predict(self, texts: Sequence[str],
                text_pairs: Sequence[str] | None = None) -> list[Prediction]:
        """Classifies texts (and, for pair models, their second texts) in one request.

        No `output_filter` is sent: the signature's outputs tell the problem type (tfinetune
        exports have exactly the outputs read here, so nothing extra is transferred).

        Raises:
            ValueError: `text_pairs` does not have one entry per text.
            ServingError: the call failed (after retries for UNAVAILABLE), or the response
                lacks the expected outputs.
        """
        if isinstance(texts, str):
            raise ValueError(f"texts must be a sequence of strings. Received: {texts!r}")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"text_pairs must have one entry per text. Expected "
                             f"{len(texts)}. Received: {len(text_pairs)}")
        if not texts:
            return []
        codec = self._codec()
        names = codec.inputs if codec is not None else ("text", "text_pair")
        if text_pairs is None and len(names) > 1 and codec is not None:
            raise ValueError(f"Model '{self.model_name}' ({codec.task}) takes two inputs, "
                             f"{list(names)}: give text_pairs for '{names[1]}'.")
        request = self._request()
        decode = None
        if self._takes_tokens:  # a --portable export: tokenise here
            decode = self._fill_token_inputs(request, texts, text_pairs)
        else:
            request.inputs[names[0]].CopyFrom(_string_tensor(texts))
            if text_pairs is not None:
                request.inputs[names[1]].CopyFrom(_string_tensor(text_pairs))
        response = self._call("Predict", request)
        if decode is not None:  # another task's portable export: its client codec decodes
            return self._decoded(decode, response, len(texts))
        return self._predictions(response, len(texts), texts, text_pairs)

    def task(self) -> str:
        """`text-classification`, or the task of a `TaskCodec` whose outputs the signature has
        (cached; read with GetModelMetadata)."""
        codec = self._codec()
        if codec is not None:
            return codec.task
        with self._lock:
            takes_tokens = self._takes_tokens
        return (self._tokenizer_task() if takes_tokens else None) or "text-classification"

    def _tokenizer_task(self) -> str | None:
        """The task of the tokenizer's export when it is not text classification (portable
        exports of other tasks return token-level outputs that only their codec reads)."""
        task = getattr(self.tokenizer, "task", None)
        return task if task not in (None, "text-classification") else None

    def _codec(self):
        """The signature's `TaskCodec`, or None for a text classifier (cached)."""
        with self._lock:
            if self._codec_known:
                return self._task_codec
        from serving.task_codec import codec_for_outputs

        signature = self._signature()
        codec = codec_for_outputs(signature.outputs)
        takes_tokens = takes_token_ids(signature)
        with self._lock:
            self._task_codec, self._takes_tokens = codec, takes_tokens
            self._codec_known = True
        return codec

    def problem_type(self) -> str:
        """`single-label`, `multi-label` or `regression`, from the signature's outputs (cached;
        read with GetModelMetadata).

        Raises:
            ServingError: the call failed, or the signature has none of the known outputs.
        """
        with self._lock:
            if self._problem_type is not None:
                return self._problem_type
        problem_type = self._signature_problem_type(self._signature())
        with self._lock:
            self._problem_type = problem_type
        return problem_type

    def label_names(self) -> list[str]:
        """The model's label names in class order (cached; read from the `classes` output of
        one Predict with an empty text). A regression model has no classes: [] (its target's
        name is not in the served graph; see `problem_type`)."""
        with self._lock:
            if self._label_names is not None:
                return list(self._label_names)
        signature = self._signature()
        problem_type = self._signature_problem_type(signature)
        with self._lock:
            self._problem_type = problem_type
        if problem_type not in (SINGLE_LABEL, MULTI_LABEL):  # regression and other tasks
            with self._lock:
                self._label_names = []
            return []
        request = self._request()
        for alias, info in signature.inputs.items():
            if info.dtype == types_pb2.DT_STRING:
                request.inputs[alias].CopyFrom(_string_tensor([""]))
        if takes_token_ids(signature):  # one input of one token: the classes do not depend on it
            for alias, tensor in placeholder_token_inputs(signature).items():
                request.inputs[alias].CopyFrom(tensor)
        request.output_filter.append("classes")
        response = self._call("Predict", request)
        classes = self._output(response, "classes")
        names = [_text(value) for value in classes.reshape(classes.shape[0], -1)[0]]
        with self._lock:
            self._label_names = names
        return list(names)

    def close(self) -> None:
        self._replicas.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _request(self) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.signature_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        return request

    def _signature(self):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        response = self._call("GetModelMetadata", request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        if self.signature_name not in signatures.signature_def:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{self.signature_name}" not found.')
        return signatures.signature_def[self.signature_name]

    def _fill_token_inputs(self, request, texts: Sequence[str],
                           text_pairs: Sequence[str] | None):
        """Tokenises into `request`; returns the tokenizer's decoder of the response (None for
        text classifiers)."""
        if self.tokenizer is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Signature '{self.signature_name}' of model '{self.model_name}' takes token ids "
                f"({', '.join(TOKEN_INPUTS)}), not text: it was exported with --portable. "
                f"Expected a tokenizer to tokenise with: Client(..., tokenizer=ClientTokenizer."
                f"from_path(<the model's base path or version directory>)), or --tokenizer DIR "
                f"on the command line. Received: no tokenizer")
        try:
            return self.tokenizer.fill_request(request, texts, text_pairs)
        except ValueError as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None

    def _decoded(self, decode, response, count: int, task: str | None = None
                 ) -> list[Prediction]:
        """`decode(outputs)` of the response's outputs, checked to have `count` rows; a
        ValueError of `decode` is INTERNAL, naming `task` (default: the tokenizer's)."""
        outputs = {alias: tensor_codec.to_ndarray(tensor)
                   for alias, tensor in response.outputs.items()}
        try:
            predictions = decode(outputs)
        except ValueError as error:
            task = self._tokenizer_task() if task is None else task
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                f"The response of model '{self.model_name}' ({task}) is not "
                f"as expected: {error}") from None
        if len(predictions) != count:
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                f"The response of model '{self.model_name}' has {len(predictions)} rows for "
                f"{count} inputs.")
        return predictions

    def _call(self, method: str, request):
        """Calls `method` of the PredictionService with a deadline on the next replica;
        retries `retry_codes`: at once on a replica this call has not tried yet, else with
        exponential backoff (each wait drawn between half and all of 0.1 s x 2^attempt,
        capped at 5 s, so that many clients turned away at once do not come back at once).
        With several replicas, NOT_FOUND (a replica without the model or version: still
        loading it, or unloading it while it shuts down) is also tried on the replicas this
        call has not tried yet, at once. Calls fail fast (no `wait_for_ready`): a replica that
        is down answers UNAVAILABLE at once and the retry goes elsewhere."""
        tried: set[int] = set()
        replica = self._replicas.pick()
        for attempt in range(self.retries + 1):
            try:
                response = getattr(replica.stub, method)(request, timeout=self.timeout)
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
                details = (error.details() if hasattr(error, "details") else None) or str(error)
                transient = code in self.retry_codes
                elsewhere = (code == grpc.StatusCode.NOT_FOUND
                             and len(self._replicas.replicas) > 1)
                if transient or elsewhere:
                    self._replicas.failed(replica)
                else:
                    self._replicas.succeeded(replica)  # it answered: it is up
                tried.add(replica.index)
                if (transient or elsewhere) and attempt < self.retries:
                    failed, replica = replica, self._replicas.pick(tried)
                    delay = 0.0
                    if replica.index in tried:  # every replica failed once
                        if not transient:  # NOT_FOUND everywhere: it is not a replica's
                            raise ServingError(code, details) from None
                        delay = min(_BACKOFF_SECONDS * 2**attempt, _MAX_BACKOFF_SECONDS)
                        delay *= random.uniform(0.5, 1.0)
                    logger.warning("%s on %s failed with %s (%s); retrying on %s in %.2f s",
                                   method, failed.target, code.name, details, replica.target,
                                   delay)
                    time.sleep(delay)
                    continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    details = f"{details} (timeout {self.timeout} s)"
                raise ServingError(code, details) from None
            self._replicas.succeeded(replica)
            return response
        raise AssertionError("unreachable")

    def _signature_problem_type(self, signature) -> str:
        from serving.task_codec import codec_for_outputs

        codec = codec_for_outputs(signature.outputs)
        if codec is not None:
            return codec.task
        takes_tokens = takes_token_ids(signature)
        if takes_tokens and self._tokenizer_task() is not None:
            return self._tokenizer_task()
        problem_type = _problem_type(signature.outputs)
        if problem_type is None:
            hint = (". It takes token ids (a --portable export): give the export's tokenizer "
                    "(tokenizer=ClientTokenizer.from_path(...), --tokenizer DIR), which knows "
                    "its task." if takes_tokens and self.tokenizer is None else "")
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Signature '{self.signature_name}' of model '{self.model_name}' is not a "
                f"tfinetune classifier. Expected the outputs {_expected_outputs()}. Received: "
                f"{sorted(signature.outputs)}{hint}")
        return problem_type

    def _output(self, response, alias: str) -> np.ndarray:
        if alias not in response.outputs:
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                f"The response of model '{self.model_name}' has no '{alias}' output. Expected "
                f"the outputs {_expected_outputs()}. Received: {sorted(response.outputs)}")
        return tensor_codec.to_ndarray(response.outputs[alias])

    def _predictions(self, response, count: int, texts: Sequence[str] = (),
                     text_pairs: Sequence[str] | None = None) -> list[Prediction]:
        from serving.task_codec import codec_for_outputs

        codec = codec_for_outputs(response.outputs)
        if codec is not None:
            return self._decoded(
                lambda outputs: codec.predictions(outputs, list(texts),
                                                  list(text_pairs) if text_pairs else None),
                response, count, codec.task)
        problem_type = _problem_type(response.outputs)
        if problem_type is None:
            self._output(response, "probabilities")  # raises, naming what was expected
        if problem_type == REGRESSION:
            values = self._output(response, "value").reshape(-1)
            self._check_rows(values, count)
            return [Prediction(value=float(value)) for value in values]
        classes = self._output(response, "classes")
        self._check_rows(classes, count)
        if self._label_names is None:
            with self._lock:
                self._label_names = [_text(value) for value in classes[0]]
        if problem_type == MULTI_LABEL:
            scores = self._output(response, "scores")
            predicted = self._output(response, "predicted")
            self._check_rows(scores, count)
            self._check_rows(predicted, count)
            return [
                Prediction(
                    labels=[_text(name) for name, on in zip(classes[i], predicted[i]) if on],
                    scores={_text(name): float(s) for name, s in zip(classes[i], scores[i])})
                for i in range(count)
            ]
        probabilities = self._output(response, "probabilities")
        label_ids = self._output(response, "label_id").reshape(-1)
        labels = self._output(response, "label").reshape(-1)
        self._check_rows(probabilities, count)
        return [
            Prediction(
                label=_text(labels[i]),
                label_id=int(label_ids[i]),
                probabilities={_text(name): float(p)
                               for name, p in zip(classes[i], probabilities[i])})
            for i in range(count)
        ]

    def _check_rows(self, values: np.ndarray, count: int) -> None:
        if values.ndim == 0 or values.shape[0] != count:
            rows = values.shape[0] if values.ndim else 0
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                f"The response of model '{self.model_name}' has {rows} rows for {count} inputs.")


def _expected_outputs() -> str:
    return " or ".join(str(list(outputs)) for outputs in _OUTPUTS.values())
