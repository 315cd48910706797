"""`Seq2SeqExamples`: a seq2seq (translation, summarisation) file read and checked row by row."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tfinetune.errors import DataError
from tfinetune.table_reader import TableReader


@dataclasses.dataclass(frozen=True)
class Seq2SeqExamples:
    """Source texts and their target texts, in file order.

    Build it with `read`, which checks every row (CSV, TSV, JSON Lines or Parquet) before
    anything is trained.

    Attributes:
        path: The file read.
        sources: The source texts (without any `source_prefix`).
        targets: The target texts.
        locations: Where each row is (`"train.csv:17"`), for messages.
    """

    path: Path
    sources: list[str]
    targets: list[str]
    locations: list[str]

    def __len__(self) -> int:
        return len(self.sources)

    @classmethod
    def read(cls, path: str | Path, *, source_column: str, target_column: str,
             role: str = "training") -> "Seq2SeqExamples":
        """Reads `path` with the texts of `source_column` and `target_column`.

        Raises:
            DataError: missing file or column, same column twice, no data rows, or a missing,
                empty or non-text value; the message names the file, row and column.
        """
        if source_column == target_column:
            raise DataError(
                "The source and target columns must be different columns. Received: "
                f"source_column={source_column!r}, target_column={target_column!r}")
        reader = TableReader(path)
        reader.require_columns([source_column, target_column])
        sources: list[str] = []
        targets: list[str] = []
        locations: list[str] = []
        for row in reader:
            sources.append(_text(row.values.get(source_column), source_column, row.location))
            targets.append(_text(row.values.get(target_column), target_column, row.location))
            locations.append(row.location)
        if not sources:
            raise DataError(
                f"The {role} file {path} has a header but no data rows. "
                f"Expected at least one row with {source_column!r} and {target_column!r}.")
        return cls(Path(path), sources, targets, locations)


def _text(value: Any, column: str, location: str) -> str:
    if value is None:
        raise DataError(f"Missing value in column {column!r}. Expected a non-empty text. "
                        f"Received: {column}=null at {location}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"Column {column!r} must hold text. Expected a string. Received: "
                        f"{column}={value!r} ({type(value).__name__}) at {location}")
    text = str(value)
    if not text.strip():
        raise DataError(f"Empty value in column {column!r}. Expected a non-empty text. "
                        f"Received: {column}={text!r} at {location}")
    return text
