"""`TextClassificationExamples`: a classification file read and checked row by row."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tfinetune.errors import DataError
from tfinetune.label_set import LabelSet
from tfinetune.label_set import label_name
from tfinetune.table_reader import TableReader


@dataclasses.dataclass(frozen=True)
class TextClassificationExamples:
    """Texts (and optional text pairs) with their label ids, in file order.

    Build it with `read`, which checks every row before anything is trained.
    """

    path: Path
    texts: list[str]
    text_pairs: list[str] | None
    label_ids: list[int]
    labels: LabelSet

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
    ) -> "TextClassificationExamples":
        """Reads `path`; fixes the label set from it unless `labels` is given.

        Raises:
            DataError: missing file or column, empty file, empty text or label, a label not in
                `labels`, or an unreadable row; the message names the file and row.
        """
        reader = TableReader(path)
        columns = [text_column] + ([text_pair_column] if text_pair_column else []) + [label_column]
        reader.require_columns(columns)
        texts: list[str] = []
        pairs: list[str] | None = [] if text_pair_column else None
        names: list[str] = []
        locations: list[str] = []
        for row in reader:
            texts.append(_text(row.values.get(text_column), text_column, row.location))
            if pairs is not None:
                pairs.append(_text(row.values.get(text_pair_column), text_pair_column, row.location))
            name = label_name(row.values.get(label_column))
            if name is None:
                raise DataError(
                    f"Empty label in column '{label_column}'. Expected a label for every row. "
                    f"Received: {label_column}={row.values.get(label_column)!r} at {row.location}"
                )
            names.append(name)
            locations.append(row.location)
        if not texts:
            raise DataError(
                f"The {role} file {path} has a header but no data rows. "
                "Expected at least one labelled row."
            )
        if labels is None:
            labels = LabelSet.from_values(names)
        label_ids = []
        for name, location in zip(names, locations):
            if name not in labels:
                raise DataError(
                    f"Label not seen in the training file. Expected one of {list(labels.names)}. "
                    f"Received: {label_column}={name!r} at {location}"
                )
            label_ids.append(labels.id_of(name))
        return cls(Path(path), texts, pairs, label_ids, labels)


def _text(value: object, column: str, location: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(
            f"Empty text in column '{column}'. Expected a non-empty string. "
            f"Received: {column}={value!r} at {location}"
        )
    if not isinstance(value, str):
        raise DataError(
            f"Text in column '{column}' must be a string. "
            f"Received: {column}={value!r} ({type(value).__name__}) at {location}"
        )
    return value
