"""`ClientTokenizer`: tokenise texts on the client for models whose signature takes token ids
(`tfinetune export --portable`), with the export's own tokenizer files.

Uses the `tokenizers` library only (no `transformers`): `tokenizer.json` in the export's
`assets.extra/tokenizer/` is the Hugging Face fast tokenizer's own file, so the ids are those the
model was fine-tuned with, truncated (`longest_first`) to the export's `max_length` and padded to
the longest input of the batch, like `tokenizer(texts, pairs, padding=True, truncation=True,
max_length=max_length)`.

Exports of other tasks (token classification, seq2seq, ...) need more than ids: windows, word
offsets, decoding of generated ids. `ClientTokenizer.from_path` reads the export's `task` and
hands those to the task's client codec (`PORTABLE_TASK_CODECS`), which also turns the
response's outputs into predictions (`fill_request` returns that decoder).
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

ASSETS_EXTRA = "assets.extra"
EXPORT_CONFIG_FILE = "export_config.json"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILE = "tokenizer.json"
#: The inputs of a signature that takes token ids, in the order of the encoding.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_VERSION = re.compile(r"[0-9]+")
_SPECIAL_TOKEN_FILES = ("tokenizer_config.json", "special_tokens_map.json")
TEXT_CLASSIFICATION = "text-classification"
#: Task (`task` in export_config.json) -> "module:Class" of the client codec of its portable
#: export. The class has `task`, `from_export(assets, config, *, pad_to_max_length)` (raising
#: ValueError naming what is wrong), `encode(texts, text_pairs)` (the token id inputs) and
#: `fill_request(request, texts, text_pairs)`, which returns a function from the response's
#: outputs (alias -> array) to one `Prediction` per text (raising ValueError on bad outputs).
PORTABLE_TASK_CODECS = {
    "token-classification":
        "serving.portable_token_classification_codec:PortableTokenClassificationCodec",
    "seq2seq": "serving.portable_seq2seq_codec:PortableSeq2SeqCodec",
    "question-answering":
        "serving.portable_question_answering_codec:PortableQuestionAnsweringCodec",
}


def takes_token_ids(signature: Any) -> bool:
    """Whether a `SignatureDef` takes token ids rather than text: it has an `input_ids` input
    and no string input."""
    from tensorflow.core.framework import types_pb2

    inputs = signature.inputs
    return "input_ids" in inputs and not any(
        info.dtype == types_pb2.DT_STRING for info in inputs.values())


def placeholder_token_inputs(signature: Any) -> dict[str, Any]:
    """One input of one attended token (id 0) for each integer input of a token-id signature:
    enough to read outputs that do not depend on the text (e.g. the label names)."""
    import tensorflow as tf

    from serving import tensor_codec

    tensors = {}
    for alias, info in signature.inputs.items():
        value = 1 if alias == "attention_mask" else 0
        array = np.array([[value]], dtype=tf.as_dtype(info.dtype).as_numpy_dtype)
        tensors[alias] = tensor_codec.to_tensor_proto(array)
    return tensors


class ClientTokenizer:
    """The tokenizer of an exported model, for clients of its token-id signatures.

    Example:
        tokenizer = ClientTokenizer.from_path("models/sentiment")  # the latest version's
        with Client("localhost:8500", "sentiment", tokenizer=tokenizer) as client:
            client.predict(["great movie"])

    Args:
        tokenizer: A `tokenizers.Tokenizer` (its truncation and padding are set here).
        max_length: Maximum tokens per input, special tokens included.
        text_pair: Whether the model classifies text pairs.
        pad_token: The padding token; `pad_token_id` its id.
        source: Where the tokenizer was read from (for messages).
        pad_to_max_length: Pad every input to `max_length` tokens instead of the longest input
            of the request. Then every request has the same shape, which a server's batching
            needs when it does not pad (TF Serving's `pad_variable_length_inputs` off: requests
            of other lengths fail to batch; on, it pads `attention_mask` with 1s and changes
            the predictions). Costs the padded tokens' compute.
    """

    def __init__(self, tokenizer: Any, *, max_length: int, text_pair: bool, pad_token: str | None,
                 pad_token_id: int | None, source: str = "", pad_to_max_length: bool = False,
                 task_codec: Any = None) -> None:
        self.max_length = int(max_length)
        self.text_pair = bool(text_pair)
        self.source = source
        self.pad_to_max_length = bool(pad_to_max_length)
        #: The client codec of another task's export (see `PORTABLE_TASK_CODECS`), or None.
        self.task_codec = task_codec
        self.task = task_codec.task if task_codec is not None else TEXT_CLASSIFICATION
        self._tokenizer = tokenizer
        if tokenizer is None:
            return
        tokenizer.enable_truncation(self.max_length, strategy="longest_first",
                                    direction="right")
        tokenizer.enable_padding(direction="right", pad_id=int(pad_token_id), pad_type_id=0,
                                 pad_token=pad_token,
                                 length=self.max_length if self.pad_to_max_length else None)

    @classmethod
    def from_path(cls, path: str | Path, *, pad_to_max_length: bool = False) -> "ClientTokenizer":
        """Reads the tokenizer of an export.

        Args:
            path: A model base path (its highest version is used), a version directory, or a
                version's `assets.extra` directory: where `export_config.json` (with
                `max_length` and `text_pair`) and `tokenizer/tokenizer.json` are.
            pad_to_max_length: See the class.

        Raises:
            ValueError: The files are missing or invalid (the message names them).
        """
        from tokenizers import Tokenizer

        assets = _assets_directory(Path(path))
        config = _read_json(assets / EXPORT_CONFIG_FILE)
        max_length = config.get("max_length")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(
                f"Invalid max_length in {assets / EXPORT_CONFIG_FILE}. Expected an integer of "
                f"at least 2. Received: max_length={max_length!r}")
        task = config.get("task") or TEXT_CLASSIFICATION
        if task != TEXT_CLASSIFICATION:
            codec = _task_codec_class(task, assets).from_export(
                assets, config, pad_to_max_length=pad_to_max_length)
            return cls(None, max_length=max_length, text_pair=bool(config.get("text_pair")),
                       pad_token=None, pad_token_id=None, source=str(assets),
                       pad_to_max_length=pad_to_max_length, task_codec=codec)
        tokenizer_dir = assets / TOKENIZER_DIR
        tokenizer_file = tokenizer_dir / TOKENIZER_FILE
        if not tokenizer_file.is_file():
            found = (sorted(p.name for p in tokenizer_dir.iterdir()) if tokenizer_dir.is_dir()
                     else "no tokenizer directory")
            raise ValueError(
                f"No {TOKENIZER_FILE} in the export. Expected {tokenizer_file} (written by "
                f"`tfinetune export --portable`). Received: {found}")
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as error:  # noqa: BLE001  (the Rust library raises plain Exceptions)
            raise ValueError(f"Cannot read {tokenizer_file}. Expected a Hugging Face "
                             f"tokenizer.json. Received: {error}") from None
        pad_token = _pad_token(tokenizer_dir)
        pad_token_id = tokenizer.token_to_id(pad_token) if pad_token is not None else None
        if pad_token_id is None:
            raise ValueError(
                f"No padding token for {tokenizer_file}. Expected pad_token in "
                f"{tokenizer_dir / _SPECIAL_TOKEN_FILES[0]} naming a token of the vocabulary. "
                f"Received: pad_token={pad_token!r}")
        return cls(tokenizer, max_length=max_length, text_pair=bool(config.get("text_pair")),
                   pad_token=pad_token, pad_token_id=pad_token_id, source=str(assets),
                   pad_to_max_length=pad_to_max_length)

    def encode(self, texts: Sequence[str],
               text_pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Token ids of a batch: `input_ids`, `attention_mask`, `token_type_ids`, int32
        [len(texts), longest] (`max_length` with `pad_to_max_length`).

        Raises:
            ValueError: `text_pairs` is given to a single-text model or missing for a pair
                model, or does not have one entry per text.
        """
        if self.task_codec is not None:  # e.g. NER: several windows per text
            return self.task_codec.encode(texts, text_pairs)
        if text_pairs is None and self.text_pair:
            raise ValueError(
                f"The model classifies text pairs. Expected text_pairs (one per text). "
                f"Received: none (tokenizer of {self.source})")
        if text_pairs is not None and not self.text_pair:
            raise ValueError(
                f"The model classifies single texts. Expected no text_pairs. Received: "
                f"{len(text_pairs)} (tokenizer of {self.source})")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"text_pairs must have one entry per text. Expected {len(texts)}. "
                             f"Received: {len(text_pairs)}")
        batch = list(zip(texts, text_pairs)) if text_pairs is not None else list(texts)
        encodings = self._tokenizer.encode_batch(batch, add_special_tokens=True)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int32),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int32),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int32),
        }

    def fill_request(self, request: Any, texts: Sequence[str],
                     text_pairs: Sequence[str] | None = None) -> Callable[..., list] | None:
        """Sets the token id inputs of a `PredictRequest` for `texts` (and `text_pairs`).

        Returns:
            None for a text classifier (the client reads its outputs itself); for another
            task's export, the function that turns the response's outputs (alias -> array)
            into one `Prediction` per text.
        """
        from serving import tensor_codec

        if self.task_codec is not None:
            return self.task_codec.fill_request(request, texts, text_pairs)

        for name, values in self.encode(texts, text_pairs).items():
            request.inputs[name].CopyFrom(tensor_codec.to_tensor_proto(values,
                                                                       as_tensor_content=True))


def _task_codec_class(task: str, assets: Path) -> Any:
    spec = PORTABLE_TASK_CODECS.get(task)
    if spec is None:
        raise ValueError(
            f"No client-side tokenisation for {task!r} exports. Expected an export of one of "
            f"{[TEXT_CLASSIFICATION, *PORTABLE_TASK_CODECS]}. Received: task={task!r} in "
            f"{assets / EXPORT_CONFIG_FILE}")
    module_name, class_name = spec.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _assets_directory(path: Path) -> Path:
    if (path / EXPORT_CONFIG_FILE).is_file():
        return path
    if (path / ASSETS_EXTRA / EXPORT_CONFIG_FILE).is_file():
        return path / ASSETS_EXTRA
    versions = sorted((int(child.name), child) for child in path.iterdir()
                      if _VERSION.fullmatch(child.name) and child.is_dir()) if path.is_dir() else []
    if versions:
        assets = versions[-1][1] / ASSETS_EXTRA
        if (assets / EXPORT_CONFIG_FILE).is_file():
            return assets
    raise ValueError(
        f"No exported model's tokenizer at {path}. Expected a model base path (its highest "
        f"version is used), a version directory or its {ASSETS_EXTRA} directory, with "
        f"{ASSETS_EXTRA}/{EXPORT_CONFIG_FILE} and {ASSETS_EXTRA}/{TOKENIZER_DIR}/"
        f"{TOKENIZER_FILE} (written by `tfinetune export --portable`). Received: "
        f"{'a directory without them' if path.is_dir() else 'no such directory'}")


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read {path}. Expected a JSON object. Received: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(f"Invalid {path}. Expected a JSON object. Received: "
                         f"{type(content).__name__}")
    return content


def _pad_token(tokenizer_dir: Path) -> str | None:
    """`pad_token` from tokenizer_config.json (or special_tokens_map.json); either a string or
    an added-token object with `content`."""
    for name in _SPECIAL_TOKEN_FILES:
        path = tokenizer_dir / name
        if not path.is_file():
            continue
        token = _read_json(path).get("pad_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            return token
    return None
