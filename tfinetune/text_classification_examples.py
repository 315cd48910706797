"""`TextClassificationExamples`: a classification file read and checked row by row."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from tfinetune.errors import DataError
from tfinetune.label_set import LabelSet
from tfinetune.label_set import label_name
from tfinetune.table_reader import TableReader


@dataclasses.dataclass(frozen=True)
class TextClassificationExamples:
    """Texts (and optional text pairs) with their targets, in file order.

    Targets are class ids (single-label), 0/1 indicator rows over `labels` (multi-label) or
    floats (regression). Build it with `read`, which checks every row before anything is
    trained.
    """

    path: Path
    texts: list[str]
    text_pairs: list[str] | None
    targets: list
    labels: LabelSet | None

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def read(
        cls,
        path: str | Path,
        *,
        text_column: str,
        label_column: str,
        text_pair_column: str | None = None,
        labels: LabelSet | None = None,
        role: str = "training",
        problem_type: str = "single-label",
        label_delimiter: str = ",",
    ) -> "TextClassificationExamples":
        """Reads `path`; fixes the label set from it unless `labels` is given.

        Single-label rows hold one label (string or integer); multi-label rows a list (JSONL,
        Parquet) or a `label_delimiter`-separated string, possibly empty; regression rows a
        number.

        Raises:
            DataError: missing file or column, empty file, empty text or label, a label not in
                `labels`, a non-numeric regression target, or an unreadable row; the message
                names the file and row.
        """
        reader = TableReader(path)
        columns = [text_column] + ([text_pair_column] if text_pair_column else []) + [label_column]
        reader.require_columns(columns)
        texts: list[str] = []
        pairs: list[str] | None = [] if text_pair_column else None
        values: list = []
        locations: list[str] = []
        label_types = _LabelTypes(label_column)
        for row in reader:
            texts.append(_text(row.values.get(text_column), text_column, row.location))
            if pairs is not None:
                pairs.append(_text(row.values.get(text_pair_column), text_pair_column,
                                   row.location))
            raw = row.values.get(label_column)
            if problem_type == "regression":
                values.append(_number(raw, label_column, row.location))
            elif problem_type == "multi-label":
                values.append(_label_list(raw, label_column, label_delimiter, row.location))
            else:
                label_types.check(raw, row.location)
                values.append(_single_label(raw, label_column, row.location))
            locations.append(row.location)
        if not texts:
            raise DataError(
                f"The {role} file {path} has a header but no data rows. "
                "Expected at least one labelled row.")
        if problem_type == "regression":
            return cls(Path(path), texts, pairs, values, labels)
        if labels is None:
            names = [name for value in values
                     for name in (value if problem_type == "multi-label" else [value])]
            labels = LabelSet.from_values(names)
        targets = []
        for value, location in zip(values, locations):
            names = value if problem_type == "multi-label" else [value]
            for name in names:
                if name not in labels:
                    raise DataError(
                        f"Label not seen in the training file. Expected one of "
                        f"{list(labels.names)}. Received: {label_column}={name!r} at {location}")
            if problem_type == "multi-label":
                row = [0.0] * len(labels)
                for name in names:
                    row[labels.id_of(name)] = 1.0
                targets.append(row)
            else:
                targets.append(labels.id_of(value))
        return cls(Path(path), texts, pairs, targets, labels)


class _LabelTypes:
    """Refuses a label column whose values have different JSON types (JSON Lines: `1` in one
    row, `"positive"` in another): read as text they would silently become one label set."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.first: tuple[str, object, str] | None = None

    @staticmethod
    def kind(value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            return "booleans"
        if isinstance(value, (int, float)):
            return "numbers"
        if isinstance(value, str):
            return "strings"
        return type(value).__name__ + " values"

    def check(self, value: object, location: str) -> None:
        kind = self.kind(value)
        if kind is None:
            return
        if self.first is None:
            self.first = (kind, value, location)
            return
        first_kind, first_value, first_location = self.first
        if kind != first_kind:
            raise DataError(
                f"Label column '{self.column}' mixes types: {first_kind} (e.g. "
                f"{first_value!r} at {first_location}) and {kind}. Expected every label to "
                f"have the same type (all strings or all integers). Received: "
                f"{self.column}={value!r} at {location}")


def _text(value: object, column: str, location: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(
            f"Empty text in column '{column}'. Expected a non-empty string. "
            f"Received: {column}={value!r} at {location}")
    if not isinstance(value, str):
        raise DataError(
            f"Text in column '{column}' must be a string. "
            f"Received: {column}={value!r} ({type(value).__name__}) at {location}")
    return value


def _single_label(value: object, column: str, location: str) -> str:
    name = label_name(value)
    if name is None:
        raise DataError(
            f"Empty label in column '{column}'. Expected a label for every row. "
            f"Received: {column}={value!r} at {location}")
    return name


def _label_list(value: object, column: str, delimiter: str, location: str) -> list[str]:
    if value is None:
        raise DataError(
            f"Missing labels in column '{column}'. Expected a list of labels or a "
            f"{delimiter!r}-separated string (empty for none). Received: {column}=None at "
            f"{location}")
    return parse_label_list(value, delimiter)


def parse_label_list(value: object, delimiter: str) -> list[str]:
    """A multi-label cell as `fit` reads it: a list (JSONL, Parquet) or a `delimiter`-separated
    string (empty for no label) → the sorted, unique label names (empty items dropped).

    `value` must not be None (a missing cell is an error for `fit`, an excluded row for
    `score`)."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays from Parquet
        items = list(value.tolist())
    else:
        items = str(value).split(delimiter)
    names = [label_name(item) for item in items]
    return sorted({name for name in names if name is not None})


def parse_number(value: object) -> float | None:
    """A regression cell as `fit` reads it: a finite number (or numeric string), else None."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    return None if math.isnan(number) or math.isinf(number) else number


def _number(value: object, column: str, location: str) -> float:
    number = parse_number(value)
    if number is None:
        raise DataError(
            f"Regression target in column '{column}' must be a finite number. "
            f"Received: {column}={value!r} at {location}")
    return number
