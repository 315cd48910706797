"""`tfinetune bench serve` against a real gRPC server on port 0 serving a tiny exported model."""

import csv
import json
import os

import pytest
from click.testing import CliRunner

from tests.conftest import synthetic_sentiment_rows
from tests.conftest import write_csv
from tfinetune.cli import main


@pytest.fixture(scope="module")
def bench_server(tmp_path_factory, tiny_run_dir):
    from export.exporter import export_model
    from serving.server import Server

    base = tmp_path_factory.mktemp("bench-models") / "clf"
    export_model(tiny_run_dir, base)
    server = Server({"clf": base}, port=0, file_system_poll_wait_seconds=0).start()
    yield server
    server.stop(grace=5)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("bench-data") / "rows.csv",
                     synthetic_sentiment_rows(20, seed=3))


def bench(*args):
    return CliRunner().invoke(main.cli, ["bench", "serve", *[str(a) for a in args]])


def test_measures_each_level_prints_table_and_writes_json_and_csv(tmp_path, bench_server,
                                                                  data_file):
    json_path, csv_path = tmp_path / "out.json", tmp_path / "out.csv"
    result = bench("--server", f"127.0.0.1:{bench_server.port}", "--model-name", "clf",
                   "--data", data_file, "--concurrency", "1,3", "--requests", "30",
                   "--warmup-seconds", "0.2", "--rows-per-request", "2",
                   "--json", json_path, "--csv", csv_path)
    assert result.exit_code == 0, result.output + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["concurrency", "requests", "rows/s", "p50", "ms", "p95", "ms",
                                "p99", "ms", "errors", "client", "CPU"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "3"]
    assert "concurrency 3: " in result.stderr  # progress goes to stderr
    report = json.loads(json_path.read_text())
    assert report["settings"]["concurrency"] == [1, 3]
    assert report["settings"]["model_name"] == "clf"
    levels = report["levels"]
    assert [level["concurrency"] for level in levels] == [1, 3]
    for level in levels:
        # Exactly the requested number of measured requests, all successful.
        assert level["requests"] == 30 and level["errors"] == 0
        assert level["rows"] == 60
        latency = level["latency_ms"]
        assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p95"] \
            <= latency["p99"] <= latency["max"]
        assert level["rows_per_second"] == pytest.approx(60 / level["seconds"])
        # CPU share of the process (here the server runs in it too): at most every core.
        assert 0 < level["client_cpu"] < (os.cpu_count() or 1) + 0.5
        # Closed loop: throughput cannot exceed concurrency / mean latency (small slack).
        assert level["requests_per_second"] <= 1.05 * level["concurrency"] / (
            latency["mean"] / 1e3)
    rows = list(csv.DictReader(csv_path.open()))
    assert [row["concurrency"] for row in rows] == ["1", "3"]
    assert float(rows[1]["latency_p99_ms"]) == pytest.approx(levels[1]["latency_ms"]["p99"],
                                                             abs=1e-3)
    # The table shows the same numbers as the JSON.
    assert lines[2].split()[2] == f"{levels[1]['rows_per_second']:.1f}"


def test_duration_mode_counts_requests_in_the_window(bench_server, data_file):
    from tfinetune.bench_serve_config import BenchServeConfig
    from tfinetune.load_generator import LoadGenerator

    generator = LoadGenerator(BenchServeConfig(
        server=f"127.0.0.1:{bench_server.port}", model_name="clf", data=str(data_file),
        concurrency=(2,), warmup_seconds=0.1, duration_seconds=0.5))
    assert len(generator.texts) == 20
    [level] = generator.run()
    assert level.errors == 0 and level.requests > 0
    assert 0.5 <= level.seconds < 0.6
    assert level.requests_per_second == pytest.approx(level.requests / level.seconds)


@pytest.mark.parametrize("args, message", [
    (["--concurrency", "1,zero"], "--concurrency expects positive integers"),
    (["--concurrency", "0"], "--concurrency expects positive integers"),
    (["--rows-per-request", "0"], "Invalid value for '--rows-per-request'"),
    (["--text-column", "review"], "Column 'review' not found in"),
    (["--server", "no-port"], "--server expects HOST:PORT. Received: 'no-port'"),
])
def test_bad_arguments_give_clear_errors(args, message, data_file):
    result = bench("--model-name", "clf", "--data", data_file, *args)
    assert result.exit_code != 0
    assert message in result.output + result.stderr


def test_missing_data_file_and_unknown_model(bench_server, tmp_path, data_file):
    result = bench("--model-name", "clf", "--data", tmp_path / "missing.csv")
    assert result.exit_code == 1 and "File not found: " in result.stderr
    result = bench("--server", f"127.0.0.1:{bench_server.port}", "--model-name", "nope",
                   "--data", data_file, "--requests", "1")
    assert result.exit_code == 1
    assert "The first Predict request to model 'nope'" in result.stderr
    assert "NOT_FOUND" in result.stderr
