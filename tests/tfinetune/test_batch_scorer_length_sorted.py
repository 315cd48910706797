"""`BatchScorer` with `sort_by_length`: requests of similar-length rows, output in input order."""

import random

import grpc
from click.testing import CliRunner

from tests.tfinetune.test_batch_scorer import FakeClient
from tests.tfinetune.test_batch_scorer import FakeError
from tests.tfinetune.test_batch_scorer import config
from tests.tfinetune.test_batch_scorer import read_output
from tests.tfinetune.test_batch_scorer import write_rows
from tfinetune.batch_scorer import BatchScorer


def mixed_length_rows(n, seed=0):
    rng = random.Random(seed)
    return [{"id": str(i), "text": f"r{i} " + "word " * rng.randint(0, 30)} for i in range(n)]


def test_requests_hold_rows_of_similar_length_and_output_keeps_input_order(tmp_path):
    rows = mixed_length_rows(100)
    source = write_rows(tmp_path / "in.csv", rows)
    client = FakeClient(delay=0.005)
    written = []
    result = BatchScorer(config(tmp_path, source, batch_size=8, concurrency=3,
                                sort_by_length=True)).score(client, progress=written.append)
    output = read_output(tmp_path / "out.csv")
    assert [row["id"] for row in output] == [str(i) for i in range(100)]
    for row, scored in zip(rows, output):
        assert scored["text"] == row["text"]
        assert float(scored["prob_positive"]) == client.prediction(row["text"]).probabilities[
            "positive"]
    assert (result.rows, result.failed) == (100, 0)
    assert sum(written) == 100 and max(written) <= 8
    # Chunks of 3 x 8 = 24 rows (the last has 4), each sent as ceil(rows / 8) requests.
    assert len(client.calls) == 4 * 3 + 1
    assert all(len(texts) <= 8 for texts, _ in client.calls)
    chunk_of = {row["text"]: int(row["id"]) // 24 for row in rows}
    by_chunk = {}
    for texts, _ in client.calls:
        [chunk] = {chunk_of[text] for text in texts}  # a request never mixes chunks
        by_chunk.setdefault(chunk, []).append(sorted(len(text) for text in texts))
    for calls in by_chunk.values():
        calls.sort()
        for shorter, longer in zip(calls, calls[1:]):
            assert shorter[-1] <= longer[0]  # length groups do not overlap
    # Less padding than consecutive rows: the sum over requests of (rows x longest row).
    padded = sum(len(texts) * max(map(len, texts)) for texts, _ in client.calls)
    in_order = sum(len(chunk) * max(len(r["text"]) for r in chunk)
                   for chunk in (rows[i:i + 8] for i in range(0, 100, 8)))
    assert padded < 0.8 * in_order


def test_in_flight_rows_stay_bounded(tmp_path):
    source = write_rows(tmp_path / "in.csv", mixed_length_rows(200, seed=1))
    written, worst = [], []
    client = FakeClient(delay=0.005)
    client.on_call = lambda c: worst.append(c.texts_received - sum(written))
    BatchScorer(config(tmp_path, source, batch_size=10, concurrency=3,
                       sort_by_length=True)).score(client, progress=written.append)
    assert max(worst) <= 3 * 10
    assert client.max_in_flight >= 2


def test_failed_request_fails_exactly_its_rows(tmp_path):
    rows = mixed_length_rows(48, seed=2)
    source = write_rows(tmp_path / "in.csv", rows)
    # A request-level failure (UNAVAILABLE would stop the run: the server is down).
    client = FakeClient(fail=lambda texts: FakeError(grpc.StatusCode.DEADLINE_EXCEEDED, "slow")
                        if any(text.startswith("r5 ") for text in texts) else None)
    result = BatchScorer(config(tmp_path, source, batch_size=6, concurrency=4,
                                sort_by_length=True)).score(client)
    [failed_call] = [texts for texts, _ in client.calls if any(t.startswith("r5 ") for t in texts)]
    output = read_output(tmp_path / "out.csv")
    assert [row["id"] for row in output] == [str(i) for i in range(48)]
    assert {row["text"] for row in output if row["error"]} == set(failed_call)
    assert all(row["error"] == "DEADLINE_EXCEEDED: slow" and row["label"] == ""
               for row in output if row["error"])
    assert result.failed == len(failed_call) == 6


def test_score_cli_flag_turns_it_on(tmp_path, monkeypatch):
    from tfinetune.cli import score

    source = write_rows(tmp_path / "in.csv", mixed_length_rows(10))
    client, created = FakeClient(), []
    monkeypatch.setattr(score, "_make_client",
                        lambda cfg, tls=None: created.append(cfg) or client)
    result = CliRunner().invoke(score.command, [str(source), "--model-name", "clf", "-o",
                                                str(tmp_path / "out.csv"), "--sort-by-length"])
    assert result.exit_code == 0, result.output
    assert created[0].sort_by_length is True
    assert len(read_output(tmp_path / "out.csv")) == 10
