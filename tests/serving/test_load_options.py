"""`--saved_model_tags`, `--max_num_load_retries` and `--load_retry_interval_micros`."""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Server
from serving import ServingError
from tests.serving.lifecycle_models import build_half_plus_two_heads
from tests.serving.models import copy_version
from tests.serving.models import predict_request
from tests.serving.models import tfserving_testdata
from tfinetune.cli.serve import command

TAGS_HINT = ("To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
             "`saved_model_cli`")


@pytest.fixture(scope="module")
def tagged_base(tmp_path_factory):
    """A model whose only MetaGraphDef is tagged {serve, custom}."""
    base = tmp_path_factory.mktemp("tagged") / "m"
    build_half_plus_two_heads(base / "1", tags=("serve", "custom"))
    return base


def test_the_tag_set_selects_the_meta_graph(tagged_base):
    server = Server({"m": tagged_base}, port=0, file_system_poll_wait_seconds=0,
                    saved_model_tags=("custom", "serve")).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict_request("m", {"x": np.array([[2.0]], np.float32)}), timeout=30)
    finally:
        server.stop(grace=5)

    assert list(response.outputs["y"].float_val) == [3.0]


def test_a_tag_set_the_saved_model_lacks_fails_with_tf_servings_text(tagged_base):
    """The tag set must equal a MetaGraphDef's tags: {serve} alone does not match."""
    with pytest.raises(ServingError) as raised:
        Server({"m": tagged_base}, port=0, file_system_poll_wait_seconds=0).start()

    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.message == (
        f"Failed to load version 1 of model 'm' from {tagged_base / '1'}: Could not find meta "
        f"graph def matching supplied tags: {{ serve }}. {TAGS_HINT}")


def test_tf_servings_half_plus_two_with_a_gpu_tag():
    base = tfserving_testdata("saved_model_half_plus_two_cpu")

    with pytest.raises(ServingError) as raised:
        Server({"m": base}, port=0, file_system_poll_wait_seconds=0,
               saved_model_tags=("serve", "gpu")).start()

    assert raised.value.message.endswith(
        f": Could not find meta graph def matching supplied tags: {{ gpu serve }}. {TAGS_HINT}")


def test_cli_passes_comma_separated_tags(tagged_base):
    result = CliRunner().invoke(command, [f"--model_base_path={tagged_base}", "--port=0",
                                          "--saved_model_tags=serve,gpu",
                                          "--file_system_poll_wait_seconds=0"])

    assert result.exit_code == 1
    assert f"matching supplied tags: {{ gpu serve }}. {TAGS_HINT}" in result.output


def broken_server(tmp_path, model_bases, **options):
    base = tmp_path / "m"
    base.mkdir()
    copy_version(model_bases["tf2"] / "1", base, 1)
    server = Server({"m": base}, port=0, file_system_poll_wait_seconds=-1, **options).start()
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"garbage")
    return server


def load_attempts(caplog) -> int:
    return sum(r.getMessage().startswith("Loading version 2 ") for r in caplog.records)


def test_retries_wait_load_retry_interval_micros(tmp_path, model_bases, caplog):
    server = broken_server(tmp_path, model_bases, max_num_load_retries=5,
                           load_retry_interval_micros=3_600_000_000)
    caplog.set_level(logging.INFO, logger="serving.model_manager")
    try:
        for _ in range(4):
            server.model_manager.poll()
    finally:
        server.stop(grace=5)

    assert load_attempts(caplog) == 1  # the next attempt is an hour away


def test_zero_retries_never_retry(tmp_path, model_bases, caplog):
    server = broken_server(tmp_path, model_bases, max_num_load_retries=0,
                           load_retry_interval_micros=0)
    caplog.set_level(logging.INFO, logger="serving.model_manager")
    try:
        for _ in range(4):
            server.model_manager.poll()
        states = [(s.version, s.state.name) for s in server.model_manager.version_statuses("m")]
    finally:
        server.stop(grace=5)

    assert load_attempts(caplog) == 1
    assert states == [(2, "END"), (1, "AVAILABLE")]


def test_cli_plumbs_the_retry_flags(monkeypatch, tmp_path):
    """The flags reach ServerOptions (the run then stops at the missing base path)."""
    import serving.server

    seen = {}
    original = serving.server.Server.__init__

    def spy(self, models=None, *, options=None, **kwargs):
        seen.update(retries=options.max_num_load_retries,
                    interval=options.load_retry_interval_micros)
        original(self, models, options=options, **kwargs)

    monkeypatch.setattr(serving.server.Server, "__init__", spy)
    result = CliRunner().invoke(command, [f"--model_base_path={tmp_path / 'absent'}",
                                          "--max_num_load_retries=2",
                                          "--load_retry_interval_micros=1000"])

    assert result.exit_code == 1
    assert seen == {"retries": 2, "interval": 1000}
