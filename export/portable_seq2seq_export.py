"""`PortableSeq2SeqExport`: `export --portable` of a seq2seq run, a SavedModel of core TensorFlow
ops whose clients tokenise and detokenise themselves.

Signature (`PortableSeq2SeqServingModule`): `serving_default(input_ids, attention_mask)` (int32
[-1, max_length], padded on the right to exactly `max_length`) → `generated_ids` (int32 [-1,
max_new_tokens + 1]): the default export's XLA-compiled generation (same `num_beams`,
`max_target_length`) without the in-graph SentencePiece or byte tokenizer.

The client (`serving.client_tokenizer.ClientTokenizer.from_path(...)`, which hands seq2seq
exports to `serving.portable_seq2seq_codec`) puts the run's `source_prefix` before each text,
tokenises with `assets.extra/tokenizer/tokenizer.json` (or, for ByT5, which has none, with a
byte tokenizer: `client_tokenizer: "byt5"`) and decodes the generated ids like
`batch_decode(..., skip_special_tokens=True)`: the same `generated_text` as the default export.

`assets.extra/export_config.json` has the default seq2seq export's fields plus `"portable":
true`, `inputs`, `client_tokenizer`, `pad_token_id` and `decode`
(`clean_up_tokenization_spaces`). Tokenizers with neither a `tokenizer.json` nor ByT5's byte
scheme (slow-only ones, e.g. Marian's two SentencePiece models) are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from export._not_tracked import NotTracked  # noqa: E402
from export.errors import ParityError  # noqa: E402
from export.errors import UnsupportedTokenizerError  # noqa: E402
from export.portable_export import CLIENT_TOKENIZER_FILE  # noqa: E402
from export.run_directory import RunDirectory  # noqa: E402
from export.seq2seq_export import WARMUP_REQUESTS_FILE  # noqa: E402
from export.seq2seq_export import WARMUP_TEXTS  # noqa: E402
from export.seq2seq_export import Seq2SeqExport  # noqa: E402
from export.seq2seq_serving_module import GENERATED_IDS  # noqa: E402
from export.seq2seq_serving_module import SERVING_DEFAULT  # noqa: E402
from export.seq2seq_serving_module import Seq2SeqServingModule  # noqa: E402

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
INPUTS = ("input_ids", "attention_mask")
BYT5 = "byt5"


class PortableSeq2SeqServingModule(tf.Module):
    """A fine-tuned encoder-decoder model with generation in the graph and no tokenizer:
    `serving_default(input_ids, attention_mask)` → `generated_ids`.

    Each row is generated on its own by `model.generate` compiled with XLA for `[1,
    max_length]` (as in `Seq2SeqServingModule`, whose generation step this reuses).

    Args:
        model: The `TFAutoModelForSeq2SeqLM`.
        max_length: Source tokens per row (the inputs' fixed width).
        max_new_tokens: Tokens generated at most.
        num_beams: 1 for greedy search, more for beam search.
    """

    _generate = Seq2SeqServingModule._generate

    def __init__(self, model: Any, *, max_length: int, max_new_tokens: int,
                 num_beams: int) -> None:
        super().__init__(name="portable_seq2seq_serving_module")
        self._model = NotTracked(model)
        self.model_variables = list(model.variables)
        self.max_length = int(max_length)
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)
        self.pad_token_id = int(model.config.pad_token_id or 0)
        self.signature_names = (SERVING_DEFAULT,)
        length = self.max_length
        self._generate_one = tf.function(
            self._generate, jit_compile=True,
            input_signature=[tf.TensorSpec([1, length], tf.int32),
                             tf.TensorSpec([1, length], tf.int32)])
        self.serving_default = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, length], tf.int32, name=name)
                                          for name in INPUTS])

    def signatures(self) -> dict[str, Any]:
        """The concrete functions to pass to `tf.saved_model.save(..., signatures=...)`."""
        return {SERVING_DEFAULT: self.serving_default.get_concrete_function()}

    def _serve(self, input_ids, attention_mask):
        width = self.max_new_tokens + 1
        generated = tf.map_fn(
            lambda row: self._generate_one(row[0][None], row[1][None])[0],
            (input_ids, attention_mask), fn_output_signature=tf.TensorSpec([width], tf.int32))
        return {GENERATED_IDS: generated}


class PortableSeq2SeqExport(Seq2SeqExport):
    """Builds the portable seq2seq SavedModel of a run (see the module docstring): the default
    export's options, `max_length` check, model loading and `reference` (the in-memory model's
    generations), with a tokenizer check of its own (`_check_tokenizer`, which sets
    `client_tokenizer`), the token-id module, assets and parity check.

    Raises:
        RunDirError: the model cannot be loaded as a TF seq2seq model.
        UnsupportedTokenizerError: the tokenizer has no `tokenizer.json` and is not ByT5's.
        ExportError: invalid `max_length`.
    """

    def _check_tokenizer(self) -> None:
        self.client_tokenizer = _client_tokenizer(self.tokenizer, self.run)

    def _build_module(self) -> tf.Module:
        return PortableSeq2SeqServingModule(
            self.model, max_length=self._max_length, max_new_tokens=self.max_new_tokens,
            num_beams=self.num_beams)

    def write_assets(self, assets_extra: Path) -> dict[str, Any]:
        self.tokenizer.save_pretrained(assets_extra / TOKENIZER_DIR)
        if self.client_tokenizer != BYT5 and not (assets_extra / CLIENT_TOKENIZER_FILE).is_file():
            raise UnsupportedTokenizerError(
                f"The tokenizer's save_pretrained wrote no tokenizer.json. Expected "
                f"{assets_extra / CLIENT_TOKENIZER_FILE} for clients to tokenise with. "
                f"Received: {sorted(p.name for p in (assets_extra / TOKENIZER_DIR).iterdir())}")
        config = {"source_prefix": self.source_prefix,
                  "max_target_length": self.max_new_tokens,
                  "num_beams": self.num_beams,
                  "generation": "greedy" if self.num_beams == 1 else "beam search",
                  "tokenizer": type(self.tokenizer).__name__,
                  "portable": True, "inputs": list(INPUTS), "outputs": [GENERATED_IDS],
                  "client_tokenizer": self.client_tokenizer,
                  "pad_token_id": int(self.tokenizer.pad_token_id or 0),
                  "decode": {"skip_special_tokens": True,
                             "clean_up_tokenization_spaces": bool(getattr(
                                 self.tokenizer, "clean_up_tokenization_spaces", False))}}
        self._write_warmup_requests(assets_extra, config)
        return config

    def check_parity(self, export_dir: Path) -> float:
        """Runs the client's code (`ClientTokenizer.from_path(export_dir)`, see
        `serving.client_tokenizer`) on `parity_texts` and compares: its ids with the Hugging
        Face tokenizer's (`source_prefix` + text, padded to `max_length`), the SavedModel's
        `generated_ids` on them with the in-memory model's `generate`, and the client's
        decoding of them with
        `tokenizer.batch_decode(skip_special_tokens=True)`, all exactly.

        Returns:
            0.0 (every comparison is exact).

        Raises:
            ParityError: naming the first text that differs, the expected and received value.
        """
        from serving.client_tokenizer import ClientTokenizer

        texts = self.parity_texts
        codec = ClientTokenizer.from_path(export_dir).task_codec
        expected_ids, expected_texts, encoded = self.reference(texts)
        inputs = codec.encode(texts)
        for key in INPUTS:
            for i, text in enumerate(texts):
                if not np.array_equal(inputs[key][i], encoded[key][i]):
                    raise ParityError(
                        f"The client tokenises differently from the run's "
                        f"{type(self.tokenizer).__name__}. Expected {key}="
                        f"{list(encoded[key][i])} for text {text!r}. Received: "
                        f"{list(inputs[key][i])} (client tokenizer {self.client_tokenizer})")
        loaded = tf.saved_model.load(str(export_dir))
        received_ids = loaded.signatures[SERVING_DEFAULT](
            **{key: tf.constant(inputs[key]) for key in INPUTS})[GENERATED_IDS].numpy()
        for i, text in enumerate(texts):
            self._check_generated_ids(text, expected_ids[i], received_ids[i])
        received_texts = codec.decode(received_ids)
        for i, text in enumerate(texts):
            if received_texts[i] != expected_texts[i]:
                raise ParityError(
                    "The client decodes differently from the Hugging Face tokenizer's "
                    f"batch_decode. Expected generated_text={expected_texts[i]!r} for text "
                    f"{text!r}. Received: {received_texts[i]!r}")
        logger.info("Portable parity: %d texts tokenise, generate and decode the same",
                    len(texts))
        return 0.0

    def _write_warmup_requests(self, assets_extra: Path, config: dict) -> Path:
        """Predict requests on `serving_default` with the client's ids of one, two and all
        `WARMUP_TEXTS` (replaying them also compiles the XLA generation)."""
        from serving.portable_seq2seq_codec import PortableSeq2SeqCodec

        from export.warmup_requests import predict_log
        from export.warmup_requests import write_logs

        codec = PortableSeq2SeqCodec.from_export(assets_extra,
                                                 {**config, "max_length": self._max_length})
        logs = []
        for size in (1, 2, len(WARMUP_TEXTS)):
            logs.append(predict_log(codec.encode(list(WARMUP_TEXTS[:size]))))
        return write_logs(assets_extra / WARMUP_REQUESTS_FILE, logs)


def _client_tokenizer(tokenizer: Any, run: RunDirectory) -> str:
    """`client_tokenizer` of export_config.json: the tokenizer.json path or "byt5".

    Raises:
        UnsupportedTokenizerError: neither is possible.
    """
    name = type(tokenizer).__name__
    if name == "ByT5Tokenizer":
        if (tokenizer.pad_token_id, tokenizer.eos_token_id) != (0, 1):
            raise UnsupportedTokenizerError(
                f"A portable ByT5 export expects ByT5's ids (pad 0, eos 1, bytes from 3), which "
                f"the client's byte tokenizer uses. Received: {name} with pad "
                f"{tokenizer.pad_token_id}, eos {tokenizer.eos_token_id} in {run.path}")
        return BYT5
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedTokenizerError(
            f"A portable export needs a tokenizer clients can run without transformers. "
            f"Expected a fast tokenizer (its tokenizer.json, read by the `tokenizers` library) "
            f"or ByT5's byte tokenizer. Received: {name} in {run.path} (slow only: no "
            f"tokenizer.json and no conversion); export it without --portable if the default "
            f"export supports it")
    return CLIENT_TOKENIZER_FILE
