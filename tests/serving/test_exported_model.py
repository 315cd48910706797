"""End to end: `export.export_model` of a tiny fine-tuned run, served, queried on raw text.

The gRPC probabilities must equal the in-memory model's (transformers tokenizer + TF model)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Client
from serving import Server
from tests.serving.models import predict_request

TEXTS = ["a good movie", "the plot was awful and boring", "wonderful!",
         "it was fine, the acting was not great but the music is brilliant"]
PAIRS = ["really good", "terrible", "the cast", "so dull"]


def in_memory_probabilities(run_dir, texts, text_pairs=None) -> np.ndarray:
    import yaml
    from transformers import AutoTokenizer
    from transformers import TFAutoModelForSequenceClassification

    max_length = yaml.safe_load((run_dir / "fit_config.yaml").read_text())["max_length"]
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = TFAutoModelForSequenceClassification.from_pretrained(run_dir)
    encoded = tokenizer(texts, text_pairs, padding=True, truncation=True, max_length=max_length,
                        return_tensors="tf")
    return tf.nn.softmax(model(dict(encoded)).logits, axis=-1).numpy()


def export_run(run_dir, base):
    export = pytest.importorskip("export")
    try:
        export_model = export.export_model
    except (AttributeError, ImportError) as error:
        pytest.skip(f"export.export_model is not available yet: {error}")
    return export_model(run_dir, base)


def serve_export(tmp_path_factory, run_dir, name):
    base = tmp_path_factory.mktemp("exported") / name
    export_run(run_dir, base)
    return Server({name: base}, port=0, file_system_poll_wait_seconds=0).start()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_run_dir):
    server = serve_export(tmp_path_factory, tiny_run_dir, "single")
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="module")
def exported_pair(tmp_path_factory, tiny_pair_run_dir):
    server = serve_export(tmp_path_factory, tiny_pair_run_dir, "pair")
    yield server
    server.stop(grace=5)


def test_predict_on_raw_text_equals_the_in_memory_model(exported, tiny_run_dir):
    with grpc.insecure_channel(f"127.0.0.1:{exported.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(
            predict_request("single", {"text": np.array([t.encode() for t in TEXTS])}),
            timeout=60)

    served = tf.make_ndarray(response.outputs["probabilities"])
    np.testing.assert_allclose(served, in_memory_probabilities(tiny_run_dir, TEXTS), atol=1e-4)
    assert tf.make_ndarray(response.outputs["classes"]).tolist()[0] == [b"negative", b"positive"]


@pytest.mark.slow
def test_client_on_a_pair_model_equals_the_in_memory_model(exported_pair, tiny_pair_run_dir):
    with Client(f"127.0.0.1:{exported_pair.port}", "pair") as client:
        predictions = client.predict(TEXTS, PAIRS)
        labels = client.label_names()

    expected = in_memory_probabilities(tiny_pair_run_dir, TEXTS, PAIRS)
    served = np.array([list(p.probabilities.values()) for p in predictions])
    np.testing.assert_allclose(served, expected, atol=1e-4)
    assert labels == ["negative", "positive"]
    assert [p.label for p in predictions] == [labels[i] for i in expected.argmax(axis=1)]


def test_classify_signature_over_tf_examples(exported, tiny_run_dir):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "single"
    request.model_spec.signature_name = "classify"
    for text in TEXTS:
        example = request.input.example_list.examples.add()
        example.features.feature["text"].bytes_list.value.append(text.encode())

    with grpc.insecure_channel(f"127.0.0.1:{exported.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Classify(request, timeout=60)

    scores = [[c.score for c in row.classes] for row in response.result.classifications]
    labels = [[c.label for c in row.classes] for row in response.result.classifications]
    np.testing.assert_allclose(scores, in_memory_probabilities(tiny_run_dir, TEXTS), atol=1e-4)
    assert labels == [["negative", "positive"]] * len(TEXTS)


def test_the_exports_warmup_requests_are_replayed_before_serving(exported, caplog):
    """`tfinetune export` writes assets.extra/tf_serving_warmup_requests (3 Predict requests and
    1 Classify); the server replays every one of them while loading the version."""
    import logging

    base = exported.model_manager.model_config("single").base_path
    warmup_file = base / "1" / "assets.extra" / "tf_serving_warmup_requests"
    caplog.set_level(logging.INFO, logger="serving.model_warmup")

    Server({"again": base}, port=0, file_system_poll_wait_seconds=0).start().stop(grace=5)

    assert (f"Finished reading warmup data for model at {warmup_file}. Number of warmup records "
            f"read: 4.") in caplog.text
