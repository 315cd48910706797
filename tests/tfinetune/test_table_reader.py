import dataclasses
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfinetune.errors import DataError
from tfinetune.table_reader import TableReader
from tfinetune.table_reader import TableRow

ROWS = [
    {"text": "Great food, slow service.", "label": "positive"},
    {"text": 'She said "meh", I agree', "label": "negative"},
    {"text": "tab\there and ünïcödé ✓", "label": "positive"},
]


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def write_parquet(path, rows, row_group_size=None):
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def test_csv_rows_columns_and_locations(tmp_path):
    path = write_bytes(
        tmp_path / "train.csv",
        "text,label\n"
        '"Great food, slow service.",positive\n'
        '"She said ""meh"", I agree",negative\n'
        "\n"
        "tab\there and ünïcödé ✓,positive\n".encode(),
    )
    reader = TableReader(path)
    assert reader.columns == ["text", "label"]
    assert reader.format == "csv"
    assert reader.num_rows is None
    rows = list(reader)
    assert [row.values for row in rows] == ROWS
    assert [row.location for row in rows] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert list(reader) == rows  # iterable again


def test_csv_multiline_field_location_is_first_line_and_crlf_and_bom(tmp_path):
    path = write_bytes(
        tmp_path / "a.csv",
        '\ufefftext,label\r\n"line one\r\nline two",positive\r\nnext,negative\r\n'.encode(),
    )
    reader = TableReader(path)
    assert reader.columns == ["text", "label"]
    rows = list(reader)
    assert rows[0].values == {"text": "line one\r\nline two", "label": "positive"}
    assert rows[0].location.endswith("a.csv:2")
    assert rows[1].location.endswith("a.csv:4")


def test_tsv(tmp_path):
    path = write_bytes(tmp_path / "a.TSV", b"text\tlabel\nhello, world\tpositive\n")
    reader = TableReader(path)
    assert reader.format == "tsv"
    assert [row.values for row in reader] == [{"text": "hello, world", "label": "positive"}]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_lines(tmp_path, suffix):
    lines = [json.dumps(row, ensure_ascii=False) for row in ROWS]
    lines.insert(1, "   ")
    lines.append(json.dumps({"text": "no label", "score": 0.25, "tags": ["a"]}))
    path = write_bytes(tmp_path / f"data{suffix}", ("\n".join(lines) + "\n").encode())
    reader = TableReader(path)
    assert reader.columns == ["text", "label"]
    rows = list(reader)
    assert [row.values for row in rows[:3]] == ROWS
    # A missing column reads as None; extra keys are kept with their JSON types.
    assert rows[3].values == {"text": "no label", "label": None, "score": 0.25, "tags": ["a"]}
    assert [row.location for row in rows] == [f"{path}:{n}" for n in (1, 3, 4, 5)]


def test_parquet(tmp_path):
    rows = [dict(row, score=i / 3) for i, row in enumerate(ROWS)] * 700
    path = write_parquet(tmp_path / "data.parquet", rows, row_group_size=1000)
    reader = TableReader(path)
    assert reader.columns == ["text", "label", "score"]
    assert reader.num_rows == len(rows)
    read = list(reader)
    assert [row.values for row in read] == rows
    assert read[0].location == f"{path}:row 1"
    assert read[-1].location == f"{path}:row {len(rows)}"


def test_table_row_is_frozen():
    row = TableRow("a.csv:2", {"text": "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.location = "b"


def test_require_columns(tmp_path):
    path = write_bytes(tmp_path / "train.csv", b"text,sentiment\nok,positive\n")
    reader = TableReader(path)
    reader.require_columns(["text", None, "sentiment"])
    with pytest.raises(DataError) as error:
        reader.require_columns(["text", "label"])
    assert str(error.value) == (
        f"Column 'label' not found in {path}. Columns found: ['text', 'sentiment']"
    )
    with pytest.raises(DataError, match=r"Columns \['a', 'b'\] not found"):
        reader.require_columns(["a", "b"])


# ----------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="File not found: .*nope.csv"):
        TableReader(tmp_path / "nope.csv")


def test_directory(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="dir.csv is not a file"):
        TableReader(tmp_path / "dir.csv")


def test_unknown_extension_lists_supported(tmp_path):
    path = write_bytes(tmp_path / "notes.txt", b"text\nx\n")
    with pytest.raises(DataError) as error:
        TableReader(path)
    message = str(error.value)
    assert "'.txt'" in message and "notes.txt" in message
    for extension in (".csv", ".tsv", ".jsonl", ".parquet"):
        assert extension in message


@pytest.mark.parametrize(
    "name, data",
    [
        ("empty.csv", b""),
        ("blank.csv", b"\n\n"),
        ("header-only.csv", b"text,label\n"),
        ("header-only.tsv", b"text\tlabel\n\n"),
        ("empty.jsonl", b"\n  \n"),
    ],
)
def test_empty_files(tmp_path, name, data):
    path = write_bytes(tmp_path / name, data)
    with pytest.raises(DataError, match=f"{name} is empty: expected"):
        TableReader(path)


def test_empty_parquet(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    with pytest.raises(DataError, match="empty.parquet is empty: expected at least one row"):
        TableReader(path)


def test_not_parquet(tmp_path):
    path = write_bytes(tmp_path / "fake.parquet", b"text,label\nx,y\n")
    with pytest.raises(DataError, match="Cannot read .*fake.parquet as Parquet"):
        TableReader(path)


@pytest.mark.parametrize(
    "data, line, expected",
    [
        (b"text,label\na,positive\nb,negative,extra\n", 3, "Expected 2 .* Received 3"),
        (b"text,label\na,positive\n\nlonely\n", 4, "Expected 2 .* Received 1"),
    ],
)
def test_csv_wrong_field_count_names_line(tmp_path, data, line, expected):
    path = write_bytes(tmp_path / "train.csv", data)
    rows = iter(TableReader(path))
    with pytest.raises(DataError,
                       match=f"Wrong number of fields at .*train.csv:{line}. {expected}"):
        list(rows)


def test_csv_unterminated_quote_names_line(tmp_path):
    path = write_bytes(tmp_path / "train.csv", b'text,label\nok,positive\n"never closed,negative\n')
    with pytest.raises(DataError, match=r"Cannot read the row at .*train.csv:3"):
        list(TableReader(path))


def test_csv_duplicate_columns(tmp_path):
    path = write_bytes(tmp_path / "train.csv", b"text,text\na,b\n")
    with pytest.raises(DataError, match=r"Duplicate column name\(s\) \['text'\]"):
        TableReader(path)


@pytest.mark.parametrize("name", ["train.csv", "train.jsonl"])
def test_non_utf8_names_line(tmp_path, name):
    if name.endswith(".csv"):
        data = b"text,label\nok,positive\ncaf\xe9 au lait,negative\n"
    else:
        data = b'{"text": "ok"}\n{"text": "caf\xe9"}\n'
    path = write_bytes(tmp_path / name, data)
    with pytest.raises(DataError, match=rf"{name}:(3|2) is not valid UTF-8: byte 0xe9"):
        list(TableReader(path))


def test_bad_json_line_names_line(tmp_path):
    path = write_bytes(tmp_path / "d.jsonl", b'{"text": "a"}\n\n{"text": "b",}\n')
    with pytest.raises(DataError, match=r"Invalid JSON at .*d.jsonl:3: .*Received: '{\"text\""):
        list(TableReader(path))


def test_json_line_not_an_object(tmp_path):
    path = write_bytes(tmp_path / "d.jsonl", b'{"text": "a"}\n["b"]\n')
    with pytest.raises(DataError, match=r"Not a JSON object at .*d.jsonl:2.*JSON list"):
        list(TableReader(path))


# -------------------------------------------------------------------------------- streaming


def _peak_bytes_while_iterating(reader, limit=None):
    tracemalloc.start()
    try:
        count = 0
        for _ in reader:
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_memory_does_not_grow_with_file_size(tmp_path, suffix):
    n = 40_000
    text = "a review of moderate length that says the food was fine and the staff friendly"
    path = tmp_path / f"big{suffix}"
    if suffix == ".csv":
        with open(path, "w") as f:
            f.write("id,text,label\n")
            f.writelines(f"{i},{text} {i},positive\n" for i in range(n))
    elif suffix == ".jsonl":
        with open(path, "w") as f:
            f.writelines(json.dumps({"id": i, "text": f"{text} {i}"}) + "\n" for i in range(n))
    else:
        write_parquet(path, [{"id": i, "text": f"{text} {i}"} for i in range(n)], 4096)
    size = path.stat().st_size
    assert size > 1_500_000 or suffix == ".parquet"
    count, peak = _peak_bytes_while_iterating(TableReader(path))
    assert count == n
    # Bounded by one line / one Parquet batch, not by the file (~3.7 MB of text).
    assert peak < 1_000_000, (size, peak)


def test_rows_are_yielded_before_the_file_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("text\n")
        f.writelines(f"row {i}\n" for i in range(200_000))
    opened = []
    original = TableReader._open_binary

    def spy(self):
        opened.append(original(self))
        return opened[-1]

    monkeypatch.setattr(TableReader, "_open_binary", spy)
    reader = TableReader(path)
    assert opened[0].closed  # the header check does not keep the file open
    rows = iter(reader)
    assert next(rows).values == {"text": "row 0"}
    assert opened[-1].tell() < path.stat().st_size / 10
    rows.close()
    assert opened[-1].closed
