"""BatchScorer against an in-process fake client (the real gRPC path is in cli/test_score.py)."""

import csv
import dataclasses
import json
import random
import threading
import time

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfinetune.batch_scorer import BatchScorer
from tfinetune.errors import ConfigError
from tfinetune.errors import DataError
from tfinetune.errors import ScoringError
from tfinetune.score_config import ScoreConfig
from tfinetune.table_reader import TableReader

LABELS = ["negative", "positive"]


@dataclasses.dataclass(frozen=True)
class FakePrediction:
    label: str
    label_id: int
    probabilities: dict


class FakeError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def fake_probability(text, pair=None):
    """A deterministic 'model': positive probability from the text's characters."""
    return (sum(map(ord, text + (pair or ""))) % 997) / 997


class FakeClient:
    """Answers like serving.Client; can fail, delay, and records concurrency."""

    def __init__(self, labels=LABELS, fail=None, delay=0.0, label_error=None):
        self.labels = list(labels)
        self.fail = fail  # texts -> exception or None
        self.delay = delay
        self.label_error = label_error
        self.calls = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.texts_received = 0
        self.on_call = None
        self.closed = False
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.closed = True

    def label_names(self):
        if self.label_error:
            raise self.label_error
        return list(self.labels)

    def predict(self, texts, text_pairs=None):
        with self._lock:
            self.calls.append((list(texts), None if text_pairs is None else list(text_pairs)))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.texts_received += len(texts)
            if self.on_call:
                self.on_call(self)
        try:
            if self.delay:
                time.sleep(random.uniform(0, self.delay))  # finish out of order
            error = self.fail(texts) if self.fail else None
            if error:
                raise error
            return [self.prediction(text, pair) for text, pair in
                    zip(texts, text_pairs if text_pairs is not None else [None] * len(texts))]
        finally:
            with self._lock:
                self.in_flight -= 1

    def prediction(self, text, pair=None):
        positive = fake_probability(text, pair)
        probabilities = {self.labels[0]: 1 - positive, self.labels[1]: positive}
        label_id = int(positive >= 0.5)
        return FakePrediction(self.labels[label_id], label_id, probabilities)


def write_rows(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def review_rows(n):
    return [{"id": str(i), "text": f"review number {i} {'good' if i % 3 else 'bad'}",
             "gold": LABELS[i % 2]} for i in range(n)]


def config(tmp_path, input_path, **options):
    options.setdefault("output", tmp_path / "out.csv")
    options.setdefault("server", "testhost:1")
    return ScoreConfig(input=input_path, model_name="clf", **options)


def read_output(path):
    return [row.values for row in TableReader(path)]


def test_rows_written_in_input_order_with_all_columns(tmp_path):
    rows = review_rows(250)
    source = write_rows(tmp_path / "in.csv", rows)
    client = FakeClient(delay=0.01)
    progress = []
    result = BatchScorer(config(tmp_path, source, batch_size=16, concurrency=4)).score(
        client, progress=progress.append)
    output = read_output(tmp_path / "out.csv")
    assert list(output[0]) == ["id", "text", "gold", "label", "prob_negative",
                               "prob_positive", "error"]
    assert [row["id"] for row in output] == [row["id"] for row in rows]
    for row, scored in zip(rows, output):
        expected = client.prediction(row["text"])
        assert scored["label"] == expected.label
        assert float(scored["prob_positive"]) == expected.probabilities["positive"]
        assert float(scored["prob_negative"]) == expected.probabilities["negative"]
        assert scored["error"] == ""
    assert (result.rows, result.failed, result.labels) == (250, 0, LABELS)
    assert progress == [16] * 15 + [10]
    assert len(client.calls) == 16 and all(len(texts) <= 16 for texts, _ in client.calls)
    assert client.max_in_flight <= 4
    assert result.metrics is None
    assert not (tmp_path / "out.csv.partial").exists()


def test_in_flight_rows_are_bounded_by_concurrency_times_batch_size(tmp_path):
    source = write_rows(tmp_path / "in.csv", review_rows(400))
    written = []
    worst = []

    def on_call(client):
        worst.append(client.texts_received - sum(written))

    client = FakeClient(delay=0.005)
    client.on_call = on_call
    BatchScorer(config(tmp_path, source, batch_size=10, concurrency=3)).score(
        client, progress=written.append)
    assert max(worst) <= 3 * 10
    assert client.max_in_flight >= 2  # requests really overlap


def test_unavailable_after_retries_stops_the_run_keeping_rows_for_resume(tmp_path):
    """A server that stays UNAVAILABLE is down, not rejecting rows: the run stops (instead of
    failing every remaining row) and keeps what it wrote; --resume sends only the rest."""
    rows = review_rows(50)
    source = write_rows(tmp_path / "in.csv", rows)

    def fail(texts):
        if any("number 13 " in text for text in texts):
            return FakeError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
        return None

    client = FakeClient(fail=fail)
    with pytest.raises(ScoringError) as raised:
        BatchScorer(config(tmp_path, source, batch_size=8, concurrency=1)).score(client)
    message = str(raised.value)
    assert "became unavailable during the run: UNAVAILABLE: failed to connect" in message
    assert f"The 8 rows written so far are kept in {tmp_path / 'out.csv.partial'}" in message
    assert "--resume" in message
    assert not (tmp_path / "out.csv").exists()
    assert len(client.calls) == 2  # not split, no later batch sent

    healthy = FakeClient()
    result = BatchScorer(config(tmp_path, source, batch_size=8, resume=True)).score(healthy)
    output = read_output(tmp_path / "out.csv")
    assert [row["id"] for row in output] == [str(i) for i in range(50)]
    assert not any(row["error"] for row in output)
    assert [text for texts, _ in healthy.calls for text in texts] == [
        row["text"] for row in rows[8:]]
    assert (result.rows, result.failed, result.resumed) == (50, 0, 8)


def test_invalid_argument_batch_is_split_to_isolate_the_bad_row(tmp_path):
    rows = review_rows(40)
    rows[21]["text"] = "POISON"
    source = write_rows(tmp_path / "in.csv", rows)
    client = FakeClient(fail=lambda texts: FakeError(
        grpc.StatusCode.INVALID_ARGUMENT, "bad input") if "POISON" in texts else None)
    result = BatchScorer(config(tmp_path, source, batch_size=16)).score(client)
    output = read_output(tmp_path / "out.csv")
    assert [row["id"] for row in output if row["error"]] == ["21"]
    assert output[21]["error"] == "INVALID_ARGUMENT: bad input"
    assert result.failed == 1 and len(output) == 40


def test_unexpected_exception_in_client_becomes_row_error(tmp_path):
    source = write_rows(tmp_path / "in.csv", review_rows(5))
    client = FakeClient(fail=lambda texts: RuntimeError("boom"))
    result = BatchScorer(config(tmp_path, source)).score(client)
    assert result.failed == 5
    assert {row["error"] for row in read_output(tmp_path / "out.csv")} == {"RuntimeError: boom"}


def test_label_names_failure_fails_before_writing(tmp_path):
    source = write_rows(tmp_path / "in.csv", review_rows(5))
    out = tmp_path / "out.csv"
    out.write_text("previous output")
    client = FakeClient(label_error=FakeError(grpc.StatusCode.NOT_FOUND,
                                              "Servable not found for request: Latest(clf)"))
    with pytest.raises(ScoringError) as error:
        BatchScorer(config(tmp_path, source, overwrite=True)).score(client)
    message = str(error.value)
    assert "model 'clf'" in message and "testhost:1" in message
    assert "NOT_FOUND: Servable not found" in message
    assert out.read_text() == "previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]
    assert client.calls == []


def test_input_and_columns_checked_before_anything_is_sent(tmp_path):
    source = write_rows(tmp_path / "in.csv", [{"review": "x", "gold": "positive"}])
    with pytest.raises(DataError, match="Column 'text' not found in .*in.csv. Columns found: "
                                        r"\['review', 'gold'\]"):
        BatchScorer(config(tmp_path, source))
    with pytest.raises(DataError, match="Column 'label' not found"):
        BatchScorer(config(tmp_path, source, text_column="review", label_column="label"))
    with pytest.raises(DataError, match="File not found"):
        BatchScorer(config(tmp_path, tmp_path / "missing.csv"))


def test_metrics_exclude_failed_and_unknown_labels(tmp_path):
    rows = [
        {"text": "a", "label": "positive"},
        {"text": "b", "label": "negative"},
        {"text": "c", "label": "neutral"},
        {"text": "FAIL", "label": "positive"},
        {"text": "d", "label": ""},
        {"text": "e", "label": " positive "},
    ]
    source = write_rows(tmp_path / "in.csv", rows)
    # A request-level failure (UNAVAILABLE would stop the run: the server is down).
    client = FakeClient(fail=lambda texts: FakeError(grpc.StatusCode.DEADLINE_EXCEEDED, "slow")
                        if "FAIL" in texts else None)
    result = BatchScorer(config(tmp_path, source, label_column="label", batch_size=1)).score(
        client)
    # The input already has `label`: the prediction goes to `predicted_label`.
    output = read_output(tmp_path / "out.csv")
    assert list(output[0]) == ["text", "label", "predicted_label", "prob_negative",
                               "prob_positive", "error"]
    assert [row["label"] for row in output] == [row["label"] for row in rows]
    assert (result.excluded_failed, result.excluded_unknown_label) == (1, 2)
    assert result.unknown_label_examples == ["'neutral'", "''"]
    predicted = {text: client.prediction(text).label for text in "abe"}
    expected = [[0, 0], [0, 0]]
    for text, true in (("a", 1), ("b", 0), ("e", 1)):
        expected[true][LABELS.index(predicted[text])] += 1
    assert result.metrics.confusion_matrix == expected
    assert result.evaluated == 3
    assert result.metrics_dict()["excluded_unknown_label"] == 2


def test_no_metrics_when_no_row_qualifies(tmp_path):
    source = write_rows(tmp_path / "in.csv", [{"text": "a", "gold": "other"}])
    result = BatchScorer(config(tmp_path, source, label_column="gold")).score(FakeClient())
    assert result.metrics is None and result.excluded_unknown_label == 1


def test_score_columns_clash_is_a_config_error(tmp_path):
    source = write_rows(tmp_path / "in.csv", [{"text": "a", "prob_positive": "0.5"}])
    with pytest.raises(ConfigError, match=r"already has column\(s\) \['prob_positive'\]"):
        BatchScorer(config(tmp_path, source)).score(FakeClient())
    assert not (tmp_path / "out.csv").exists()


def test_jsonl_output_has_error_only_on_failed_rows(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(json.dumps(r) for r in [
            {"id": 1, "text": "fine"}, {"id": 2, "text": None}, {"id": 3, "text": 7},
            {"id": 4}, {"id": 5, "text": "also fine", "extra": True}]) + "\n")
    out = tmp_path / "out.jsonl"
    client = FakeClient()
    result = BatchScorer(config(tmp_path, source, output=out)).score(client)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [1, 2, 3, 4, 5]
    assert "error" not in records[0] and records[0]["label"] == client.prediction("fine").label
    assert list(records[0]) == ["id", "text", "label", "prob_negative", "prob_positive"]
    assert records[1] == {"id": 2, "text": None, "error":
                          f"Missing text in column 'text'. Expected a string. Received: None "
                          f"at {source}:2"}
    assert records[2]["error"].startswith("Text in column 'text' must be a string. Received: 7")
    assert records[3]["error"].startswith("Missing text")
    assert "extra" not in records[4]  # only the columns of the first record are written
    assert result.failed == 3
    assert client.calls == [(["fine", "also fine"], None)]  # invalid rows are never sent


def test_parquet_input_with_text_pairs_to_parquet_output(tmp_path):
    source = tmp_path / "in.parquet"
    rows = [{"text": f"premise {i}", "hypothesis": f"claim {i}", "n": i} for i in range(30)]
    pq.write_table(pa.Table.from_pylist(rows), source)
    out = tmp_path / "out.parquet"
    client = FakeClient()
    scorer = BatchScorer(config(tmp_path, source, output=out, text_pair_column="hypothesis",
                                batch_size=7))
    assert scorer.total_rows == 30
    scorer.score(client)
    output = pq.read_table(out).to_pylist()
    assert [r["n"] for r in output] == list(range(30))
    assert output[4]["prob_positive"] == fake_probability("premise 4", "claim 4")
    assert output[4]["error"] is None
    assert client.calls[0] == ([f"premise {i}" for i in range(7)],
                               [f"claim {i}" for i in range(7)])


def test_prediction_with_other_labels_is_a_row_error(tmp_path):
    source = write_rows(tmp_path / "in.csv", review_rows(3))
    client = FakeClient()
    client.prediction = lambda text, pair=None: FakePrediction("maybe", 2, {"maybe": 1.0})
    result = BatchScorer(config(tmp_path, source)).score(client)
    assert result.failed == 3
    assert "does not match the model's labels" in read_output(tmp_path / "out.csv")[0]["error"]


def test_interrupted_run_leaves_no_output_but_keeps_the_partial_rows(tmp_path):
    source = write_rows(tmp_path / "in.csv", review_rows(100))

    def interrupt(rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        BatchScorer(config(tmp_path, source, batch_size=10)).score(
            FakeClient(delay=0.01), progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv.partial"]
    lines = (tmp_path / "out.csv.partial").read_text().splitlines()
    assert lines[0].startswith("id,text,gold,label,") and len(lines) == 11  # header + 10 rows


@pytest.mark.parametrize(
    "options, match",
    [
        ({"batch_size": 0}, "batch_size >= 1"),
        ({"concurrency": 0}, "concurrency >= 1"),
        ({"retries": -1}, "retries >= 0"),
        ({"timeout": 0}, "positive timeout"),
        ({"model_version": 0}, "model_version >= 1"),
        ({"text_pair_column": "text"}, "different text and text pair columns"),
        ({"output": "out.xlsx"}, "Unsupported file type '.xlsx'"),
        ({"server": " "}, "Invalid --server address '': it is empty"),
    ],
)
def test_config_validation(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        config(tmp_path, tmp_path / "in.csv", **options)


def test_config_refuses_to_overwrite_input(tmp_path):
    with pytest.raises(ConfigError, match="would overwrite the input"):
        config(tmp_path, tmp_path / "in.csv", output=tmp_path / "." / "in.csv")
