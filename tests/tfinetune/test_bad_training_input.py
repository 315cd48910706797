"""Bad training data fails `tfinetune fit` before any model is loaded, naming file, row, column.

Every case runs the real `tfinetune.fit` with a model directory that does not exist: the data
error must come first (a model error would mean the data was checked too late), and nothing may
be written to the output directory.
"""

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import tfinetune
from tfinetune.cli.main import cli
from tfinetune.errors import DataError
from tfinetune.fit_config import FitConfig


def parquet_bytes(table):
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


GOOD_CSV = b"text,label\ngood movie,positive\nbad movie,negative\n"

CASES = {
    "non-UTF-8 CSV": (
        "train.csv", b"text,label\nok,positive\ncaf\xe9 au lait,negative\n", {},
        r"train\.csv:3 is not valid UTF-8: byte 0xe9 at position 4"),
    "non-UTF-8 JSON Lines": (
        "train.jsonl", b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n', {},
        r"train\.jsonl:2 is not valid UTF-8: byte 0xe9"),
    "Latin-1 TSV": (
        "train.tsv", b"text\tlabel\nna\xefve\tpositive\n", {},
        r"train\.tsv:2 is not valid UTF-8: byte 0xef"),
    "NaN regression target in CSV": (
        "train.csv", b"text,score\ngood,1.5\nbad,nan\n", {"label_column": "score"},
        r"column 'score' must be a finite number\. Received: score='nan' at .*train\.csv:3"),
    "infinite regression target in CSV": (
        "train.csv", b"text,score\ngood,1.5\nbad,-inf\n", {"label_column": "score"},
        r"column 'score' must be a finite number\. Received: score='-inf' at .*train\.csv:3"),
    "NaN regression target in JSON Lines": (
        "train.jsonl", b'{"text": "good", "score": 1.5}\n{"text": "bad", "score": NaN}\n',
        {"label_column": "score"},
        r"column 'score' must be a finite number\. Received: score=nan at .*train\.jsonl:2"),
    "Infinity regression target in JSON Lines": (
        "train.jsonl", b'{"text": "good", "score": Infinity}\n', {"label_column": "score"},
        r"Received: score=inf at .*train\.jsonl:1"),
    "NaN regression target in Parquet": (
        "train.parquet",
        parquet_bytes(pa.table({"text": ["good", "bad"], "score": [1.5, float("nan")]})),
        {"label_column": "score"},
        r"Received: score=nan at .*train\.parquet:row 2"),
    "label column of ints and strings": (
        "train.jsonl",
        (b'{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n'
         b'{"text": "c", "label": "positive"}\n'), {},
        (r"Label column 'label' mixes types: numbers \(e\.g\. 1 at .*train\.jsonl:1\) and "
         r"strings\..*Received: label='positive' at .*train\.jsonl:3")),
    "label column of strings and booleans": (
        "train.jsonl", b'{"text": "a", "label": "yes"}\n{"text": "b", "label": false}\n', {},
        r"mixes types: strings .* and booleans.*label=False at .*train\.jsonl:2"),
    "0-byte CSV": ("train.csv", b"", {}, r"train\.csv is empty: .*0 bytes"),
    "0-byte TSV": ("train.tsv", b"", {}, r"train\.tsv is empty: .*0 bytes"),
    "0-byte JSON Lines": ("train.jsonl", b"", {}, r"train\.jsonl is empty: .*0 bytes"),
    "0-byte Parquet": ("train.parquet", b"", {}, r"train\.parquet is empty: .*0 bytes"),
    "CSV text named .parquet": (
        "train.parquet", GOOD_CSV, {},
        (r"Cannot read .*train\.parquet as Parquet: it does not start with the Parquet "
         r"signature b'PAR1'.*Received: a file starting with b'text,label")),
    "CSV text named .jsonl": (
        "train.jsonl", GOOD_CSV, {},
        (r"Invalid JSON at .*train\.jsonl:1: .*Expected one JSON object per line .*"
         r"Received: 'text,label'")),
    "JSON Lines named .csv": (
        "train.csv", b'{"text": "good", "label": "positive"}\n{"text": "bad", "label": "n"}\n',
        {}, r"train\.csv:1 looks like JSON, not CSV"),
    "Parquet named .csv": (
        "train.csv", parquet_bytes(pa.table({"text": ["good"], "label": ["positive"]})), {},
        r"train\.csv is not CSV text: its content is a Parquet file"),
    "Parquet named .jsonl": (
        "train.jsonl", parquet_bytes(pa.table({"text": ["good"], "label": ["positive"]})), {},
        r"train\.jsonl is not JSON Lines text: its content is a Parquet file"),
    "gzip named .csv": (
        "train.csv", gzip.compress(GOOD_CSV), {},
        r"train\.csv is not CSV text: its content is a gzip-compressed file"),
    "ZIP (xlsx) named .csv": (
        "train.csv", b"PK\x03\x04" + bytes(60), {},
        r"train\.csv is not CSV text: its content is a ZIP archive"),
    "binary bytes named .csv": (
        "train.csv", b"text,label\n" + bytes(range(256)) * 4, {},
        r"train\.csv is not CSV text: its content is binary data \(it contains NUL bytes\)"),
}


@pytest.mark.parametrize("name, data, options, message", CASES.values(), ids=CASES.keys())
def test_bad_training_file_fails_before_the_model_loads(tmp_path, name, data, options,
                                                        message):
    path = tmp_path / name
    path.write_bytes(data)
    if "score" in options.get("label_column", ""):
        options = {**options, "problem_type": "regression"}
    output_dir = tmp_path / "run"
    config = FitConfig(model=str(tmp_path / "no-such-model"), train=str(path),
                       output_dir=str(output_dir), **options)
    with pytest.raises(DataError, match=message):
        tfinetune.fit(config)
    assert not output_dir.exists()


def test_bad_validation_file_fails_before_the_model_loads(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    validation = tmp_path / "dev.jsonl"
    validation.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "0"}\n')
    config = FitConfig(model=str(tmp_path / "no-such-model"), train=str(train),
                       validation=str(validation), output_dir=str(tmp_path / "run"))
    with pytest.raises(DataError, match=r"mixes types: numbers .*label='0' at .*dev\.jsonl:2"):
        tfinetune.fit(config)
    assert not (tmp_path / "run").exists()


def test_labels_of_one_type_per_file_are_accepted(tmp_path):
    # Integers in JSON Lines, the same labels as strings in CSV: one label set, no error.
    from tfinetune.text_classification_examples import TextClassificationExamples

    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps({"text": t, "label": label})
                               for t, label in [("a", 1), ("b", 0), ("c", 1.0)]))
    validation = tmp_path / "dev.csv"
    validation.write_text("text,label\na,1\nb,0\n")
    examples = TextClassificationExamples.read(train, text_column="text", label_column="label")
    assert list(examples.labels.names) == ["0", "1"]
    checked = TextClassificationExamples.read(validation, text_column="text",
                                              label_column="label", labels=examples.labels)
    assert checked.targets == [1, 0]


def test_cli_reports_the_bad_row_and_exits_non_zero(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\nok,positive\ncaf\xe9,negative\n")
    result = CliRunner().invoke(cli, ["fit", "--train", str(path), "--model",
                                      str(tmp_path / "no-such-model"), "--output-dir",
                                      str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "train.csv:3 is not valid UTF-8" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("data, message", [
    (b"EU B-ORG\nrejects O\n\nM\xfcnchen B-LOC\n",
     r"train\.conll:4 is not valid UTF-8: byte 0xfc at position 2 of the line"),
    (b"", r"train\.conll has no sentences"),
])
def test_bad_conll_training_file_fails_before_the_model_loads(tmp_path, data, message):
    path = tmp_path / "train.conll"
    path.write_bytes(data)
    config = FitConfig(task="token-classification", model=str(tmp_path / "no-such-model"),
                       train=str(path), output_dir=str(tmp_path / "run"))
    with pytest.raises(DataError, match=message):
        tfinetune.fit(config)
    assert not (tmp_path / "run").exists()
