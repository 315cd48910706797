"""`ModelServicer`: TF Serving's `tensorflow.serving.ModelService` over a `ModelManager`."""

from __future__ import annotations

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc

from serving.model_manager import ModelManager
from serving.serving_error import ServingError
from serving.serving_error import aborts_on_error

_CODE_NUMBERS = {code: code.value[0] for code in grpc.StatusCode}


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus with TF Serving's semantics; HandleReloadConfigRequest answers
    UNIMPLEMENTED (models are configured on the command line)."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    @aborts_on_error
    def GetModelStatus(self, request, context):  # noqa: N802  (gRPC method name)
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        name = request.model_spec.name
        statuses = self._manager.version_statuses(name)
        if request.model_spec.HasField("version"):  # TF Serving ignores version_label here
            number = request.model_spec.version.value
            statuses = [status for status in statuses if status.version == number]
            if not statuses:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {number} of model {name}")
        elif not statuses:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            entry = response.model_version_status.add()
            entry.version = status.version
            entry.state = int(status.state)
            entry.status.SetInParent()  # OK status present, as TF Serving's ToStatusProto
            if status.error is not None:
                entry.status.error_code = _CODE_NUMBERS[status.error.code]
                entry.status.error_message = status.error.message
        return response

    @aborts_on_error
    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "HandleReloadConfigRequest is not implemented by this server; "
                           "restart it with the new --model_name/--model_base_path.")
