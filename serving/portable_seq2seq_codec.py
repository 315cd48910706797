"""`PortableSeq2SeqCodec`: the client side of a `--portable` seq2seq export, whose
`serving_default` takes `input_ids` and `attention_mask` (int32 [-1, max_length]) and returns
`generated_ids` (int32 [-1, max_new_tokens + 1]).

What the default export's graph does around generation happens here:

- Encoding: `source_prefix + text`, tokenised with special tokens (eos at the end), cut to
  `max_length` tokens and padded on the right to exactly `max_length` (the export's XLA
  generation is compiled for that one length), like `tokenizer(prefix + text,
  padding="max_length", truncation=True, max_length=max_length)`.
- Decoding: like `tokenizer.batch_decode(generated_ids, skip_special_tokens=True)`.

Two tokenizers (`client_tokenizer` in `export_config.json`):

- a `tokenizer.json` path (T5/mT5 SentencePiece and other fast tokenizers), read with the
  `tokenizers` library, which decodes as the fast Hugging Face tokenizer does;
  `decode.clean_up_tokenization_spaces` applies Hugging Face's clean-up after it;
- `"byt5"`: ByT5's byte tokenizer, which has no `tokenizer.json`: byte `b` is id `b + 3`
  (0 pad, 1 eos, 2 unk), decoding drops the other ids and invalid UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.portable_codec_files import read_client_tokenizer
from serving.portable_codec_files import require_portable
from serving.prediction import Prediction

BYT5 = "byt5"
GENERATED_IDS = "generated_ids"
_BYTE_OFFSET, _PAD_ID, _EOS_ID = 3, 0, 1
#: Hugging Face's `clean_up_tokenization` replacements, in its order.
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class PortableSeq2SeqCodec:
    """Token ids for, and generated texts from, a portable seq2seq export.

    Args:
        tokenizer: A `tokenizers.Tokenizer`, or None for ByT5's byte tokenizer.
        max_length: Source tokens, eos included (every input is padded to it).
        source_prefix: Put before every text (the run's `--source-prefix`).
        pad_token_id: The id inputs are padded with.
        clean_up_tokenization_spaces: Apply Hugging Face's clean-up when decoding.
        source: Where the export was read from (for messages).
    """

    task = "seq2seq"

    def __init__(self, tokenizer: Any, *, max_length: int, source_prefix: str = "",
                 pad_token_id: int = _PAD_ID,
                 clean_up_tokenization_spaces: bool = False, source: str = "") -> None:
        self.max_length = int(max_length)
        self.source_prefix = str(source_prefix)
        self.pad_token_id = int(pad_token_id)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.source = source
        self._tokenizer = tokenizer
        if tokenizer is not None:
            tokenizer.enable_truncation(self.max_length, strategy="longest_first",
                                        direction="right")
            tokenizer.enable_padding(direction="right", pad_id=self.pad_token_id,
                                     pad_type_id=0, length=self.max_length,
                                     pad_token=tokenizer.id_to_token(self.pad_token_id) or "")

    @classmethod
    def from_export(cls, assets: Path, config: Mapping[str, Any], *,
                    pad_to_max_length: bool = False) -> "PortableSeq2SeqCodec":
        """Reads a portable seq2seq export's `assets.extra` (`export_config.json` already read
        as `config`). `pad_to_max_length` changes nothing: inputs always have `max_length`.

        Raises:
            ValueError: The export is not a portable seq2seq export or its files are invalid
                (the message names the file and field).
        """
        config_file = Path(assets) / "export_config.json"
        require_portable(config, config_file, "seq2seq")
        decode = config.get("decode") or {}
        pad_token_id = config.get("pad_token_id", _PAD_ID)
        if not isinstance(decode, dict) or not isinstance(pad_token_id, int):
            raise ValueError(f"Invalid decode or pad_token_id in {config_file}. Expected an "
                             f"object and an integer. Received: decode={decode!r}, "
                             f"pad_token_id={pad_token_id!r}")
        name = config.get("client_tokenizer")
        tokenizer = None
        if name != BYT5:
            tokenizer = read_client_tokenizer(Path(assets) / str(name), config_file,
                                              alternative=f' or "{BYT5}"')
        return cls(tokenizer, max_length=int(config["max_length"]),
                   source_prefix=str(config.get("source_prefix") or ""),
                   pad_token_id=pad_token_id,
                   clean_up_tokenization_spaces=bool(decode.get("clean_up_tokenization_spaces")),
                   source=str(assets))

    def encode(self, texts: Sequence[str],
               text_pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """`input_ids` and `attention_mask`, int32 [len(texts), max_length].

        Raises:
            ValueError: `text_pairs` is given (seq2seq takes single texts).
        """
        if text_pairs is not None:
            raise ValueError(f"A seq2seq model takes single texts. Expected no text_pairs. "
                             f"Received: {len(text_pairs)}")
        sources = [self.source_prefix + text for text in texts]
        if self._tokenizer is None:
            return self._encode_bytes(sources)
        encodings = self._tokenizer.encode_batch(sources, add_special_tokens=True)
        return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int32),
                "attention_mask": np.array([e.attention_mask for e in encodings],
                                           dtype=np.int32)}

    def decode(self, generated_ids: np.ndarray) -> list[str]:
        """The texts of generated ids [batch, length], special tokens skipped."""
        rows = [[int(i) for i in row] for row in np.asarray(generated_ids)]
        if self._tokenizer is None:
            texts = [bytes(i - _BYTE_OFFSET for i in row
                           if _BYTE_OFFSET <= i < _BYTE_OFFSET + 256).decode("utf-8", "ignore")
                     for row in rows]
        else:
            texts = self._tokenizer.decode_batch(rows, skip_special_tokens=True)
        if self.clean_up_tokenization_spaces:
            texts = [clean_up_spaces(text) for text in texts]
        return texts

    def fill_request(self, request: Any, texts: Sequence[str],
                     text_pairs: Sequence[str] | None = None
                     ) -> Callable[[Mapping[str, np.ndarray]], list[Prediction]]:
        """Sets the request's token id inputs; returns the decoder of its response."""
        from serving import tensor_codec

        for name, values in self.encode(texts, text_pairs).items():
            request.inputs[name].CopyFrom(tensor_codec.to_tensor_proto(values,
                                                                       as_tensor_content=True))
        return lambda outputs: self.predictions(outputs, len(texts))

    def predictions(self, outputs: Mapping[str, np.ndarray], count: int) -> list[Prediction]:
        """`Prediction(generated_text=...)` per text from the `generated_ids` output.

        Raises:
            ValueError: No `generated_ids` output, or not one row per text.
        """
        if GENERATED_IDS not in outputs:
            raise ValueError(f"no '{GENERATED_IDS}' output; received {sorted(outputs)}")
        ids = np.asarray(outputs[GENERATED_IDS])
        if ids.ndim != 2 or ids.shape[0] != count:
            raise ValueError(f"'{GENERATED_IDS}' has shape {list(ids.shape)}; expected "
                             f"[{count}, tokens] (one row per text)")
        return [Prediction(generated_text=text) for text in self.decode(ids)]

    def _encode_bytes(self, sources: Sequence[str]) -> dict[str, np.ndarray]:
        input_ids = np.full((len(sources), self.max_length), _PAD_ID, dtype=np.int32)
        attention_mask = np.zeros_like(input_ids)
        for i, source in enumerate(sources):
            ids = [b + _BYTE_OFFSET for b in source.encode("utf-8")][:self.max_length - 1]
            ids.append(_EOS_ID)
            input_ids[i, :len(ids)] = ids
            attention_mask[i, :len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def clean_up_spaces(text: str) -> str:
    """Hugging Face's `clean_up_tokenization` (no space before punctuation and contractions)."""
    for old, new in _CLEAN_UP:
        text = text.replace(old, new)
    return text
