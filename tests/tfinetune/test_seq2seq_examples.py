"""Seq2SeqExamples: CSV/TSV/JSONL/Parquet source/target files and their errors (file:row)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfinetune.errors import DataError
from tfinetune.seq2seq_examples import Seq2SeqExamples

ROWS = [{"en": "one cat", "de": "eins katze"}, {"en": "two dogs", "de": "zwei hunde"}]


def read(path, **options):
    return Seq2SeqExamples.read(path, **{"source_column": "en", "target_column": "de",
                                         **options})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_reads_sources_and_targets_in_order(tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    else:
        separator = "\t" if suffix == ".tsv" else ","
        path.write_text("en" + separator + "de\n" + "".join(
            f"{row['en']}{separator}{row['de']}\n" for row in ROWS))
    examples = read(path)
    assert examples.sources == ["one cat", "two dogs"]
    assert examples.targets == ["eins katze", "zwei hunde"]
    assert len(examples) == 2


def test_missing_column_names_the_file_and_the_columns_found(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("en,target\none,eins\n")
    with pytest.raises(DataError, match=r"Column 'de' not found in .*train.csv.*\['en', "
                                        r"'target'\]"):
        read(path)


def test_empty_target_names_file_row_and_column(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("en,de\none,eins\ntwo,  \n")
    with pytest.raises(DataError, match=r"Empty value in column 'de'.*Received: de='  ' at "
                                        r".*train.csv:3"):
        read(path)


def test_null_source_in_json_lines_names_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"en": None, "de": "x"}) + "\n")
    with pytest.raises(DataError, match=r"Missing value in column 'en'.*en=null at "
                                        r".*train.jsonl:2"):
        read(path)


def test_non_text_value_and_same_column_twice_are_refused(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"en": ["a", "list"], "de": "x"}) + "\n")
    with pytest.raises(DataError, match=r"must hold text.*\(list\) at .*train.jsonl:1"):
        read(path)
    with pytest.raises(DataError, match="must be different columns"):
        read(path, target_column="en")


def test_files_without_rows_are_refused(tmp_path):
    path = tmp_path / "validation.csv"
    path.write_text("en,de\n")
    with pytest.raises(DataError, match="validation.csv is empty"):
        read(path, role="validation")
    path = tmp_path / "validation.parquet"
    pq.write_table(pa.table({"en": pa.array([], pa.string()), "de": pa.array([], pa.string())}),
                   path)
    with pytest.raises(DataError, match="validation.parquet is empty"):
        read(path, role="validation")
