"""`PredictionServicer`: TF Serving's `tensorflow.serving.PredictionService` over a
`ModelManager`."""

from __future__ import annotations

import grpc
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.model_manager import ModelManager
from serving.request_deadline import with_grpc_deadline
from serving.model_metadata import get_model_metadata
from serving.serving_error import ServingError
from serving.serving_error import aborts_on_error


def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress, MultiInference and GetModelMetadata with TF Serving's
    semantics and status texts."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    @aborts_on_error
    @with_grpc_deadline  # the RPC deadline bounds the session run
    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        _require_model_spec(request)
        with self._manager.servable(request.model_spec) as servable:
            return servable.predict(request)

    @aborts_on_error
    @with_grpc_deadline  # the RPC deadline bounds the session run
    def Classify(self, request, context):  # noqa: N802
        _require_model_spec(request)
        with self._manager.servable(request.model_spec) as servable:
            return servable.classify(request)

    @aborts_on_error
    @with_grpc_deadline  # the RPC deadline bounds the session run
    def Regress(self, request, context):  # noqa: N802
        _require_model_spec(request)
        with self._manager.servable(request.model_spec) as servable:
            return servable.regress(request)

    @aborts_on_error
    @with_grpc_deadline  # the RPC deadline bounds the session run
    def MultiInference(self, request, context):  # noqa: N802
        # TF Serving resolves the servable from the first task's ModelSpec (an empty one when
        # there is no task); the servable checks that every task names the same model.
        model_spec = (request.tasks[0].model_spec if request.tasks
                      else model_pb2.ModelSpec())
        with self._manager.servable(model_spec) as servable:
            return servable.multi_inference(request)

    @aborts_on_error
    def GetModelMetadata(self, request, context):  # noqa: N802
        return get_model_metadata(self._manager, request)
