"""Write rows to a CSV, TSV, JSON Lines or Parquet file that appears only when complete.

    with TableWriter("scores.csv", ["text", "label", "prob_positive"]) as writer:
        for row in rows:
            writer.write(row)

Rows go to `scores.csv.partial` beside the target (for Parquet: a directory
`scores.parquet.partial/` of numbered part files, each renamed into place once written, since a
Parquet file is unreadable until its footer is written); when the `with` block exits without an
exception the partial output becomes `scores.csv` (atomically replacing any existing file),
otherwise it is deleted and an existing `scores.csv` is left untouched.

With `keep_partial=True` the partial output is kept when the block fails (and, of course, when
the process is killed), and `resume=True` continues it: an incomplete last row (the tail a
kill cut off) is dropped, the rows before it are kept (`resumed_rows`, readable back with
`stored_rows()`) and new rows are appended after them.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from tfinetune.errors import DataError
from tfinetune.table_reader import table_format

logger = logging.getLogger(__name__)

PARQUET_BATCH_ROWS = 1024
PARTIAL_SUFFIX = ".partial"
_PART_SUFFIX = ".parquet"
_TEMP_SUFFIX = ".tmp"


class TableWriter:
    """Writes rows with a fixed set of columns, in order, to a file chosen by its extension.

    Values are written as-is: CSV/TSV cells are `str(value)` (so floats keep full `repr`
    precision), `None` is an empty cell and lists/dicts are JSON; JSON Lines keeps the JSON
    types and omits keys that a row does not have; Parquet infers column types from the first
    batch (a column that is all null there becomes a string column) and writes every
    `PARQUET_BATCH_ROWS` rows as one batch (one part file of the partial output, one row group
    of the final file). A row may leave out columns (empty cell / absent key / null) but may
    not add columns that are not in `columns`.

    Args:
        path: Target file (`.csv`, `.tsv`, `.jsonl`/`.json` or `.parquet`).
        columns: Column names in output order.
        keep_partial: Keep the partial output when the `with` block raises (for `resume`).
        resume: Continue the partial output of an earlier (interrupted) writer of the same
            path and columns instead of starting afresh; without one, start afresh.

    Raises:
        DataError: Unsupported extension, missing output directory, duplicate column names,
            the file cannot be written, or (on entering with `resume`) the partial output has
            other columns or cannot be read.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], *,
                 keep_partial: bool = False, resume: bool = False) -> None:
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
        self.keep_partial = keep_partial
        self.resume = resume
        #: Rows taken over from the partial output when entering with `resume`.
        self.resumed_rows = 0
        #: Rows written in this block (resumed rows not included).
        self.rows_written = 0
        self._column_set = set(self.columns)
        self._open = False
        self._file: TextIO | None = None
        self._csv_writer = None
        self._parquet_schema = None
        self._parquet_buffer: list[Mapping[str, Any]] = []
        self._parts = 0
        self._flushed_rows = 0

    def __repr__(self) -> str:
        return f"TableWriter({self.name!r}, columns={self.columns!r})"

    def __enter__(self) -> "TableWriter":
        if self._open:
            raise RuntimeError(f"{self!r} is already open")
        if not self.path.parent.is_dir():
            raise DataError(
                f"Cannot write {self.name}: the directory {self.path.parent} does not exist. "
                "Expected an existing output directory."
            )
        if self.path.is_dir():
            raise DataError(f"Cannot write {self.name}: it is a directory. Expected a file path.")
        self.rows_written = self.resumed_rows = 0
        self._csv_writer = self._parquet_schema = None
        self._parquet_buffer, self._parts = [], 0
        resuming = self.resume and os.path.lexists(self.partial_path)
        try:
            if resuming:
                self._recover()
            else:
                _remove(self.partial_path)
            if self.format == "parquet":
                self.partial_path.mkdir(exist_ok=True)
            else:
                self._file = open(self.partial_path, "a" if resuming else "w", newline="",
                                  encoding="utf-8")
        except OSError as error:
            raise DataError(
                f"Cannot write {self.partial_path}: {error.strerror or error}") from None
        if self.format in ("csv", "tsv"):
            delimiter = "\t" if self.format == "tsv" else ","
            self._csv_writer = csv.writer(self._file, delimiter=delimiter, lineterminator="\n")
            if self._file.tell() == 0:
                self._csv_writer.writerow(self.columns)
        self._flushed_rows = self.resumed_rows
        self._open = True
        if resuming:
            logger.info("Resuming %s after the %d rows in %s", self.name, self.resumed_rows,
                        self.partial_path)
        return self

    def write(self, values: Mapping[str, Any]) -> None:
        """Writes one row (a mapping column -> value).

        Raises:
            ValueError: The row has keys that are not output columns.
            RuntimeError: The writer is not open (use it as a context manager).
        """
        if not self._open:
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

    def stored_rows(self) -> Iterator[dict[str, Any]]:
        """The `resumed_rows` rows taken over from the partial output, read back from it as
        mappings column -> value (CSV/TSV: the cell strings; JSON Lines and Parquet: their
        types). Read them before writing new rows."""
        if self.resumed_rows == 0:
            return iter(())
        if self.format == "parquet":
            return _parquet_rows(self._part_paths())
        return self._read_back(self.partial_path, self.resumed_rows)

    def output_rows(self) -> Iterator[dict[str, Any]]:
        """The rows of the complete output already at `path` (written by an earlier writer of
        the same columns), read back as `stored_rows` does.

        Raises:
            DataError: The file has other columns or is not readable.
        """
        if self.format == "parquet":
            import pyarrow
            import pyarrow.parquet

            try:
                names = pyarrow.parquet.read_schema(self.path).names
            except (OSError, pyarrow.ArrowException) as error:
                raise DataError(f"Cannot read {self.name}: {error}") from None
            if names != self.columns:
                raise self._other_columns(names, path=self.path)
            return _parquet_rows([self.path])
        return self._read_back(self.path, None)

    def _read_back(self, path: Path, count: int | None) -> Iterator[dict[str, Any]]:
        """Rows of a CSV/TSV/JSON Lines file this class wrote (the first `count`, or all)."""
        with open(path, newline=_newline(self.format), encoding="utf-8") as file:
            if self.format == "jsonl":
                for number, line in enumerate(itertools.islice(file, count), start=1):
                    try:
                        record = json.loads(line)
                    except ValueError as error:
                        raise DataError(f"Cannot read {path}:{number}: not JSON ({error}). "
                                        "Expected a file written by tfinetune.") from None
                    if not isinstance(record, dict) or not self._column_set.issuperset(record):
                        raise self._other_columns(
                            list(record) if isinstance(record, dict) else record,
                            f" (line {number})", path)
                    yield record
                return
            records = csv.reader(file, delimiter="\t" if self.format == "tsv" else ",")
            header = next(records, None)
            if header != self.columns:
                raise self._other_columns(header, path=path)
            for record in itertools.islice(records, count):
                yield dict(zip(self.columns, record))

    def stored_form(self, value: Any) -> str:
        """`value` as this format stores it, to compare with a value read back by
        `stored_rows` (also passed through `stored_form`)."""
        if self.format in ("csv", "tsv"):
            cell = _cell(value)
            return cell if isinstance(cell, str) else str(cell)
        return json.dumps(value, ensure_ascii=False, default=_json_default, sort_keys=True)

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if not self._open:
            return
        if exc_type is None:
            try:
                self._finish()
            except BaseException:
                if self.keep_partial:
                    self._keep()
                else:
                    self._discard()
                raise
            logger.debug("Wrote %d rows to %s", self.resumed_rows + self.rows_written, self.name)
        elif self.keep_partial:
            self._keep()
        else:
            self._discard()

    # ------------------------------------------------------------------------------ ending

    def _finish(self) -> None:
        self._open = False
        try:
            if self.format == "parquet":
                self._flush_parquet()
                self._merge_parts()
                return
            file, self._file = self._file, None
            file.flush()
            os.fsync(file.fileno())
            file.close()
            os.replace(self.partial_path, self.path)
        except OSError as error:
            raise DataError(f"Cannot write {self.name}: {error.strerror or error}") from None

    def _keep(self) -> None:
        """Leaves the rows written so far in the partial output, for `resume`."""
        self._open = False
        file, self._file = self._file, None
        try:
            if self.format == "parquet":
                self._flush_parquet()
            elif file is not None:
                file.close()
        except Exception as error:  # noqa: BLE001 - already failing; resume re-sends these rows
            logger.warning("Could not keep the last rows in %s: %s", self.partial_path, error)
        logger.info("Kept %d rows in %s (resume to continue)",
                    self.resumed_rows + self.rows_written - len(self._parquet_buffer),
                    self.partial_path)

    def _discard(self) -> None:
        self._open = False
        file, self._file = self._file, None
        try:
            if file is not None:
                file.close()
        finally:
            _remove(self.partial_path)
            logger.debug("Discarded %s after an error", self.partial_path)

    # ------------------------------------------------------------------------------ resuming

    def _recover(self) -> None:
        """Takes over the complete rows of the partial output (see `resumed_rows`)."""
        if self.format == "parquet":
            self._recover_parts()
            return
        if self.partial_path.is_dir():
            raise DataError(f"Cannot resume {self.name}: {self.partial_path} is a directory. "
                            "Expected the partial output file of an earlier run.")
        size = self.partial_path.stat().st_size
        end = _complete_length(self.partial_path, quoted=self.format != "jsonl")
        if end < size:
            logger.warning("Dropping the incomplete last row of %s (%d bytes cut off by the "
                           "interruption)", self.partial_path, size - end)
            os.truncate(self.partial_path, end)
        if self.format == "jsonl":
            self.resumed_rows = sum(1 for _ in self._read_back(self.partial_path, None))
            return
        with open(self.partial_path, newline="", encoding="utf-8") as file:
            records = csv.reader(file, delimiter="\t" if self.format == "tsv" else ",")
            header = next(records, None)
            if header is None:
                return
            if header != self.columns:
                raise self._other_columns(header)
            self.resumed_rows = sum(1 for _ in records)

    def _recover_parts(self) -> None:
        import pyarrow.parquet

        if not self.partial_path.is_dir():
            raise DataError(f"Cannot resume {self.name}: {self.partial_path} is not a "
                            "directory. Expected the part files of an earlier run.")
        for leftover in self.partial_path.glob(f"*{_TEMP_SUFFIX}"):
            leftover.unlink()
        parts = self._part_paths()
        expected = [self._part_path(i) for i in range(1, len(parts) + 1)]
        if parts != expected:
            raise DataError(f"Cannot resume {self.name}: the part files in {self.partial_path} "
                            f"are not numbered 1..{len(parts)}. Received: "
                            f"{[path.name for path in parts]}")
        self._parts = len(parts)
        if not parts:
            return
        try:
            self._parquet_schema = pyarrow.parquet.read_schema(parts[0])
            self.resumed_rows = sum(pyarrow.parquet.ParquetFile(part).metadata.num_rows
                                    for part in parts)
        except (OSError, pyarrow.ArrowException) as error:
            raise DataError(f"Cannot resume {self.name}: cannot read the part files in "
                            f"{self.partial_path}: {error}") from None
        if self._parquet_schema.names != self.columns:
            raise self._other_columns(self._parquet_schema.names)

    def _other_columns(self, received: Any, where: str = "",
                       path: Path | None = None) -> DataError:
        return DataError(
            f"Cannot resume {self.name}: {path or self.partial_path} has other columns{where}. "
            f"Expected the columns of this run: {self.columns}. Received: {received}")

    # ------------------------------------------------------------------------------ Parquet

    def _part_path(self, index: int) -> Path:
        return self.partial_path / f"part-{index:06d}{_PART_SUFFIX}"

    def _part_paths(self) -> list[Path]:
        return sorted(self.partial_path.glob(f"part-*{_PART_SUFFIX}"))

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

    def _flush_parquet(self) -> None:
        """Writes the buffered rows as the next part file (renamed into place when whole)."""
        import pyarrow
        import pyarrow.parquet

        rows = self._parquet_buffer
        if not rows:
            return
        if self._parquet_schema is None:
            self._parquet_schema = self._infer_parquet_schema(rows)
        first = self._flushed_rows + 1
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
        part = self._part_path(self._parts + 1)
        temp = part.with_name(part.name + _TEMP_SUFFIX)
        pyarrow.parquet.write_table(table, temp)
        os.replace(temp, part)
        self._parts += 1
        self._flushed_rows += len(rows)
        self._parquet_buffer = []

    def _merge_parts(self) -> None:
        """Streams the part files into one Parquet file (a row group per part batch), renamed
        onto the target; then removes the partial directory."""
        import pyarrow
        import pyarrow.parquet

        schema = self._parquet_schema or self._infer_parquet_schema([])
        merged = self.partial_path / f"merged{_PART_SUFFIX}{_TEMP_SUFFIX}"
        with pyarrow.parquet.ParquetWriter(str(merged), schema) as writer:
            for part in self._part_paths():
                for batch in pyarrow.parquet.ParquetFile(part).iter_batches(PARQUET_BATCH_ROWS):
                    writer.write_table(pyarrow.Table.from_batches([batch], schema=schema))
        descriptor = os.open(merged, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(merged, self.path)
        shutil.rmtree(self.partial_path, ignore_errors=True)


def _parquet_rows(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet

    for path in paths:
        for batch in pyarrow.parquet.ParquetFile(path).iter_batches(PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()


def _complete_length(path: Path, *, quoted: bool) -> int:
    """Bytes of `path` up to the end of its last complete row: a row ends with a newline
    outside quotes (CSV doubles quotes inside quoted cells, so outside means after an even
    number of quote characters; JSON Lines has no raw newline inside a record)."""
    end = offset = quotes = 0
    with open(path, "rb") as file:
        for line in file:
            offset += len(line)
            if quoted:
                quotes += line.count(b'"')
            if line.endswith(b"\n") and quotes % 2 == 0:
                end = offset
    return end


def _newline(table_format: str) -> str:
    """`open`'s newline for reading: JSON Lines rows end at "\n" only; CSV needs ""."""
    return "\n" if table_format == "jsonl" else ""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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
