"""One row of a data file, with where it came from (for error messages)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TableRow:
    """A row read by `tfinetune.table_reader.TableReader`.

    Attributes:
        location: Where the row is, as an editor shows it: `"train.csv:17"` (physical line
            number of the row's first line, header = line 1) for CSV/TSV/JSON Lines, or
            `"train.parquet:row 17"` (1-based data row) for Parquet.
        values: Column name -> value. CSV/TSV values are strings; JSON Lines and Parquet
            values keep their types (`None` for null).
    """

    location: str
    values: dict[str, Any]
