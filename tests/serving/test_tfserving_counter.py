"""TF Serving's stateful `saved_model_counter`: its variable keeps its value across requests.

The signatures' outputs are reference tensors (DT_FLOAT_REF), which the server must fetch and
return as floats, as TF Serving does. Skipped when ../shared/tfserving-testdata is absent."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tests.serving.models import predict_request
from tests.serving.models import tfserving_testdata


@pytest.fixture()
def counter():
    import grpc

    from serving import Server

    server = Server({"counter": tfserving_testdata("saved_model_counter")}, port=0,
                    file_system_poll_wait_seconds=0).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def call(signature, inputs=None):
        response = stub.Predict(predict_request("counter", inputs or {}, signature=signature),
                                timeout=30)
        output = response.outputs["output"]
        assert output.dtype == tf.float32.as_datatype_enum
        return float(tf.make_ndarray(output))

    yield call
    channel.close()
    server.stop(grace=5)


def test_counter_state_persists_across_requests(counter):
    assert counter("get_counter") == 0.0
    assert counter("incr_counter") == 1.0
    assert counter("incr_counter") == 2.0
    assert counter("incr_counter_by", {"delta": np.array(3.0, np.float32)}) == 5.0
    assert counter("get_counter") == 5.0
    assert counter("reset_counter") == 0.0
    assert counter("get_counter") == 0.0
