"""`LabelSet`: the ordered class names of a classification run, fixed from the training file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable
from typing import Sequence

from tfinetune.errors import DataError


def label_name(value: object) -> str | None:
    """The canonical string form of a label value, or None when it is empty.

    Integers (and integral floats such as Parquet's `1.0`) become `"1"`, so that a label column
    read from CSV (strings) and from JSONL or Parquet (numbers) gives the same label names.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    return text or None


def _is_int(name: str) -> bool:
    try:
        int(name)
    except ValueError:
        return False
    return True


class LabelSet:
    """The class names in class-id order.

    Names are sorted: numerically when every name is an integer (`"2"` before `"10"`), otherwise
    alphabetically, so the same training data always gives the same ids.

    Args:
        names: Label names in class-id order.
    """

    FILE_NAME = "labels.json"

    def __init__(self, names: Sequence[str], minimum: int = 2):
        names = tuple(str(name) for name in names)
        if len(names) < minimum:
            raise DataError(
                "A classifier needs at least 2 distinct labels in the training file. "
                f"Received: labels={list(names)}"
            )
        if len(set(names)) != len(names):
            raise DataError(f"Label names must be unique. Received: labels={list(names)}")
        self.names = names
        self._ids = {name: i for i, name in enumerate(names)}

    @classmethod
    def for_regression(cls, target_name: str) -> "LabelSet":
        """The one "label" of a regression model: the name of its target."""
        return cls([target_name], minimum=1)

    @classmethod
    def from_values(cls, values: Iterable[object]) -> "LabelSet":
        names = {label_name(value) for value in values} - {None}
        if all(_is_int(name) for name in names):
            return cls(sorted(names, key=int))
        return cls(sorted(names))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def id_of(self, name: str) -> int:
        return self._ids[name]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return dict(self._ids)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / self.FILE_NAME
        path.write_text(json.dumps({"labels": list(self.names)}, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "LabelSet":
        path = Path(directory) / cls.FILE_NAME
        try:
            names = json.loads(path.read_text(encoding="utf-8"))["labels"]
            return cls(names, minimum=1)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(
                f"Cannot read the label set. Expected {path} with {{\"labels\": [...]}} as written "
                f"by `tfinetune fit`. Received: {error}"
            ) from error

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and other.names == self.names

    def __repr__(self) -> str:
        return f"LabelSet({list(self.names)!r})"
