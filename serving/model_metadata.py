"""`get_model_metadata`: TF Serving's `GetModelMetadataImpl::GetModelMetadata`, shared by the
gRPC `PredictionService.GetModelMetadata` and REST `GET /v1/models/NAME/metadata`."""

from __future__ import annotations

import grpc

from serving.serving_error import ServingError

SIGNATURE_DEF = "signature_def"  # GetModelMetadataImpl::kSignatureDef, the only field


def get_model_metadata(manager, request):
    """Answers a `GetModelMetadataRequest`: the servable's `SignatureDefMap`, packed.

    Args:
        manager: The `ModelManager` serving the models.
        request: A `GetModelMetadataRequest`.

    Returns:
        A `GetModelMetadataResponse` whose `model_spec` names the resolved version.

    Raises:
        ServingError: TF Serving's INVALID_ARGUMENT texts for a missing ModelSpec, no or an
            unsupported `metadata_field`, and the servable-resolution errors of
            `ModelManager.servable`.
    """
    from tensorflow_serving.apis import get_model_metadata_pb2

    if not request.HasField("model_spec"):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    if not request.metadata_field:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "GetModelMetadataRequest must specify at least one metadata_field")
    for metadata_field in request.metadata_field:
        if metadata_field != SIGNATURE_DEF:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Metadata field {metadata_field} is not supported")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    with manager.servable(request.model_spec) as servable:
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF].Pack(servable.signature_def_map)
    return response
