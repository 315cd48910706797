"""`PredictionServicer`: TF Serving's `tensorflow.serving.PredictionService` over a
`ModelManager`."""

from __future__ import annotations

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.model_manager import ModelManager
from serving.model_metadata import get_model_metadata
from serving.serving_error import ServingError
from serving.serving_error import aborts_on_error


def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata with TF Serving's semantics and status
    texts. MultiInference answers UNIMPLEMENTED."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    @aborts_on_error
    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        _require_model_spec(request)
        with self._manager.servable(request.model_spec) as servable:
            return servable.predict(request)

    @aborts_on_error
    def Classify(self, request, context):  # noqa: N802
        _require_model_spec(request)
        with self._manager.servable(request.model_spec) as servable:
            return servable.classify(request)

    @aborts_on_error
    def Regress(self, request, context):  # noqa: N802
        _require_model_spec(request)
        with self._manager.servable(request.model_spec) as servable:
            return servable.regress(request)

    @aborts_on_error
    def MultiInference(self, request, context):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "MultiInference is not implemented by this server; send one "
                           "Classify or Regress request per signature instead.")

    @aborts_on_error
    def GetModelMetadata(self, request, context):  # noqa: N802
        return get_model_metadata(self._manager, request)
