"""`get_model_status`: TF Serving's `GetModelStatusImpl::GetModelStatus`, shared by the gRPC
`ModelService.GetModelStatus` and REST `GET /v1/models/NAME[/versions/N]`."""

from __future__ import annotations

import grpc

from serving.serving_error import ServingError

_CODE_NUMBERS = {code: code.value[0] for code in grpc.StatusCode}


def get_model_status(manager, request):
    """Answers a `GetModelStatusRequest` from `manager`'s version states.

    Like TF Serving, only `model_spec.version` narrows the answer; a `version_label` is ignored
    and every known version is reported.

    Args:
        manager: The `ModelManager` serving the models.
        request: A `GetModelStatusRequest`.

    Returns:
        A `GetModelStatusResponse`, versions highest first.

    Raises:
        ServingError: TF Serving's INVALID_ARGUMENT `Missing ModelSpec`, or NOT_FOUND
            `Could not find any versions of model <name>` /
            `Could not find version <v> of model <name>`.
    """
    from tensorflow_serving.apis import get_model_status_pb2

    if not request.HasField("model_spec"):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    name = request.model_spec.name
    statuses = manager.version_statuses(name)
    if request.model_spec.HasField("version"):
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
