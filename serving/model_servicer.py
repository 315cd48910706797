"""`ModelServicer`: TF Serving's `tensorflow.serving.ModelService` over a `ModelManager`."""

from __future__ import annotations

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc

from serving.model_manager import ModelManager
from serving.model_status import get_model_status
from serving.serving_error import ServingError
from serving.serving_error import aborts_on_error


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus with TF Serving's semantics; HandleReloadConfigRequest answers
    UNIMPLEMENTED (models are configured on the command line)."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    @aborts_on_error
    def GetModelStatus(self, request, context):  # noqa: N802  (gRPC method name)
        return get_model_status(self._manager, request)

    @aborts_on_error
    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "HandleReloadConfigRequest is not implemented by this server; "
                           "restart it with the new --model_name/--model_base_path.")
