"""`ModelServicer`: TF Serving's `tensorflow.serving.ModelService` over a `ModelManager`."""

from __future__ import annotations

import logging

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc

from serving.model_config_list import ModelConfigList
from serving.model_manager import ModelManager
from serving.model_status import get_model_status
from serving.serving_error import ServingError
from serving.serving_error import aborts_on_error
from serving.serving_error import grpc_message

logger = logging.getLogger(__name__)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest with TF Serving's semantics and texts."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    @aborts_on_error
    def GetModelStatus(self, request, context):  # noqa: N802  (gRPC method name)
        return get_model_status(self._manager, request)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        """Replaces the served models with `request.config` (TF Serving's
        `ModelServiceImpl::HandleReloadConfigRequest`): models left out are unloaded, new ones
        loaded before the call returns. A failure is both the RPC status and
        `response.status`, as in TF Serving (gRPC then sends only the status)."""
        from tensorflow_serving.apis import model_management_pb2

        response = model_management_pb2.ReloadConfigResponse()
        try:
            self._reload(request.config)
        except ServingError as error:
            failure = error
        except Exception as error:  # noqa: BLE001  (the server must answer every request)
            logger.exception("Unexpected error in HandleReloadConfigRequest")
            failure = ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        else:
            response.status.error_code = 0  # OK
            return response
        logger.error("ReloadConfig failed: %s", failure.message)
        response.status.error_code = failure.code.value[0]
        response.status.error_message = failure.message
        context.set_code(failure.code)
        context.set_details(grpc_message(failure.message))
        return response

    def _reload(self, config) -> None:
        if config.WhichOneof("config") != "model_config_list":
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "ServerModelConfig type not supported by "
                               "HandleReloadConfigRequest. Only ModelConfigList is currently "
                               "supported")
        for index, model in enumerate(config.model_config_list.config):
            logger.info("Config entry index: %d path: %s name: %s platform: %s", index,
                        model.base_path, model.name, model.model_platform)
        self._manager.reload_config(ModelConfigList.from_proto(config))
