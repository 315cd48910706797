"""`PortableTokenClassificationCodec`: the client side of a `--portable` token-classification
(NER) export, which takes token ids and returns per-token `logits` and `probabilities`.

It does on the client what the default export's graph does (see
`export.token_classifier_serving_module`), then decodes entities with the default export's
codec (`serving.token_classification_codec.decode_entities`), so both exports give the same
entities:

1. Words: `serving.portable_word_splitter.split_words` (BERT's basic tokenization, UTF-8 byte
   offsets).
2. Word pieces: the export's `tokenizer.json` (the `tokenizers` library) on the words as
   pre-tokenized input without special tokens, like `tokenizer(words,
   is_split_into_words=True, add_special_tokens=False)`; words without pieces (only control
   characters, a lone combining mark) are not tagged.
3. Windows: consecutive runs of `max_length - 2` pieces (at least one per text, no overlap),
   each sent as `[CLS] pieces [SEP]`, padded on the right to the longest window of the request
   (or to `max_length`); `token_type_ids` are 0. A request holds every window of every text.
4. Tags: each word from its first piece: the tag of the highest probability and that
   probability as the word's score.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.portable_codec_files import read_client_tokenizer
from serving.portable_codec_files import require_portable
from serving.portable_word_splitter import split_words
from serving.prediction import Prediction
from serving.token_classification_codec import decode_entities

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class TextWindows:
    """How one text was cut: its tagged words and where their first pieces are.

    Attributes:
        words: `(word, byte start, byte end)` of each word that has pieces, in order.
        first_pieces: Per word, the index of its first piece among the text's pieces.
        piece_ids: The text's piece ids (no special tokens).
        first_row: The row of the text's first window in the request.
        window_count: How many windows (rows) the text has.
    """

    words: tuple[tuple[str, int, int], ...]
    first_pieces: tuple[int, ...]
    piece_ids: tuple[int, ...]
    first_row: int
    window_count: int


class PortableTokenClassificationCodec:
    """Token ids for, and entities from, a portable NER export.

    Args:
        tokenizer: A `tokenizers.Tokenizer` (its truncation and padding are turned off).
        tags: Tag names; index = tag id.
        max_length: Tokens per window, `[CLS]` and `[SEP]` included (at least 3).
        cls_token_id, sep_token_id, pad_token_id: The special tokens' ids.
        source: Where the export was read from (for messages).
        pad_to_max_length: Pad every window to `max_length` (requests of one shape, for
            servers that batch).
    """

    task = "token-classification"

    def __init__(self, tokenizer: Any, *, tags: Sequence[str], max_length: int,
                 cls_token_id: int, sep_token_id: int, pad_token_id: int, source: str = "",
                 pad_to_max_length: bool = False) -> None:
        if max_length < 3:
            raise ValueError(f"max_length must leave room for [CLS], a token and [SEP]. "
                             f"Expected at least 3. Received: {max_length} ({source})")
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.tags = tuple(str(tag) for tag in tags)
        self.max_length = int(max_length)
        self.budget = self.max_length - 2
        self.cls_token_id, self.sep_token_id = int(cls_token_id), int(sep_token_id)
        self.pad_token_id = int(pad_token_id)
        self.source = source
        self.pad_to_max_length = bool(pad_to_max_length)

    @classmethod
    def from_export(cls, assets: Path, config: Mapping[str, Any], *,
                    pad_to_max_length: bool = False) -> "PortableTokenClassificationCodec":
        """Reads a portable NER export's `assets.extra` (`export_config.json` already read as
        `config`).

        Raises:
            ValueError: The export is not a portable NER export or its files are invalid
                (the message names the file and field).
        """
        config_file = Path(assets) / "export_config.json"
        require_portable(config, config_file, "token-classification")
        special = config.get("special_token_ids")
        tags = config.get("tags")
        if (not isinstance(special, dict) or not all(
                isinstance(special.get(name), int) for name in ("cls", "sep", "pad"))):
            raise ValueError(f"Invalid special_token_ids in {config_file}. Expected "
                             f'{{"cls": int, "sep": int, "pad": int}}. Received: {special!r}')
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"Invalid tags in {config_file}. Expected a non-empty list of tag "
                             f"names. Received: {tags!r}")
        tokenizer = read_client_tokenizer(Path(assets) / str(config.get("client_tokenizer")),
                                          config_file)
        return cls(tokenizer, tags=tags, max_length=int(config["max_length"]),
                   cls_token_id=special["cls"], sep_token_id=special["sep"],
                   pad_token_id=special["pad"], source=str(assets),
                   pad_to_max_length=pad_to_max_length)

    def windows(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], list[TextWindows]]:
        """The model inputs of every window of `texts` (int32 [windows, width]) and how each
        text was cut."""
        split = [split_words(text) for text in texts]
        encodings = self._tokenizer.encode_batch([[w for w, _, _ in words] for words in split],
                                                 is_pretokenized=True, add_special_tokens=False)
        rows: list[list[int]] = []
        layouts = []
        for words, encoding in zip(split, encodings):
            first: dict[int, int] = {}
            for position, word in enumerate(encoding.word_ids):
                if word is not None and word not in first:
                    first[word] = position
            kept = sorted(first)
            ids = list(encoding.ids)
            windows = [ids[k:k + self.budget] for k in range(0, max(len(ids), 1), self.budget)]
            layouts.append(TextWindows(
                words=tuple(words[w] for w in kept), first_pieces=tuple(first[w] for w in kept),
                piece_ids=tuple(ids), first_row=len(rows), window_count=len(windows)))
            rows.extend([self.cls_token_id, *window, self.sep_token_id] for window in windows)
        width = self.max_length if self.pad_to_max_length else max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int32)
        attention_mask = np.zeros((len(rows), width), dtype=np.int32)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = row
            attention_mask[i, :len(row)] = 1
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                  "token_type_ids": np.zeros_like(input_ids)}
        return inputs, layouts

    def encode(self, texts: Sequence[str],
               text_pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The token id inputs of `texts` (several rows per text longer than one window).

        Raises:
            ValueError: `text_pairs` is given (NER tags single texts).
        """
        self._check_no_pairs(text_pairs)
        return self.windows(texts)[0]

    def fill_request(self, request: Any, texts: Sequence[str],
                     text_pairs: Sequence[str] | None = None
                     ) -> Callable[[Mapping[str, np.ndarray]], list[Prediction]]:
        """Sets the request's token id inputs; returns the decoder of its response."""
        from serving import tensor_codec

        self._check_no_pairs(text_pairs)
        texts = list(texts)
        inputs, layouts = self.windows(texts)
        for name, values in inputs.items():
            request.inputs[name].CopyFrom(tensor_codec.to_tensor_proto(values,
                                                                       as_tensor_content=True))
        return lambda outputs: self.predictions(outputs, texts, layouts)

    def predictions(self, outputs: Mapping[str, np.ndarray], texts: Sequence[str],
                    layouts: Sequence[TextWindows]) -> list[Prediction]:
        """Entities per text from the per-token `probabilities` (or `logits`) of its windows.

        Raises:
            ValueError: The outputs do not have one row per window and one column per tag.
        """
        return [Prediction(entities=decode_entities(text, words))
                for text, words in zip(texts, self.tagged_words(outputs, layouts))]

    def tagged_words(self, outputs: Mapping[str, np.ndarray], layouts: Sequence[TextWindows]
                     ) -> list[list[tuple[str, float, int, int]]]:
        """Per text, `(tag, score, byte start, byte end)` of each word (the input of
        `decode_entities`)."""
        probabilities = _probabilities(outputs)
        rows = sum(layout.window_count for layout in layouts)
        if probabilities.ndim != 3 or probabilities.shape[0] != rows or (
                probabilities.shape[2] != len(self.tags)):
            raise ValueError(f"'probabilities' has shape {list(probabilities.shape)}; expected "
                             f"[{rows} windows, tokens, {len(self.tags)} tags]")
        result = []
        for layout in layouts:
            words = []
            for (_, start, end), first in zip(layout.words, layout.first_pieces):
                row = layout.first_row + first // self.budget
                column = first % self.budget + 1  # after [CLS]
                if column >= probabilities.shape[1]:
                    raise ValueError(f"'probabilities' has {probabilities.shape[1]} tokens per "
                                     f"window; expected at least {column + 1}")
                scores = probabilities[row, column]
                best = int(np.argmax(scores))
                words.append((self.tags[best], float(scores[best]), start, end))
            result.append(words)
        return result

    @staticmethod
    def _check_no_pairs(text_pairs: Sequence[str] | None) -> None:
        if text_pairs is not None:
            raise ValueError(f"A token-classification model tags single texts. Expected no "
                             f"text_pairs. Received: {len(text_pairs)}")


def _probabilities(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    if "probabilities" in outputs:
        return np.asarray(outputs["probabilities"], dtype=np.float32)
    if "logits" in outputs:
        logits = np.asarray(outputs["logits"], dtype=np.float32)
        if logits.ndim == 0:
            return logits
        exponents = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exponents / exponents.sum(axis=-1, keepdims=True)
    raise ValueError(f"no 'probabilities' or 'logits' output; received "
                     f"{json.dumps(sorted(outputs))}")
