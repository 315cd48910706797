"""Stream the rows of a CSV, TSV, JSON Lines or Parquet file without loading it whole.

    reader = TableReader("train.csv")
    reader.require_columns(["text", "label"])
    for row in reader:
        row.location          # "train.csv:2"
        row.values["text"]

The format is chosen by the file extension. Each iteration re-opens the file, so a reader can
be iterated several times; memory stays bounded by one line (or one Parquet batch).
Every problem with the file raises `tfinetune.errors.DataError` naming the file and row.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, BinaryIO

from tfinetune.errors import DataError
from tfinetune.table_row import TableRow

__all__ = ["TableReader", "TableRow"]

# Extension -> format. ".json" is read as JSON Lines (one object per line).
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
PARQUET_BATCH_ROWS = 1024
_PREVIEW_CHARS = 80
PARQUET_MAGIC = b"PAR1"
# Leading bytes of files that are not text tables, whatever their extension says.
_BINARY_SIGNATURES = {
    b"\x1f\x8b": "a gzip-compressed file",
    b"PK\x03\x04": "a ZIP archive (or .xlsx workbook)",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office file",
    b"\x89PNG": "a PNG image",
    b"%PDF": "a PDF document",
    b"\xfd7zXZ": "an xz-compressed file",
    b"\x93NUMPY": "a NumPy array file",
    b"\x80": "a Python pickle",
}
_SNIFF_BYTES = 4096


def table_format(path: str | os.PathLike) -> str:
    """Returns the format name ("csv", "tsv", "jsonl", "parquet") for a file's extension.

    Raises:
        DataError: The extension is not one of `FORMATS`.
    """
    extension = Path(path).suffix.lower()
    if extension not in FORMATS:
        raise DataError(
            f"Unsupported file type {extension or '(no extension)'!r} for {os.fspath(path)}. "
            f"Expected one of: {', '.join(FORMATS)}"
        )
    return FORMATS[extension]


class TableReader:
    """Streams the rows of one data file as `TableRow`s.

    Args:
        path: A `.csv`, `.tsv`, `.jsonl`/`.json` (JSON Lines) or `.parquet` file.

    CSV/TSV: the first non-blank line is the header; blank lines are skipped; a row with more
    or fewer fields than the header is an error. JSON Lines: every non-blank line is one JSON
    object; `.columns` are the first object's keys, and a later object that lacks one of them
    reads it as `None` (keys it adds are kept in `values`). Files must be UTF-8 (a BOM is
    allowed).

    Raises:
        DataError: On construction if the file is missing, has an unsupported extension, is
            empty (no header or no data row) or its header cannot be read; while iterating
            for a row that cannot be read.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = os.fspath(path)
        self.format = table_format(path)
        if not self.path.exists():
            raise DataError(f"File not found: {self.name} (looked for {self.path.absolute()})")
        if not self.path.is_file():
            raise DataError(f"{self.name} is not a file. Expected a {self.format} data file.")
        self._num_rows: int | None = None
        self._check_content()
        self._columns = self._read_columns()

    def __repr__(self) -> str:
        return f"TableReader({self.name!r}, format={self.format!r}, columns={self._columns!r})"

    @property
    def columns(self) -> list[str]:
        """The column names: CSV/TSV header, first JSON object's keys, or Parquet schema."""
        return list(self._columns)

    @property
    def num_rows(self) -> int | None:
        """The number of data rows if known without reading the file (Parquet), else None."""
        return self._num_rows

    def require_columns(self, names: Iterable[str | None]) -> None:
        """Checks that every named column exists (`None` entries are ignored).

        Raises:
            DataError: e.g. `Column 'label' not found in train.csv. Columns found: ['text']`.
        """
        missing = [name for name in names if name is not None and name not in self._columns]
        if len(missing) == 1:
            raise DataError(
                f"Column {missing[0]!r} not found in {self.name}. Columns found: {self._columns}"
            )
        if missing:
            raise DataError(
                f"Columns {missing} not found in {self.name}. Columns found: {self._columns}"
            )

    def __iter__(self) -> Iterator[TableRow]:
        if self.format in ("csv", "tsv"):
            return self._iter_delimited()
        if self.format == "jsonl":
            return self._iter_json_lines()
        return self._iter_parquet()

    # ----------------------------------------------------------------------------- header

    def _empty_error(self, expected: str) -> DataError:
        return DataError(f"{self.name} is empty: expected {expected}")

    def _check_content(self) -> None:
        """Refuses a 0-byte file and a file whose first bytes show it is not what its extension
        says (a Parquet file named .csv, CSV text named .parquet, a ZIP or gzip file, ...)."""
        with self._open_binary() as file:
            head = file.read(_SNIFF_BYTES)
        expected = {"csv": "CSV text", "tsv": "TSV text", "jsonl": "JSON Lines text",
                    "parquet": "a Parquet file"}[self.format]
        if not head:
            raise DataError(f"{self.name} is empty: expected {expected} with data. "
                            "Received: a file of 0 bytes")
        extension = self.path.suffix.lower()
        if self.format == "parquet":
            if not head.startswith(PARQUET_MAGIC):
                raise DataError(
                    f"Cannot read {self.name} as Parquet: it does not start with the Parquet "
                    f"signature {PARQUET_MAGIC!r}. Expected a Parquet file (extension "
                    f"{extension}). Received: {_describe(head)}")
            return
        if head.startswith(PARQUET_MAGIC):
            kind = "a Parquet file"
        else:
            kind = next((what for signature, what in _BINARY_SIGNATURES.items()
                         if head.startswith(signature)), None)
        if kind is None and b"\x00" in head:
            kind = "binary data (it contains NUL bytes)"
        if kind is not None:
            raise DataError(
                f"{self.name} is not {expected}: its content is {kind}. Expected {expected} "
                f"as its extension {extension} says (UTF-8). Received: {_describe(head)}. "
                "Rename the file to its real type (e.g. .parquet) or convert it.")

    def _read_columns(self) -> list[str]:
        if self.format in ("csv", "tsv"):
            records = self._delimited_records()
            try:
                header = next(records, None)
                first_row = next(records, None)
            finally:
                records.close()
            if header is None or first_row is None:
                raise self._empty_error("a header row and at least one data row")
            columns = header[1]
            if columns and columns[0].lstrip().startswith(("{", "[")):
                raise DataError(
                    f"{self.name}:{header[0]} looks like JSON, not {self.format.upper()}: the "
                    f"header starts with {_preview(columns[0])}. Expected a header row of "
                    "column names. Name JSON Lines files .jsonl.")
        elif self.format == "jsonl":
            records = self._json_records()
            try:
                first = next(records, None)
            finally:
                records.close()
            if first is None:
                raise self._empty_error("at least one JSON object (one per line)")
            columns = list(first[1])
        else:
            columns = self._read_parquet_columns()
        duplicates = sorted({name for name in columns if columns.count(name) > 1})
        if duplicates:
            raise DataError(
                f"Duplicate column name(s) {duplicates} in {self.name}. "
                f"Expected unique column names. Received: {columns}"
            )
        return columns

    # ------------------------------------------------------------------ line-based formats

    def _open_binary(self) -> BinaryIO:
        try:
            return open(self.path, "rb")
        except OSError as error:
            raise DataError(f"Cannot read {self.name}: {error.strerror or error}") from error

    def _decoded_lines(self, file: BinaryIO) -> Iterator[str]:
        """Yields each physical line as text, naming the line if it is not valid UTF-8."""
        for number, raw in enumerate(file, start=1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{self.name}:{number} is not valid UTF-8: byte {raw[error.start]:#04x} at "
                    f"position {error.start + 1} of the line. Expected a UTF-8 encoded file "
                    "(re-save it as UTF-8)."
                ) from None

    def _delimited_records(self) -> Iterator[tuple[int, list[str]]]:
        """Yields (first line number, fields) for each non-blank CSV/TSV record."""
        delimiter = "\t" if self.format == "tsv" else ","
        with self._open_binary() as file:
            reader = csv.reader(self._decoded_lines(file), delimiter=delimiter, strict=True)
            previous_line = 0
            while True:
                start = previous_line + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    raise DataError(
                        f"Cannot read the row at {self.name}:{start}: {error}. Expected "
                        f"{self.format.upper()} fields separated by {delimiter!r}, with quotes "
                        "around fields that contain separators, quotes or line breaks."
                    ) from None
                previous_line = reader.line_num
                if fields:
                    yield start, fields

    def _iter_delimited(self) -> Iterator[TableRow]:
        records = self._delimited_records()
        with closing(records):
            header = next(records, (0, []))[1]
            width = len(header)
            for line, fields in records:
                if len(fields) != width:
                    raise DataError(
                        f"Wrong number of fields at {self.name}:{line}. Expected {width} "
                        f"(columns {header}). Received {len(fields)}: {_preview(fields)}"
                    )
                yield TableRow(f"{self.name}:{line}", dict(zip(header, fields)))

    def _json_records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yields (line number, object) for each non-blank JSON Lines line."""
        with self._open_binary() as file:
            for number, line in enumerate(self._decoded_lines(file), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(
                        f"Invalid JSON at {self.name}:{number}: {error.msg} (column "
                        f"{error.colno}). Expected one JSON object per line (JSON Lines). "
                        f"Received: {_preview(line.rstrip())}"
                    ) from None
                if not isinstance(record, dict):
                    raise DataError(
                        f"Not a JSON object at {self.name}:{number}. Expected one JSON object "
                        f"per line (JSON Lines). Received a JSON {type(record).__name__}: "
                        f"{_preview(line.rstrip())}"
                    )
                yield number, record

    def _iter_json_lines(self) -> Iterator[TableRow]:
        columns = self._columns
        records = self._json_records()
        with closing(records):
            for number, record in records:
                for column in columns:
                    record.setdefault(column, None)
                yield TableRow(f"{self.name}:{number}", record)

    # ------------------------------------------------------------------------------ Parquet

    def _open_parquet(self):
        import pyarrow
        import pyarrow.parquet

        try:
            return pyarrow.parquet.ParquetFile(self.path)
        except (pyarrow.ArrowException, OSError) as error:
            raise DataError(
                f"Cannot read {self.name} as Parquet: {error}. Expected a Parquet file."
            ) from None

    def _read_parquet_columns(self) -> list[str]:
        with self._open_parquet() as parquet_file:
            self._num_rows = parquet_file.metadata.num_rows
            if self._num_rows == 0:
                raise self._empty_error("at least one row")
            return list(parquet_file.schema_arrow.names)

    def _iter_parquet(self) -> Iterator[TableRow]:
        import pyarrow

        row = 0
        with self._open_parquet() as parquet_file:
            batches = parquet_file.iter_batches(batch_size=PARQUET_BATCH_ROWS)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                except (pyarrow.ArrowException, OSError) as error:
                    raise DataError(
                        f"Cannot read {self.name}:row {row + 1} (Parquet): {error}"
                    ) from None
                for values in batch.to_pylist():
                    row += 1
                    yield TableRow(f"{self.name}:row {row}", values)


def _describe(head: bytes) -> str:
    """The first bytes of a file, for an error message."""
    return f"a file starting with {head[:24]!r}"


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."
