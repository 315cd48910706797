"""`TokenClassificationExamples`: a NER file (CoNLL or JSON Lines) read and checked sentence by
sentence.

CoNLL files (`.conll`, `.iob`, `.txt`): one token per line, its tag in the last column and the
token in the first (columns separated by whitespace, so the CoNLL-2003 four-column layout and
two-column `token tag` files both work), a blank line between sentences, `-DOCSTART-` lines
skipped. JSON Lines (`.jsonl`, `.json`) and Parquet: one sentence per row, a list of tokens in
`tokens_column` and a list of tags of the same length in `tags_column`.

Tags are BIO (IOB2): `O`, `B-<type>`, `I-<type>`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tfinetune.errors import DataError
from tfinetune.tag_set import TagSet
from tfinetune.tag_set import entity_type
from tfinetune.tag_set import is_tag

#: Extensions read as CoNLL files.
CONLL_EXTENSIONS = (".conll", ".iob", ".txt")
#: Extensions read as one sentence per row (with `TableReader`).
TABLE_EXTENSIONS = (".jsonl", ".json", ".parquet")
DOCSTART = "-DOCSTART-"


@dataclasses.dataclass(frozen=True)
class TokenClassificationExamples:
    """Sentences (lists of tokens) with their tag lists, in file order.

    Attributes:
        path: The file read.
        tokens: Per sentence, its tokens.
        tags: Per sentence, one tag per token.
        locations: Per sentence, where it starts (`"train.conll:12"`).
        tag_set: The tag set the tags were checked against (fixed from this file when it is
            the training file).
    """

    path: Path
    tokens: list[list[str]]
    tags: list[list[str]]
    locations: list[str]
    tag_set: TagSet

    def __len__(self) -> int:
        return len(self.tokens)

    def tag_ids(self) -> list[list[int]]:
        """Per sentence, the tag ids of its tokens."""
        return [[self.tag_set.id_of(tag) for tag in sentence] for sentence in self.tags]

    @classmethod
    def read(cls, path: str | Path, *, tokens_column: str = "tokens", tags_column: str = "tags",
             tag_set: TagSet | None = None,
             role: str = "training") -> "TokenClassificationExamples":
        """Reads `path`; fixes the tag set from it unless `tag_set` is given.

        Raises:
            DataError: missing or empty file, unsupported extension, a line or row without a
                token and a tag, a tag that is not O/B-X/I-X, a token/tag count mismatch, an
                empty token, or (with `tag_set`) an entity type not in it; the message names
                the file and line (or row).
        """
        path = Path(path)
        extension = path.suffix.lower()
        if extension in CONLL_EXTENSIONS:
            if not path.is_file():
                raise DataError(f"File not found: {path} (looked for {path.absolute()})")
            sentences = _read_conll(path)
        elif extension in TABLE_EXTENSIONS:
            sentences = _read_table(path, tokens_column, tags_column)
        else:
            raise DataError(
                f"Unsupported file type {extension or '(no extension)'!r} for {path}. Expected "
                f"a CoNLL file ({', '.join(CONLL_EXTENSIONS)}) or one sentence per row "
                f"({', '.join(TABLE_EXTENSIONS)}).")
        if not sentences:
            raise DataError(f"The {role} file {path} has no sentences. Expected at least one "
                            "sentence of tokens with their tags.")
        all_tags = [tag for _, tags, _ in sentences for tag in tags]
        if tag_set is None:
            tag_set = TagSet.from_tags(all_tags)
        else:
            for _, tags, location in sentences:
                for index, tag in enumerate(tags):
                    if tag not in tag_set:
                        raise DataError(
                            f"Entity type {entity_type(tag)!r} was not seen in the training "
                            f"file. Expected tags among {list(tag_set.names)}. Received: "
                            f"tag {tag!r} (token {index + 1}) in the sentence at {location}")
        return cls(path, [tokens for tokens, _, _ in sentences],
                   [tags for _, tags, _ in sentences],
                   [location for _, _, location in sentences], tag_set)


def _read_conll(path: Path) -> list[tuple[list[str], list[str], str]]:
    sentences: list[tuple[list[str], list[str], str]] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = ""

    def close() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append((tokens, tags, start))
        tokens, tags = [], []

    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}:{number} is not valid UTF-8: byte {raw[error.start]:#04x} at "
                    f"position {error.start + 1} of the line. Expected a UTF-8 CoNLL file "
                    "(re-save it as UTF-8).") from None
            fields = line.split()
            location = f"{path}:{number}"
            if not fields:
                close()
                continue
            if fields[0] == DOCSTART:
                close()
                continue
            if len(fields) < 2:
                raise DataError(
                    f"A CoNLL line needs a token and a tag. Expected 'token ... tag' "
                    f"(whitespace-separated). Received: {line.strip()!r} at {location}")
            tag = fields[-1]
            if not is_tag(tag):
                raise DataError(_bad_tag_message(tag, location))
            if not tokens:
                start = location
            tokens.append(fields[0])
            tags.append(tag)
    close()
    return sentences


def _read_table(path: Path, tokens_column: str,
                tags_column: str) -> list[tuple[list[str], list[str], str]]:
    from tfinetune.table_reader import TableReader

    reader = TableReader(path)
    reader.require_columns([tokens_column, tags_column])
    sentences = []
    for row in reader:
        tokens = _string_list(row.values.get(tokens_column), tokens_column, row.location)
        tags = _string_list(row.values.get(tags_column), tags_column, row.location)
        if len(tokens) != len(tags):
            raise DataError(
                f"Every token needs one tag. Expected {len(tokens)} tags for {len(tokens)} "
                f"tokens. Received: {tags_column}={tags!r} ({_count(len(tags), 'tag')} for "
                f"{_count(len(tokens), 'token')}) at {row.location}")
        if not tokens:
            raise DataError(
                f"Empty sentence. Expected at least one token in '{tokens_column}'. "
                f"Received: {tokens_column}=[] at {row.location}")
        for index, token in enumerate(tokens):
            if not token.strip():
                raise DataError(
                    f"Empty token. Expected non-blank tokens. Received: token {index + 1} = "
                    f"{token!r} in '{tokens_column}' at {row.location}")
        for tag in tags:
            if not is_tag(tag):
                raise DataError(_bad_tag_message(tag, row.location, tags_column))
        sentences.append((tokens, tags, row.location))
    return sentences


def _string_list(value: Any, column: str, location: str) -> list[str]:
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(
            f"Column '{column}' must hold a list of strings. Received: {column}={value!r} at "
            f"{location}")
    return value


def _bad_tag_message(tag: str, location: str, column: str = "tag") -> str:
    return (f"Invalid tag. Expected BIO (IOB2) tags: O, B-<type> or I-<type>. "
            f"Received: {column}={tag!r} at {location}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
