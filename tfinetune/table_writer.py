"""Write rows to a CSV, TSV, JSON Lines or Parquet file that appears only when complete.

    with TableWriter("scores.csv", ["text", "label", "prob_positive"]) as writer:
        for row in rows:
            writer.write(row)

Rows go to `scores.csv.partial` beside the target; when the `with` block exits without an
exception the partial file is renamed onto `scores.csv` (atomically replacing any existing
file), otherwise it is deleted and an existing `scores.csv` is left untouched.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from tfinetune.errors import DataError
from tfinetune.table_reader import table_format

logger = logging.getLogger(__name__)

PARQUET_BATCH_ROWS = 1024
PARTIAL_SUFFIX = ".partial"


class TableWriter:
    """Writes rows with a fixed set of columns, in order, to a file chosen by its extension.

    Values are written as-is: CSV/TSV cells are `str(value)` (so floats keep full `repr`
    precision), `None` is an empty cell and lists/dicts are JSON; JSON Lines keeps the JSON
    types and omits keys that a row does not have; Parquet infers column types from the first
    batch (a column that is all null there becomes a string column) and writes every
    `PARQUET_BATCH_ROWS` rows as one batch. A row may leave out columns (empty cell / absent
    key / null) but may not add columns that are not in `columns`.

    Args:
        path: Target file (`.csv`, `.tsv`, `.jsonl`/`.json` or `.parquet`).
        columns: Column names in output order.

    Raises:
        DataError: Unsupported extension, missing output directory, duplicate column names,
            or the file cannot be written.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.name = os.fspath(path)
        self.format = table_format(path)
        self.columns = list(columns)
        if len(set(self.columns)) != len(self.columns):
            duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise DataError(
                f"Duplicate output column name(s) {duplicates} for {self.name}. "
                f"Expected unique column names. Received: {self.columns}"
            )
        self.partial_path = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.rows_written = 0
        self._column_set = set(self.columns)
        self._file: TextIO | BinaryIO | None = None
        self._csv_writer = None
        self._parquet_writer = None
        self._parquet_schema = None
        self._parquet_buffer: list[Mapping[str, Any]] = []
        self._parquet_rows_flushed = 0

    def __repr__(self) -> str:
        return f"TableWriter({self.name!r}, columns={self.columns!r})"

    def __enter__(self) -> "TableWriter":
        if self._file is not None:
            raise RuntimeError(f"{self!r} is already open")
        if not self.path.parent.is_dir():
            raise DataError(
                f"Cannot write {self.name}: the directory {self.path.parent} does not exist. "
                "Expected an existing output directory."
            )
        if self.path.is_dir():
            raise DataError(f"Cannot write {self.name}: it is a directory. Expected a file path.")
        try:
            if self.format == "parquet":
                self._file = open(self.partial_path, "wb")
            else:
                self._file = open(self.partial_path, "w", newline="", encoding="utf-8")
        except OSError as error:
            raise DataError(
                f"Cannot write {self.partial_path}: {error.strerror or error}") from None
        self.rows_written = 0
        self._csv_writer = self._parquet_writer = self._parquet_schema = None
        self._parquet_buffer, self._parquet_rows_flushed = [], 0
        if self.format in ("csv", "tsv"):
            delimiter = "\t" if self.format == "tsv" else ","
            self._csv_writer = csv.writer(self._file, delimiter=delimiter, lineterminator="\n")
            self._csv_writer.writerow(self.columns)
        return self

    def write(self, values: Mapping[str, Any]) -> None:
        """Writes one row (a mapping column -> value).

        Raises:
            ValueError: The row has keys that are not output columns.
            RuntimeError: The writer is not open (use it as a context manager).
        """
        if self._file is None:
            raise RuntimeError(f"{self!r} is not open: use it in a `with` block")
        if not self._column_set.issuperset(values):
            unknown = [key for key in values if key not in self._column_set]
            raise ValueError(
                f"Row for {self.name} has column(s) {unknown} that are not output columns. "
                f"Expected a subset of {self.columns}."
            )
        if self._csv_writer is not None:
            self._csv_writer.writerow([_cell(values.get(column)) for column in self.columns])
        elif self.format == "jsonl":
            record = {column: values[column] for column in self.columns if column in values}
            self._file.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
        else:
            self._parquet_buffer.append(values)
            if len(self._parquet_buffer) >= PARQUET_BATCH_ROWS:
                self._flush_parquet()
        self.rows_written += 1

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Writes each row of `rows` in order."""
        for values in rows:
            self.write(values)

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if self._file is None:
            return
        if exc_type is None:
            try:
                self._finish()
            except BaseException:
                self._discard()
                raise
            logger.debug("Wrote %d rows to %s", self.rows_written, self.name)
        else:
            self._discard()

    def _finish(self) -> None:
        if self.format == "parquet":
            self._flush_parquet()
            if self._parquet_writer is None:  # no rows: still write a file with the columns
                self._open_parquet_writer(self._infer_parquet_schema([]))
            self._parquet_writer.close()
        file = self._file
        try:
            file.flush()
            os.fsync(file.fileno())
            file.close()
            os.replace(self.partial_path, self.path)
        except OSError as error:
            raise DataError(f"Cannot write {self.name}: {error.strerror or error}") from None
        finally:
            self._file = None

    def _discard(self) -> None:
        file, self._file = self._file, None
        try:
            if self._parquet_writer is not None:
                self._parquet_writer.close()
        except Exception:  # noqa: BLE001 - already failing; the partial file is deleted anyway
            pass
        finally:
            if file is not None:
                file.close()
            self.partial_path.unlink(missing_ok=True)
            logger.debug("Discarded %s after an error", self.partial_path)

    # ------------------------------------------------------------------------------ Parquet

    def _infer_parquet_schema(self, rows: list[Mapping[str, Any]]):
        import pyarrow

        table = pyarrow.Table.from_pydict(
            {column: [row.get(column) for row in rows] for column in self.columns}
        )
        fields = [
            field.with_type(pyarrow.string()) if pyarrow.types.is_null(field.type) else field
            for field in table.schema
        ]
        return pyarrow.schema(fields)

    def _open_parquet_writer(self, schema) -> None:
        import pyarrow.parquet

        self._parquet_schema = schema
        self._parquet_writer = pyarrow.parquet.ParquetWriter(self._file, schema)

    def _flush_parquet(self) -> None:
        import pyarrow

        rows, self._parquet_buffer = self._parquet_buffer, []
        if not rows:
            return
        if self._parquet_writer is None:
            self._open_parquet_writer(self._infer_parquet_schema(rows))
        first = self._parquet_rows_flushed + 1
        try:
            table = pyarrow.Table.from_pydict(
                {column: [row.get(column) for row in rows] for column in self.columns},
                schema=self._parquet_schema,
            )
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as error:
            raise DataError(
                f"Cannot write rows {first}-{first + len(rows) - 1} to {self.name}: {error}. "
                f"Expected values matching the column types of the first batch: "
                f"{self._parquet_schema}"
            ) from None
        self._parquet_writer.write_table(table)
        self._parquet_rows_flushed += len(rows)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return value


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
