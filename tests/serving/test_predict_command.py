"""`tfinetune predict` through CliRunner against the test server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.serving.models import LABELS
from tests.serving.models import expected_probabilities
from tfinetune.cli.predict import command


@pytest.fixture(scope="module")
def address(server):
    return f"127.0.0.1:{server.port}"


def rows(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def assert_row(row: dict, text: str, text_pair: str | None = None):
    expected = expected_probabilities(text, text_pair)
    assert list(row["probabilities"]) == LABELS
    np.testing.assert_allclose(list(row["probabilities"].values()), expected, atol=1e-6)
    assert row["label"] == LABELS[int(np.argmax(expected))]


def test_prints_one_json_line_per_text(address):
    texts = ["good film", "bad, bad film", "ünïcode good"]

    result = CliRunner().invoke(command, ["--server", address, "--model-name", "text", *texts])

    assert result.exit_code == 0, result.output
    assert [row["text"] for row in rows(result.stdout)] == texts
    for row, text in zip(rows(result.stdout), texts):
        assert set(row) == {"text", "label", "probabilities"}
        assert_row(row, text)


def test_reads_lines_from_stdin_in_batches(address):
    texts = [f"text {i} {'good' if i % 2 else 'bad'}" for i in range(5)]

    result = CliRunner().invoke(
        command, ["--server", address, "--model_name", "text", "--batch-size", "2"],
        input="\n".join(texts) + "\n\n")

    assert result.exit_code == 0, result.output
    assert [row["text"] for row in rows(result.stdout)] == texts
    for row, text in zip(rows(result.stdout), texts):
        assert_row(row, text)


def test_dash_reads_stdin(address):
    result = CliRunner().invoke(command, ["--server", address, "--model-name", "text", "-"],
                                input="good\n")

    assert result.exit_code == 0, result.output
    assert [row["label"] for row in rows(result.stdout)] == ["positive"]


def test_text_pairs(address):
    result = CliRunner().invoke(command, [
        "--server", address, "--model-name", "pair", "--model-version", "7",
        "good", "--text-pair", "bad bad", "bad", "--text-pair", "good good"])

    assert result.exit_code == 0, result.output
    found = rows(result.stdout)
    assert [(row["text"], row["text_pair"]) for row in found] == [
        ("good", "bad bad"), ("bad", "good good")]
    assert_row(found[0], "good", "bad bad")
    assert_row(found[1], "bad", "good good")


def test_text_pair_count_must_match(address):
    result = CliRunner().invoke(command, [
        "--server", address, "--model-name", "pair", "a", "b", "--text-pair", "c"])

    assert result.exit_code == 2
    assert "Expected 2 --text-pair values. Received: 1" in result.output


def test_server_errors_name_the_server_and_the_grpc_code(address):
    result = CliRunner().invoke(command, ["--server", address, "--model-name", "nope", "x"])

    assert result.exit_code == 1
    assert (f"Error: Predict on {address} (model 'nope') failed with NOT_FOUND: Servable not "
            f"found for request: Latest(nope)") in result.output


def test_unreachable_server(address):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(command, [
        "--server", f"127.0.0.1:{port}", "--model-name", "text", "--timeout", "2", "x"])

    assert result.exit_code == 1
    assert f"Predict on 127.0.0.1:{port} (model 'text') failed with UNAVAILABLE" in result.output
