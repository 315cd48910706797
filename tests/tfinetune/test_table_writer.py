import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from tfinetune.errors import DataError
from tfinetune.table_reader import TableReader
from tfinetune.table_writer import TableWriter

COLUMNS = ["id", "text", "label", "prob_positive", "error"]
ROWS = [
    {"id": "1", "text": 'Tasty, but "pricey"', "label": "positive", "prob_positive": 0.1 + 0.2},
    {"id": "2", "text": "two\nlines\tand ünïcödé", "error": "UNAVAILABLE: server down"},
    {"id": "3", "text": "", "label": "negative", "prob_positive": 1e-17},
]


def test_csv_round_trip_with_full_float_precision(tmp_path):
    out = tmp_path / "out.csv"
    with TableWriter(out, COLUMNS) as writer:
        writer.write_rows(ROWS)
        assert not out.exists()
    assert writer.rows_written == 3
    assert not (tmp_path / "out.csv.partial").exists()
    with open(out, newline="", encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert read[0]["prob_positive"] == "0.30000000000000004"
    assert float(read[2]["prob_positive"]) == 1e-17
    assert read[1] == {
        "id": "2", "text": "two\nlines\tand ünïcödé", "label": "", "prob_positive": "",
        "error": "UNAVAILABLE: server down",
    }
    assert [row.values["text"] for row in TableReader(out)] == [row["text"] for row in ROWS]
    assert out.read_text().startswith("id,text,label,prob_positive,error\n")


def test_tsv(tmp_path):
    out = tmp_path / "out.tsv"
    with TableWriter(out, COLUMNS) as writer:
        writer.write_rows(ROWS)
    assert out.read_text().splitlines()[0] == "id\ttext\tlabel\tprob_positive\terror"
    read = [row.values for row in TableReader(out)]
    assert read[1]["text"] == ROWS[1]["text"]
    assert read[0]["prob_positive"] == repr(0.1 + 0.2)


def test_csv_lists_are_json_and_numpy_scalars(tmp_path):
    out = tmp_path / "out.csv"
    with TableWriter(out, ["a", "b", "c"]) as writer:
        writer.write({"a": [1, "x"], "b": {"k": 2}, "c": np.float64(0.25)})
    assert list(TableReader(out))[0].values == {"a": '[1, "x"]', "b": '{"k": 2}', "c": "0.25"}


def test_jsonl_keeps_types_order_and_omits_missing_keys(tmp_path):
    out = tmp_path / "out.jsonl"
    with TableWriter(out, COLUMNS) as writer:
        writer.write_rows(ROWS)
        writer.write({"error": "x", "id": np.int64(4), "prob_positive": np.float32(0.5)})
    lines = out.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert records[:3] == ROWS
    assert list(records[0]) == ["id", "text", "label", "prob_positive"]
    assert records[3] == {"id": 4, "prob_positive": 0.5, "error": "x"}
    assert "ünïcödé" in lines[1]  # not \\u-escaped
    assert records[0]["prob_positive"] == 0.1 + 0.2


def test_parquet_in_batches_with_null_column(tmp_path, monkeypatch):
    monkeypatch.setattr("tfinetune.table_writer.PARQUET_BATCH_ROWS", 4)
    rows = [{"text": f"t{i}", "p": i / 7, "error": None} for i in range(10)]
    rows[6]["error"] = "failed"  # first batch has only nulls in `error`
    out = tmp_path / "out.parquet"
    with TableWriter(out, ["text", "p", "error"]) as writer:
        writer.write_rows(rows)
    table = pq.read_table(out)
    assert table.column_names == ["text", "p", "error"]
    assert table.to_pylist() == rows
    assert [row.values for row in TableReader(out)] == rows


def test_parquet_type_mismatch_is_a_data_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("tfinetune.table_writer.PARQUET_BATCH_ROWS", 2)
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError, match=r"Cannot write rows 3-4 to .*out.parquet"):
        with TableWriter(out, ["p"]) as writer:
            writer.write_rows([{"p": 0.5}, {"p": 0.25}, {"p": "high"}, {"p": 1.0}])
    assert list(tmp_path.iterdir()) == []


def test_empty_parquet_still_has_columns(tmp_path):
    out = tmp_path / "out.parquet"
    with TableWriter(out, ["text", "label"]):
        pass
    assert pq.read_table(out).column_names == ["text", "label"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_exception_in_block_leaves_no_output_and_keeps_old_file(tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    with pytest.raises(KeyError):
        with TableWriter(out, ["text"]) as writer:
            writer.write({"text": "a"})
            assert (tmp_path / f"out{suffix}.partial").exists()
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []

    out.write_text("previous complete output")
    with pytest.raises(KeyboardInterrupt):
        with TableWriter(out, ["text"]) as writer:
            writer.write({"text": "a"})
            raise KeyboardInterrupt
    assert out.read_text() == "previous complete output"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_success_replaces_existing_file_and_overwrites_stale_partial(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("old")
    (tmp_path / "out.csv.partial").write_text("stale leftover of a killed run")
    with TableWriter(out, ["text"]) as writer:
        writer.write({"text": "new"})
    assert out.read_text() == "text\nnew\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_unknown_column_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"column\(s\) \['extra'\] that are not output columns"):
        with TableWriter(tmp_path / "out.csv", ["text"]) as writer:
            writer.write({"text": "a", "extra": 1})
    assert list(tmp_path.iterdir()) == []


def test_write_outside_block(tmp_path):
    with pytest.raises(RuntimeError, match="not open"):
        TableWriter(tmp_path / "out.csv", ["text"]).write({"text": "a"})


def test_errors(tmp_path):
    with pytest.raises(DataError, match="Unsupported file type '.xlsx'"):
        TableWriter(tmp_path / "out.xlsx", ["a"])
    with pytest.raises(DataError, match=r"Duplicate output column name\(s\) \['a'\]"):
        TableWriter(tmp_path / "out.csv", ["a", "b", "a"])
    with pytest.raises(DataError, match="directory .*missing does not exist"):
        with TableWriter(tmp_path / "missing" / "out.csv", ["a"]):
            pass
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="it is a directory"):
        with TableWriter(tmp_path / "dir.csv", ["a"]):
            pass
