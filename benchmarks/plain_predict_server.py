"""The serving benchmark's baseline: a plain per-request Python gRPC Predict server.

One `session.run` per request (the SavedModel loaded into a TF1 session, as TF Serving does),
no batching, no queueing beyond gRPC's thread pool. It implements only what the load
generator calls: `PredictionService/Predict` on the `serving_default` signature.

    .venv/bin/python benchmarks/plain_predict_server.py BASE_PATH/VERSION --port 8500
"""

from __future__ import annotations

import argparse
import concurrent.futures

from tfinetune import _environment  # noqa: F401  (TF environment before TensorFlow)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="a version directory (holds saved_model.pb)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=64, help="gRPC worker threads")
    args = parser.parse_args()

    import grpc
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the in-graph tokenizer's ops)
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], args.saved_model)
    signature = meta.signature_def["serving_default"]
    inputs = {key: info.name for key, info in signature.inputs.items()}
    outputs = {key: info.name for key, info in signature.outputs.items()}

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            feeds = {inputs[key]: tf.make_ndarray(tensor)
                     for key, tensor in request.inputs.items()}
            values = session.run(list(outputs.values()), feed_dict=feeds)
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for key, value in zip(outputs, values):
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=args.threads),
                         maximum_concurrent_rpcs=None)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
