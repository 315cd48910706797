"""`tfinetune predict` and `tfinetune score` against a `--portable` export (with `--tokenizer`)
give byte-identical output to the default export of the same run, through a real server."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from serving import Server
from tests.conftest import write_csv
from tests.portable_fixtures import KINDS
from tfinetune.cli import predict
from tfinetune.cli import score

TEXTS = ["a good movie", "the plot was AWFUL and boring", "wonderful!", "x",
         "it was fine, the acting was not great but the music is brilliant " * 3,
         "Café naïve ünïcode — ok", "bad bad film", "really fun"]
PAIRS = ["the film", "bad", "fun fun fun " * 8, "?", "great", "a", "dull", "really good"]


@pytest.fixture(scope="module")
def address(portable_bases, text_bases):
    models = {f"{kind}-portable": base for kind, base in portable_bases.items()}
    models.update({f"{kind}-text": base for kind, base in text_bases.items()})
    server = Server(models, port=0, file_system_poll_wait_seconds=0).start()
    yield f"127.0.0.1:{server.port}"
    server.stop(grace=5)


def invoke(command, args):
    return CliRunner().invoke(command, [str(arg) for arg in args])


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_predict_prints_the_same_lines_for_both_exports(kind, address, portable_bases):
    pairs = [arg for pair in PAIRS for arg in ("--text-pair", pair)] if kind == "pair" else []
    common = ["--server", address, *pairs, *TEXTS]

    text = invoke(predict.command, ["--model-name", f"{kind}-text", *common])
    portable = invoke(predict.command, ["--model-name", f"{kind}-portable",
                                        "--tokenizer", portable_bases[kind], *common])

    assert text.exit_code == 0, text.output
    assert portable.exit_code == 0, portable.output
    assert len(text.stdout.splitlines()) == len(TEXTS)
    assert portable.stdout == text.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_score_writes_identical_files_for_both_exports(kind, tmp_path, address,
                                                       portable_bases):
    rows = [{"id": str(i), "text": text, **({"text_pair": PAIRS[i]} if kind == "pair" else {}),
             **({"label": ("positive", "negative")[i % 2]} if kind == "single" else {})}
            for i, text in enumerate(TEXTS)]
    data = write_csv(tmp_path / "input.csv", rows)
    options = ["--server", address, "--batch-size", "3", "--concurrency", "2", "-q"]
    if kind == "pair":
        options += ["--text-pair-column", "text_pair"]
    if kind == "single":
        options += ["--label-column", "label"]

    text = invoke(score.command, [data, "--model-name", f"{kind}-text", "-o",
                                  tmp_path / "text.csv", *options])
    portable = invoke(score.command, [data, "--model-name", f"{kind}-portable", "-o",
                                      tmp_path / "portable.csv", "--tokenizer",
                                      portable_bases[kind] / "1", *options])

    assert text.exit_code == 0, text.output
    assert portable.exit_code == 0, portable.output
    written = (tmp_path / "text.csv").read_bytes()
    assert len(written.splitlines()) == len(TEXTS) + 1
    assert (tmp_path / "portable.csv").read_bytes() == written
    assert portable.stdout == text.stdout  # the metrics (single) or nothing


def test_predict_without_tokenizer_on_a_portable_model_says_to_pass_one(address):
    result = invoke(predict.command, ["--server", address, "--model-name", "single-portable",
                                      "a good movie"])

    assert result.exit_code == 1
    assert "FAILED_PRECONDITION" in result.output and "--tokenizer DIR" in result.output


def test_score_tokenizer_directory_without_an_export_is_a_usage_error(tmp_path):
    data = write_csv(tmp_path / "input.csv", [{"text": "good"}])
    (tmp_path / "empty").mkdir()

    # Refused before any server is contacted (nothing listens on port 1).
    result = invoke(score.command, [data, "--server", "127.0.0.1:1", "--model-name",
                                    "single-portable", "-o", tmp_path / "out.csv",
                                    "--tokenizer", tmp_path / "empty"])

    assert result.exit_code == 2
    assert "Invalid value for --tokenizer" in result.output
    assert "No exported model's tokenizer" in result.output
    assert not (tmp_path / "out.csv").exists()


def test_predict_and_score_pad_to_max_length_give_the_text_exports_answers(tmp_path, address,
                                                                           portable_bases):
    import json

    text = invoke(predict.command, ["--server", address, "--model-name", "single-text", *TEXTS])
    padded = invoke(predict.command, ["--server", address, "--model-name", "single-portable",
                                      "--tokenizer", portable_bases["single"],
                                      "--pad-to-max-length", *TEXTS])
    assert text.exit_code == 0 and padded.exit_code == 0, padded.output
    for got, want in zip(map(json.loads, padded.stdout.splitlines()),
                         map(json.loads, text.stdout.splitlines()), strict=True):
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4)

    data = write_csv(tmp_path / "in.csv", [{"text": text} for text in TEXTS])
    scored = invoke(score.command, [data, "--server", address, "--model-name", "single-portable",
                                    "--tokenizer", portable_bases["single"],
                                    "--pad-to-max-length", "-o", tmp_path / "out.csv"])
    assert scored.exit_code == 0, scored.output
    assert len((tmp_path / "out.csv").read_text().splitlines()) == len(TEXTS) + 1
