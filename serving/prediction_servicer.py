"""`PredictionServicer`: TF Serving's `tensorflow.serving.PredictionService` over a
`ModelManager`."""

from __future__ import annotations

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.model_manager import ModelManager
from serving.serving_error import ServingError
from serving.serving_error import aborts_on_error

_SIGNATURE_DEF = "signature_def"


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
        _require_model_spec(request)
        if not request.metadata_field:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one metadata_field")
        for metadata_field in request.metadata_field:
            if metadata_field != _SIGNATURE_DEF:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Metadata field {metadata_field} is not supported")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        with self._manager.servable(request.model_spec) as servable:
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata[_SIGNATURE_DEF].Pack(servable.signature_def_map)
        return response
