"""`TagSet`: the BIO (IOB2) tag names of a token-classification run, fixed from training data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from tfinetune.errors import DataError
from tfinetune.label_set import LabelSet

OUTSIDE = "O"
_TAG = re.compile(r"(?P<prefix>[BI])-(?P<type>\S+)")


def entity_type(tag: str) -> str | None:
    """The entity type of a BIO tag (`"B-PER"` → `"PER"`), None for `"O"`.

    Raises:
        ValueError: `tag` is not `O`, `B-<type>` or `I-<type>`.
    """
    if tag == OUTSIDE:
        return None
    match = _TAG.fullmatch(tag)
    if match is None:
        raise ValueError(f"not a BIO tag: {tag!r}")
    return match.group("type")


def is_tag(tag: object) -> bool:
    """True for `O`, `B-<type>` and `I-<type>` (type: no whitespace)."""
    return isinstance(tag, str) and (tag == OUTSIDE or _TAG.fullmatch(tag) is not None)


class TagSet(LabelSet):
    """The tags in tag-id order: `O` first, then `B-<type>`, `I-<type>` per entity type, types
    sorted alphabetically: the `LabelSet` (ids, `labels.json`) of a token classifier.

    Both tags of a type are present when either was seen, so that a validation or evaluation
    file may use `I-X` where training only had `B-X`.

    Args:
        types: The entity types.
    """

    def __init__(self, types: Iterable[str]) -> None:
        self.types = tuple(sorted(set(types)))
        if not self.types:
            raise DataError(
                "A token classifier needs at least one entity type in the training file. "
                "Expected some B-<type> or I-<type> tags. Received: only 'O' tags")
        super().__init__((OUTSIDE, *(f"{prefix}-{kind}" for kind in self.types
                                     for prefix in ("B", "I"))), minimum=1)

    @classmethod
    def from_tags(cls, tags: Iterable[str]) -> "TagSet":
        """The tag set of every tag in `tags` (each already checked with `is_tag`)."""
        return cls({kind for kind in map(entity_type, tags) if kind is not None})

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "TagSet":
        """The tag set of a saved `labels.json` (must be exactly what `names` gives)."""
        names = list(names)
        if not all(is_tag(name) for name in names):
            raise DataError(f"Invalid tag names. Expected O, B-<type> and I-<type> tags. "
                            f"Received: labels={names}")
        tags = cls.from_tags(names)
        if list(tags.names) != names:
            raise DataError(f"Invalid tag order. Expected labels={list(tags.names)}. "
                            f"Received: labels={names}")
        return tags

    @classmethod
    def load(cls, directory: str | Path) -> "TagSet":
        """Reads the `labels.json` of a run directory.

        Raises:
            DataError: the file is missing or not a tag set written by `save`.
        """
        return cls.from_names(LabelSet.load(directory).names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagSet) and other.names == self.names

    def __repr__(self) -> str:
        return f"TagSet({list(self.names)!r})"
