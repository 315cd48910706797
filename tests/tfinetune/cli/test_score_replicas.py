"""`tfinetune score` and `predict` with several `--server` replicas, against real servers of
the exported tiny model: requests are spread over both, one replica stopped mid-run loses no
row, `--tokenizer` (portable exports) works across replicas, and bad `--server` values are
refused before anything runs."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from tests.serving.test_client_replicas import CountedServer
from tests.tfinetune.test_batch_scorer import FakeClient
from tests.tfinetune.test_batch_scorer import write_rows
from tfinetune.cli import predict
from tfinetune.cli import score
from tfinetune.table_reader import TableReader


def run(command, *args):
    return CliRunner().invoke(command.command, [str(arg) for arg in args])


def sentiment_rows(n, seed):
    from tests.conftest import synthetic_sentiment_rows

    return [{"id": str(i), "text": row["text"]}
            for i, row in enumerate(synthetic_sentiment_rows(n, seed))]


@pytest.fixture(scope="module")
def model_base(tmp_path_factory, tiny_run_dir):
    from export.exporter import export_model

    base = tmp_path_factory.mktemp("models") / "clf"
    export_model(tiny_run_dir, base)
    return base


@pytest.fixture
def two_servers(model_base):
    servers = [CountedServer(model_base, name="clf"), CountedServer(model_base, name="clf")]
    yield servers
    for server in servers:
        server.stop()


def score_alone(model_base, source, out, *options):
    """The output of the same run against one server: the reference."""
    server = CountedServer(model_base, name="clf")
    try:
        result = run(score, source, "--server", server.target, "--model-name", "clf", "-o", out,
                     *options)
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    return out.read_bytes()


# ------------------------------------------------------------------------------ options


@pytest.fixture
def fake_client(monkeypatch):
    client = FakeClient()
    client.created = []

    def make_client(config, tls=None):
        client.created.append(config)
        return client

    monkeypatch.setattr(score, "_make_client", make_client)
    return client


def test_repeated_and_comma_separated_servers_reach_the_config(tmp_path, fake_client):
    source = write_rows(tmp_path / "in.csv", sentiment_rows(5, seed=1))
    tokenizer = tmp_path / "export"
    tokenizer.mkdir()
    result = run(score, source, "--model-name", "clf", "-o", tmp_path / "out.csv",
                 "--server", "10.0.0.1:8500", "--server", "10.0.0.2:8500, 10.0.0.3:8500",
                 "--server", "dns:///tfserving-headless:8500")
    assert result.exit_code == 0, result.output
    config = fake_client.created[0]
    assert config.servers == ("10.0.0.1:8500", "10.0.0.2:8500", "10.0.0.3:8500",
                              "dns:///tfserving-headless:8500")
    assert config.server == ",".join(config.servers)
    # Without --server: the default, one server.
    result = run(score, source, "--model-name", "clf", "-o", tmp_path / "out2.csv")
    assert result.exit_code == 0, result.output
    assert fake_client.created[1].servers == ("localhost:8500",)


@pytest.mark.parametrize("values, message", [
    (["a:1", ""], "Invalid --server address '': it is empty. Expected HOST:PORT"),
    (["a:1,,b:2"], "Invalid --server address '': it is empty"),
    (["a:1", "b"], "Invalid --server address 'b': no port in 'b'"),
    (["a:1,b:http"], "Invalid --server address 'b:http': 'b:http' is not HOST:PORT"),
])
def test_bad_server_values_are_refused_naming_the_option(tmp_path, fake_client, values,
                                                         message):
    source = write_rows(tmp_path / "in.csv", sentiment_rows(3, seed=1))
    servers = [arg for value in values for arg in ("--server", value)]
    received = values[0] if len(values) == 1 else values
    for command, args in ((score, [source, "-o", tmp_path / "out.csv"]), (predict, ["hi"])):
        result = run(command, "--model-name", "clf", *servers, *args)
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--server': " + message in result.stderr
        assert f"Received: --server={received!r}" in result.stderr
    assert fake_client.created == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


# ----------------------------------------------------------------------------- real servers


def test_one_replica_stopped_mid_run_loses_no_row(tmp_path, two_servers, model_base):
    """400 rows in 50 requests of 8, 4 in flight, spread over two replicas; one replica is
    stopped (grace 0: its requests in flight are cut) once it has served 8 requests. The run
    exits 0 with every row once, in order, no error, and the very bytes of a one-server run."""
    doomed, survivor = two_servers
    rows = sentiment_rows(400, seed=11)
    source = write_rows(tmp_path / "in.csv", rows)
    options = ["--batch-size", "8", "--concurrency", "4"]
    expected = score_alone(model_base, source, tmp_path / "alone.csv", *options)
    survivor_at_stop = []

    def stop_after(count):
        if count == 8 and not survivor_at_stop:
            survivor_at_stop.append(survivor.predicts)
            threading.Thread(target=doomed.stop).start()

    doomed.on_predict = stop_after
    out = tmp_path / "out.csv"
    result = run(score, source, "--server", doomed.target, "--server", survivor.target,
                 "--model-name", "clf", "-o", out, *options)
    assert result.exit_code == 0, result.output
    assert "400 ok, 0 failed" in result.stderr
    assert survivor_at_stop and survivor_at_stop[0] >= 3  # both served before the stop
    assert doomed.predicts >= 8
    scored = [row.values for row in TableReader(out)]
    assert [row["id"] for row in scored] == [row["id"] for row in rows]
    assert not any(row["error"] for row in scored)
    assert out.read_bytes() == expected
    # The survivor took over: it served everything after the stop (at least 50 - 8 batches).
    assert survivor.predicts >= 42


def test_predict_spreads_texts_over_replicas(two_servers):
    first, second = two_servers
    texts = [row["text"] for row in sentiment_rows(12, seed=3)]
    alone = run(predict, "--server", first.target, "--model-name", "clf", "--batch-size", "1",
                *texts)
    assert alone.exit_code == 0, alone.output
    first.predicts = second.predicts = 0
    spread = run(predict, "--server", f"{first.target},{second.target}", "--model-name", "clf",
                 "--batch-size", "1", *texts)
    assert spread.exit_code == 0, spread.output
    assert spread.stdout == alone.stdout
    assert [json.loads(line)["text"] for line in spread.stdout.splitlines()] == texts
    assert min(first.predicts, second.predicts) >= 5, (first.predicts, second.predicts)


@pytest.fixture(scope="module")
def portable_base(tmp_path_factory, tiny_run_dir):
    import export

    return export.export_model(tiny_run_dir, tmp_path_factory.mktemp("portable"),
                               portable=True).path.parent


def test_score_tokenises_for_portable_replicas(tmp_path, portable_base):
    """`--tokenizer` with several replicas of a `--portable` export: the same file as one
    server, both replicas used."""
    rows = sentiment_rows(120, seed=5)
    source = write_rows(tmp_path / "in.csv", rows)
    options = ["--batch-size", "8", "--tokenizer", portable_base]
    expected = score_alone(portable_base, source, tmp_path / "alone.csv", *options)
    servers = [CountedServer(portable_base, name="clf"), CountedServer(portable_base,
                                                                       name="clf")]
    try:
        out = tmp_path / "out.csv"
        result = run(score, source, "--server", servers[0].target, "--server",
                     servers[1].target, "--model-name", "clf", "-o", out, *options)
    finally:
        for server in servers:
            server.stop()
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == expected
    assert min(server.predicts for server in servers) >= 5


@pytest.mark.slow
def test_a_killed_serve_process_loses_no_row(tmp_path, model_base):
    """One replica is a real `tfinetune serve` process, SIGKILLed (no goodbye: its
    connections just break) once the in-process replica has served 12 requests; its request
    count is read from its Prometheus page just before. The run exits 0 with the bytes of a
    one-server run."""
    import signal
    import socket

    from tests.serving.models import metric_value
    from tests.serving.models import rest_request
    from tests.serving.serve_process import ServeProcess

    rows = sentiment_rows(600, seed=13)
    source = write_rows(tmp_path / "in.csv", rows)
    options = ["--batch-size", "8", "--concurrency", "4"]
    expected = score_alone(model_base, source, tmp_path / "alone.csv", *options)
    monitoring = tmp_path / "monitoring_config.txt"
    monitoring.write_text('prometheus_config: { enable: true, path: "/metrics" }\n')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        rest_port = probe.getsockname()[1]
    survivor = CountedServer(model_base, name="clf")
    victim_served = []
    try:
        with ServeProcess("--port=0", f"--rest_api_port={rest_port}", "--model_name=clf",
                          f"--model_base_path={model_base}", f"--monitoring_config_file="
                          f"{monitoring}", "--file_system_poll_wait_seconds=0") as victim:
            address = victim.wait_for(r"Serving model 'clf' version 1 on (\S+)").group(1)
            victim.wait_for(r"REST API on http://")

            def kill():
                _, _, page = rest_request(rest_port, "GET", "/metrics")
                victim_served.append(metric_value(page, ":tensorflow:serving:request_count",
                                                  model_name="clf", status="OK"))
                victim.process.send_signal(signal.SIGKILL)

            def kill_after(count):
                if count == 12:
                    threading.Thread(target=kill).start()

            survivor.on_predict = kill_after
            out = tmp_path / "out.csv"
            result = run(score, source, "--server", f"{address},{survivor.target}",
                         "--model-name", "clf", "-o", out, *options)
            assert victim.process.wait(timeout=30) == -signal.SIGKILL
    finally:
        survivor.stop()
    assert result.exit_code == 0, result.output
    assert "600 ok, 0 failed" in result.stderr
    assert victim_served and victim_served[0] >= 5  # both replicas served before the kill
    assert out.read_bytes() == expected
    assert survivor.predicts >= 75 - victim_served[0]
