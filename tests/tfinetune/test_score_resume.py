"""`tfinetune score --resume` never loses or repeats a row; transient errors are retried.

In-process runs with a fake client (interrupted by an exception or a torn partial file), then
a gRPC server double (`CountingPredictionServer`: counts every text it is sent, can fail or
be slow) with the real `serving.Client` and the real `tfinetune score` in a subprocess that
is SIGKILLed mid-file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tests.tfinetune.test_batch_scorer import LABELS
from tests.tfinetune.test_batch_scorer import FakeClient
from tests.tfinetune.test_batch_scorer import FakeError
from tests.tfinetune.test_batch_scorer import fake_probability
from tests.tfinetune.test_batch_scorer import write_rows
from tfinetune.batch_scorer import BatchScorer
from tfinetune.errors import DataError
from tfinetune.score_config import ScoreConfig
from tfinetune.table_reader import TableReader

REPO = Path(__file__).resolve().parents[2]
FORMATS = ["csv", "tsv", "jsonl", "parquet"]


def rows_with_awkward_text(n):
    """Rows whose text has quotes, delimiters and newlines (a CSV row spans lines)."""
    rows = []
    for i in range(n):
        text = f"review {i} " + ("good" if i % 3 else 'bad, "really"\nsecond line\tend')
        rows.append({"id": str(i), "text": text, "gold": LABELS[i % 2]})
    return rows


def make_config(tmp_path, source, fmt, **options):
    return ScoreConfig(input=source, output=tmp_path / f"out.{fmt}", model_name="clf",
                       server="h:1", label_column="gold", **options)


def read_back(path):
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [row.values for row in TableReader(path)]


def reference_output(tmp_path, source, fmt, **options):
    """The output and result of an uninterrupted run (in its own directory)."""
    directory = tmp_path / "reference"
    directory.mkdir(exist_ok=True)
    result = BatchScorer(make_config(directory, source, fmt, **options)).score(FakeClient())
    return read_back(directory / f"out.{fmt}"), result


class InterruptAfter:
    """A progress callback that raises KeyboardInterrupt once `rows` rows are written."""

    def __init__(self, rows):
        self.rows, self.seen = rows, 0

    def __call__(self, count):
        self.seen += count
        if self.seen >= self.rows:
            raise KeyboardInterrupt


def sent_texts(client):
    return [text for texts, _ in client.calls for text in texts]


# ------------------------------------------------------------------------ in-process resume


@pytest.mark.parametrize("sort_by_length", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
def test_interrupted_run_resumes_sending_only_the_rest(tmp_path, monkeypatch, fmt,
                                                       sort_by_length):
    monkeypatch.setattr("tfinetune.table_writer.PARQUET_BATCH_ROWS", 16)  # several part files
    rows = rows_with_awkward_text(150)
    source = write_rows(tmp_path / "in.csv", rows)
    options = {"batch_size": 7, "concurrency": 3, "sort_by_length": sort_by_length}
    expected, expected_result = reference_output(tmp_path, source, fmt, **options)

    first = FakeClient(delay=0.002)
    with pytest.raises(KeyboardInterrupt):
        BatchScorer(make_config(tmp_path, source, fmt, **options)).score(
            first, progress=InterruptAfter(60))
    assert not (tmp_path / f"out.{fmt}").exists()
    assert (tmp_path / f"out.{fmt}.partial").exists()

    second = FakeClient(delay=0.002)
    result = BatchScorer(make_config(tmp_path, source, fmt, resume=True, **options)).score(
        second)

    kept = result.resumed
    assert 60 <= kept < 150
    # Rows already in the output are not sent again; every other row is sent exactly once.
    assert sorted(sent_texts(second)) == sorted(row["text"] for row in rows[kept:])
    assert read_back(tmp_path / f"out.{fmt}") == expected  # every row once, in input order
    assert (result.rows, result.failed) == (150, 0)
    assert result.metrics.as_dict() == expected_result.metrics.as_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", f"out.{fmt}", "reference"]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_torn_last_row_is_dropped_and_scored_again(tmp_path, fmt):
    """What SIGKILL leaves: the partial file cut at any byte. Every cut resumes correctly."""
    rows = rows_with_awkward_text(12)
    source = write_rows(tmp_path / "in.csv", rows)
    expected, _ = reference_output(tmp_path, source, fmt, batch_size=4)
    complete = (tmp_path / "reference" / f"out.{fmt}").read_bytes()
    partial = tmp_path / f"out.{fmt}.partial"
    out = tmp_path / f"out.{fmt}"
    # Cut at every byte of the last three rows (row 9 has the quoted two-line text).
    last_rows = len(b"".join(complete.splitlines(keepends=True)[-3 if fmt == "jsonl" else -4:]))
    assert b"second line" in complete[-last_rows:]
    for cut in range(len(complete) - last_rows, len(complete)):
        out.unlink(missing_ok=True)
        partial.write_bytes(complete[:cut])
        client = FakeClient()
        result = BatchScorer(make_config(tmp_path, source, fmt, batch_size=4,
                                         resume=True)).score(client)
        assert read_back(out) == expected, f"cut at byte {cut}"
        assert sorted(sent_texts(client)) == sorted(row["text"]
                                                    for row in rows[result.resumed:])


def test_parquet_unfinished_part_file_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr("tfinetune.table_writer.PARQUET_BATCH_ROWS", 5)
    rows = rows_with_awkward_text(40)
    source = write_rows(tmp_path / "in.csv", rows)
    expected, _ = reference_output(tmp_path, source, "parquet", batch_size=5)
    with pytest.raises(KeyboardInterrupt):
        BatchScorer(make_config(tmp_path, source, "parquet", batch_size=5)).score(
            FakeClient(), progress=InterruptAfter(15))
    partial = tmp_path / "out.parquet.partial"
    # A part being written when the process died: half a file under a temporary name.
    (partial / "part-000004.parquet.tmp").write_bytes(b"PAR1 half a file")
    client = FakeClient()
    result = BatchScorer(make_config(tmp_path, source, "parquet", batch_size=5,
                                     resume=True)).score(client)
    assert result.resumed == 15
    assert read_back(tmp_path / "out.parquet") == expected
    assert sorted(sent_texts(client)) == sorted(row["text"] for row in rows[15:])


def test_failed_rows_stay_failed_and_are_not_sent_again(tmp_path):
    """Permanent errors are written as error rows and the run goes on; on resume they count
    as written (rows already in the output are never re-sent)."""
    rows = rows_with_awkward_text(30)
    rows[4]["text"] = "POISON"
    source = write_rows(tmp_path / "in.csv", rows)

    def poison(texts):
        if "POISON" in texts:
            return FakeError(grpc.StatusCode.INVALID_ARGUMENT, "bad row")
        return None

    with pytest.raises(KeyboardInterrupt):
        BatchScorer(make_config(tmp_path, source, "csv", batch_size=5, concurrency=1)).score(
            FakeClient(fail=poison), progress=InterruptAfter(10))
    client = FakeClient(fail=poison)
    result = BatchScorer(make_config(tmp_path, source, "csv", batch_size=5, concurrency=1,
                                     resume=True)).score(client)
    output = read_back(tmp_path / "out.csv")
    assert [row["id"] for row in output] == [str(i) for i in range(30)]
    assert [row["id"] for row in output if row["error"]] == ["4"]
    assert output[4]["error"] == "INVALID_ARGUMENT: bad row"
    assert "POISON" not in sent_texts(client)
    assert (result.resumed, result.failed, result.excluded_failed) == (10, 1, 1)


def test_partial_output_of_another_input_is_refused_and_kept(tmp_path):
    rows = rows_with_awkward_text(30)
    source = write_rows(tmp_path / "in.csv", rows)
    with pytest.raises(KeyboardInterrupt):
        BatchScorer(make_config(tmp_path, source, "csv", batch_size=5)).score(
            FakeClient(), progress=InterruptAfter(10))
    partial = tmp_path / "out.csv.partial"
    before = partial.read_bytes()
    rows[3]["text"] = "an edited review"
    write_rows(source, rows)

    client = FakeClient()
    with pytest.raises(DataError) as raised:
        BatchScorer(make_config(tmp_path, source, "csv", batch_size=5, resume=True)).score(
            client)
    message = str(raised.value)
    assert f"Cannot resume from {partial}: its row 4 does not match {source}:" in message
    assert ("of the input: column 'text' is 'review 3 bad, \"really\"\\nsecond line\\tend' "
            "there and 'an edited review' in the input") in message
    assert client.calls == []
    assert partial.read_bytes() == before and not (tmp_path / "out.csv").exists()


def test_partial_output_of_another_model_is_refused(tmp_path):
    source = write_rows(tmp_path / "in.csv", rows_with_awkward_text(20))
    with pytest.raises(KeyboardInterrupt):
        BatchScorer(make_config(tmp_path, source, "jsonl", batch_size=5)).score(
            FakeClient(), progress=InterruptAfter(5))
    with pytest.raises(DataError, match=r"out.jsonl.partial has other columns \(line 1\). "
                                        r"Expected the columns of this run: \[.*'prob_bad'"):
        BatchScorer(make_config(tmp_path, source, "jsonl", batch_size=5, resume=True)).score(
            FakeClient(labels=["good", "bad"]))


def test_partial_output_with_more_rows_than_the_input_is_refused(tmp_path):
    rows = rows_with_awkward_text(20)
    source = write_rows(tmp_path / "in.csv", rows)
    with pytest.raises(KeyboardInterrupt):
        BatchScorer(make_config(tmp_path, source, "csv", batch_size=5)).score(
            FakeClient(), progress=InterruptAfter(15))
    write_rows(source, rows[:10])
    with pytest.raises(DataError, match="it has more rows than the input .* \\(10\\)"):
        BatchScorer(make_config(tmp_path, source, "csv", batch_size=5, resume=True)).score(
            FakeClient())


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_of_a_complete_output_checks_it_and_sends_nothing(tmp_path, fmt):
    rows = rows_with_awkward_text(25)
    source = write_rows(tmp_path / "in.csv", rows)
    first = BatchScorer(make_config(tmp_path, source, fmt, batch_size=4)).score(FakeClient())
    written = (tmp_path / f"out.{fmt}").read_bytes()
    client = FakeClient()
    again = BatchScorer(make_config(tmp_path, source, fmt, batch_size=4, resume=True)).score(
        client)
    assert client.calls == []
    assert (tmp_path / f"out.{fmt}").read_bytes() == written
    assert (again.rows, again.resumed, again.failed) == (25, 25, 0)
    assert again.metrics.as_dict() == first.metrics.as_dict()

    write_rows(source, rows + rows_with_awkward_text(26)[25:])
    with pytest.raises(DataError, match="it is complete with 25 rows but the input"):
        BatchScorer(make_config(tmp_path, source, fmt, batch_size=4, resume=True)).score(
            FakeClient())


# ------------------------------------------------------------------ gRPC server double


class CountingPredictionServer:
    """A PredictionService double for a single-label text classifier (labels negative,
    positive; the positive probability is `fake_probability(text)`). It records every text
    of every Predict, can fail calls (`fail(texts, attempt) -> (code, message) | None`) and
    delay them."""

    def __init__(self, port=0, delay=0.0, fail=None):
        self.delay = delay
        self.fail = fail
        self.texts = []
        self.calls = []  # (monotonic time, texts, error code or None)
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _Servicer(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self._server.start()

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self._server.stop(grace=0).wait()


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, owner):
        self.owner = owner

    def GetModelMetadata(self, request, context):  # noqa: N802 (gRPC method name)
        from tensorflow.core.framework import types_pb2
        from tensorflow.core.protobuf import meta_graph_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        signature.inputs["text"].dtype = types_pb2.DT_STRING
        for name, dtype in [("probabilities", types_pb2.DT_FLOAT),
                            ("label_id", types_pb2.DT_INT64), ("label", types_pb2.DT_STRING),
                            ("classes", types_pb2.DT_STRING)]:
            signature.outputs[name].dtype = dtype
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def["serving_default"].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.metadata["signature_def"].Pack(signatures)
        return response

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        owner = self.owner
        texts = [value.decode() for value in request.inputs["text"].string_val]
        is_label_fetch = texts == [""]
        with owner._lock:
            attempt = sum(1 for _, sent, _ in owner.calls if sent == texts)
            failure = owner.fail(texts, attempt) if owner.fail and not is_label_fetch else None
            owner.calls.append((time.monotonic(), texts, failure and failure[0]))
            if not is_label_fetch and failure is None:
                owner.texts.extend(texts)
        if owner.delay and not is_label_fetch:
            time.sleep(owner.delay)
        if failure is not None:
            context.abort(*failure)
        positive = np.array([fake_probability(text) for text in texts], np.float32)
        response = predict_pb2.PredictResponse()
        outputs = {
            "probabilities": np.stack([1 - positive, positive], axis=1),
            "label_id": (positive >= 0.5).astype(np.int64),
            "label": np.array([LABELS[int(p >= 0.5)].encode() for p in positive], object),
            "classes": np.array([[name.encode() for name in LABELS]] * len(texts), object),
        }
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


def expected_row(row):
    positive = float(np.float32(fake_probability(row["text"])))
    return LABELS[int(positive >= 0.5)], positive


def assert_scored_in_order(rows, output):
    assert [row["id"] for row in output] == [row["id"] for row in rows]
    for row, scored in zip(rows, output):
        label, positive = expected_row(row)
        assert scored["text"] == row["text"]
        assert scored["label"] == label and not scored["error"]
        assert float(scored["prob_positive"]) == pytest.approx(positive, abs=1e-6)


def run_cli(*args):
    from tfinetune.cli import score

    return CliRunner().invoke(score.command, [str(arg) for arg in args])


def test_transient_errors_are_retried_with_backoff(tmp_path):
    """UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED (an overloaded server) are retried
    by the scorer's client with growing pauses; the run ends with no error rows."""
    transient = [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED,
                 grpc.StatusCode.UNAVAILABLE]

    def fail(texts, attempt):
        if any(text.startswith("review 7 ") for text in texts) and attempt < 3:
            return transient[attempt], "try later"
        return None

    server = CountingPredictionServer(fail=fail)
    rows = rows_with_awkward_text(20)
    source = write_rows(tmp_path / "in.csv", rows)
    try:
        result = run_cli(source, "--server", server.target, "--model-name", "clf", "-o",
                         tmp_path / "out.csv", "--batch-size", "5", "--retries", "3")
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert_scored_in_order(rows, read_back(tmp_path / "out.csv"))
    attempts = [(at, code) for at, texts, code in server.calls
                if any(text.startswith("review 7 ") for text in texts)]
    assert [code for _, code in attempts] == [*transient, None]
    gaps = [later - earlier for (earlier, _), (later, _) in zip(attempts, attempts[1:])]
    # Backoff 0.1 s x 2^attempt, each drawn between half and all of it.
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2
    assert sorted(server.texts) == sorted(row["text"] for row in rows)  # each scored once


def test_permanent_errors_become_error_rows_without_retries(tmp_path):
    def fail(texts, attempt):
        if any(text.startswith("review 7 ") for text in texts):
            return grpc.StatusCode.INVALID_ARGUMENT, "cannot parse"
        return None

    server = CountingPredictionServer(fail=fail)
    rows = rows_with_awkward_text(20)
    source = write_rows(tmp_path / "in.csv", rows)
    try:
        result = run_cli(source, "--server", server.target, "--model-name", "clf", "-o",
                         tmp_path / "out.csv", "--batch-size", "4", "--retries", "3")
    finally:
        server.stop()
    assert result.exit_code == 1
    assert "1 of 20 rows failed" in result.stderr
    output = read_back(tmp_path / "out.csv")
    assert [row["id"] for row in output] == [row["id"] for row in rows]
    assert [row["id"] for row in output if row["error"]] == ["7"]
    assert output[7]["error"] == "INVALID_ARGUMENT: cannot parse"
    alone = [code for _, texts, code in server.calls if len(texts) == 1
             and texts[0].startswith("review 7 ")]
    assert alone == [grpc.StatusCode.INVALID_ARGUMENT]  # isolated by splitting, not retried


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def complete_rows_in_partial(partial: Path, fmt: str) -> int:
    """Rows a resume can keep: lines ending in a newline (these texts have none inside), the
    CSV header excepted; for Parquet, the rows of the renamed part files."""
    if fmt == "parquet":
        return sum(pq.ParquetFile(part).metadata.num_rows
                   for part in partial.glob("part-*.parquet"))
    return partial.read_bytes().count(b"\n") - (fmt != "jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("fmt, flags", [("csv", ["--sort-by-length"]), ("parquet", [])])
def test_sigkilled_score_resumes_without_losing_or_repeating_rows(tmp_path, fmt, flags):
    rows = [{"id": str(i), "text": f"row {i} " + "word " * (i % 13)} for i in range(3000)]
    source = write_rows(tmp_path / "in.csv", rows)
    out = tmp_path / f"out.{fmt}"
    command = [sys.executable, "-m", "tfinetune.cli.main", "score", str(source),
               "--model-name", "clf", "-o", str(out), "--batch-size", "20",
               "--concurrency", "2", "-q", *flags]
    server = CountingPredictionServer(delay=0.01)
    try:
        with open(tmp_path / "first.log", "wb") as log:
            process = subprocess.Popen([*command, "--server", server.target], cwd=REPO,
                                       stdout=log, stderr=log)
        try:
            wait_for(lambda: len(server.texts) >= 1600 or process.poll() is not None, 120,
                     "1600 rows scored")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert process.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()
        first_run = list(server.texts)
        assert not out.exists() and len(first_run) < 3000
        partial = Path(f"{out}.partial")
        kept = complete_rows_in_partial(partial, fmt)
        assert 0 < kept <= len(first_run)

        server.texts.clear()
        resumed = subprocess.run([*command, "--server", server.target, "--resume"], cwd=REPO,
                                 capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    assert resumed.returncode == 0, resumed.stderr
    # Nothing already in the output was sent again; every other row exactly once.
    assert sorted(server.texts, key=lambda t: int(t.split()[1])) == [
        row["text"] for row in rows[kept:]]
    assert_scored_in_order(rows, read_back(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.log", "in.csv", out.name]


def test_server_that_dies_mid_run_stops_the_run_and_resume_finishes(tmp_path):
    """The server goes away after some requests: the run stops (exit 1, naming --resume)
    rather than writing error rows; once a server is back, --resume scores only the rest."""
    rows = rows_with_awkward_text(200)
    source = write_rows(tmp_path / "in.csv", rows)
    out = tmp_path / "out.jsonl"
    holder = {}

    def die_after_some(texts, attempt):
        if len(holder["server"].texts) >= 80 and not holder.get("stopping"):
            holder["stopping"] = True
            threading.Thread(target=holder["server"].stop, daemon=True).start()
        return None

    holder["server"] = server = CountingPredictionServer(fail=die_after_some, delay=0.005)
    port = server.port
    args = [source, "--server", f"127.0.0.1:{port}", "--model-name", "clf", "-o", out,
            "--batch-size", "10", "--concurrency", "2", "--retries", "2", "--timeout", "5"]
    try:
        result = run_cli(*args)
    finally:
        server.stop()
    assert result.exit_code == 1, result.output
    assert "became unavailable during the run: UNAVAILABLE" in result.stderr
    assert "run the same command with --resume" in result.stderr
    assert not out.exists()
    kept = complete_rows_in_partial(Path(f"{out}.partial"), "jsonl")
    assert 0 < kept < 200

    revived = CountingPredictionServer(port=port)
    try:
        resumed = run_cli(*args, "--resume")
    finally:
        revived.stop()
    assert resumed.exit_code == 0, resumed.output
    assert f"({kept} of them kept from the interrupted run, not sent again)" in resumed.stderr
    assert revived.texts == [row["text"] for row in rows[kept:]] or sorted(
        revived.texts) == sorted(row["text"] for row in rows[kept:])
    output = read_back(out)
    assert [row["id"] for row in output] == [row["id"] for row in rows]
    assert not any("error" in row for row in output)


def test_partial_survives_sigkill_between_rows_of_a_real_process(tmp_path):
    """The partial file holds whole rows once flushed: a process writing rows and SIGKILLed
    leaves a prefix that `TableWriter(resume=True)` continues."""
    from tfinetune.table_writer import TableWriter

    script = (
        "import sys, time\n"
        "from tfinetune.table_writer import TableWriter\n"
        "with TableWriter(sys.argv[1], ['id', 'text'], keep_partial=True) as writer:\n"
        "    for i in range(10**6):\n"
        "        writer.write({'id': i, 'text': 'line one\\nline \"two\", ' * (i % 5)})\n"
        "        if i == 5000: print('ready', flush=True)\n"
        "        if i > 5000: time.sleep(0.0001)\n"
    )
    out = tmp_path / "out.csv"
    process = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO,
                               stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"ready\n"
    time.sleep(0.3)  # well past row 5000 by the time of the kill, mid-row most likely
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with TableWriter(out, ["id", "text"], resume=True) as writer:
        kept = writer.resumed_rows
        stored = list(writer.stored_rows())
        for i in range(kept, kept + 3):
            writer.write({"id": i, "text": "after"})
    assert kept > 5000 and len(stored) == kept
    assert [int(row["id"]) for row in stored] == list(range(kept))
    assert all(row["text"] == 'line one\nline "two", ' * (i % 5) for i, row in enumerate(stored))
    assert [row.values["id"] for row in TableReader(out)] == [str(i) for i in range(kept + 3)]
