"""`TokenClassificationCodec`: entities from a token-classification (NER) export's per-word tags.

The export's `serving_default` takes `text` and returns, per word, `tags` (BIO), `scores`,
`word_start`/`word_end` (byte offsets into the UTF-8 text) and `word_count`. Entities are
decoded here:

- `B-X` starts an entity of type X; `I-X` continues the current X entity, or starts a new one
  when there is none or it has another type (seqeval's default); `O` ends it.
- `start`/`end` are character offsets into the input text (`end` exclusive), from the first
  word's start to the last word's end, and `text` is `text[start:end]`.
- `score` is the mean of the entity's words' scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.prediction import Prediction
from serving.task_codec import TaskCodec


class TokenClassificationCodec(TaskCodec):
    """Entities `{"type", "start", "end", "text", "score"}` per input text."""

    task = "token-classification"
    outputs = ("tags", "scores", "word_start", "word_end", "word_count")
    inputs = ("text",)

    def predictions(self, outputs: Mapping[str, np.ndarray], texts: Sequence[str],
                    text_pairs: Sequence[str] | None) -> list[Prediction]:
        tags = _matrix(outputs, "tags", len(texts))
        scores = _matrix(outputs, "scores", len(texts))
        starts = _matrix(outputs, "word_start", len(texts))
        ends = _matrix(outputs, "word_end", len(texts))
        counts = np.asarray(outputs["word_count"]).reshape(-1)
        if counts.shape[0] != len(texts):
            raise ValueError(f"'word_count' has {counts.shape[0]} rows for {len(texts)} texts")
        predictions = []
        for i, text in enumerate(texts):
            count = int(counts[i])
            if not 0 <= count <= tags.shape[1]:
                raise ValueError(f"word_count={count} for {tags.shape[1]} word columns")
            words = [(_tag(tags[i][j]), float(scores[i][j]), int(starts[i][j]), int(ends[i][j]))
                     for j in range(count)]
            predictions.append(Prediction(entities=decode_entities(text, words)))
        return predictions


def decode_entities(text: str, words: Sequence[tuple[str, float, int, int]]) -> list[dict]:
    """Entities of one text from its words `(tag, score, byte start, byte end)` in order.

    Raises:
        ValueError: a tag is not O/B-X/I-X, or an offset is outside the text.
    """
    characters = _char_offsets(text)
    entities: list[dict] = []
    current: dict | None = None
    for tag, score, start, end in words:
        if not 0 <= start <= end < len(characters):
            raise ValueError(f"word offsets {start}:{end} outside the text of "
                             f"{len(characters) - 1} bytes")
        if tag == "O":
            current = None
            continue
        prefix, _, kind = tag.partition("-")
        if prefix not in ("B", "I") or not kind:
            raise ValueError(f"tag {tag!r} is not a BIO tag (O, B-<type>, I-<type>)")
        if prefix == "I" and current is not None and current["type"] == kind:
            current["end"] = end
            current["scores"].append(score)
            continue
        current = {"type": kind, "start": start, "end": end, "scores": [score]}
        entities.append(current)
    result = []
    for entity in entities:
        start, end = characters[entity["start"]], characters[entity["end"]]
        if start is None or end is None:
            raise ValueError(f"word offsets {entity['start']}:{entity['end']} are not on "
                             "character boundaries")
        result.append({"type": entity["type"], "start": start, "end": end,
                       "text": text[start:end],
                       "score": float(sum(entity["scores"]) / len(entity["scores"]))})
    return result


def _char_offsets(text: str) -> list[int | None]:
    """UTF-8 byte offset → character offset (None inside a character), for offsets 0..len."""
    offsets: list[int | None] = []
    for index, character in enumerate(text):
        offsets.append(index)
        offsets.extend([None] * (len(character.encode("utf-8")) - 1))
    offsets.append(len(text))
    return offsets


def _matrix(outputs: Mapping[str, np.ndarray], name: str, rows: int) -> np.ndarray:
    values = np.asarray(outputs[name])
    if values.ndim != 2 or values.shape[0] != rows:
        raise ValueError(f"'{name}' has shape {values.shape}; expected [{rows}, words]")
    return values


def _tag(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
