"""`Seq2SeqExport`: a `fit --task seq2seq` run → a SavedModel whose `serving_default` takes
`text` and returns the generated `generated_text` (tokenizer, generation and detokenizer all
in the graph)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from export.errors import ExportError  # noqa: E402
from export.errors import ParityError  # noqa: E402
from export.errors import RunDirError  # noqa: E402
from export.run_directory import RunDirectory  # noqa: E402
from export.seq2seq_serving_module import GENERATED_IDS  # noqa: E402
from export.seq2seq_serving_module import GENERATED_TEXT  # noqa: E402
from export.seq2seq_serving_module import SERVING_DEFAULT  # noqa: E402
from export.seq2seq_serving_module import TEXT  # noqa: E402
from export.seq2seq_serving_module import Seq2SeqServingModule  # noqa: E402
from export.task_export import TaskExport  # noqa: E402

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
WARMUP_REQUESTS_FILE = "tf_serving_warmup_requests"
#: Fixed parity inputs (before `source_prefix`); `default_parity_texts` adds an overlong one.
PARITY_TEXTS = ("one two three four", "the quick brown fox", "red blue", "", "naïve café",
                "  spaces\tand\nnewlines  ", "Hello, World!")
WARMUP_TEXTS = ("one two three", "hello world", "")


def default_parity_texts(max_length: int) -> list[str]:
    """`PARITY_TEXTS` plus one text longer than `max_length` tokens."""
    return [*PARITY_TEXTS, " ".join(["green house"] * (max_length // 2 + 1))]


class Seq2SeqExport(TaskExport):
    """The export of a seq2seq run (T5-style models with a ByT5 byte tokenizer or a
    SentencePiece tokenizer; see `Seq2SeqServingModule`).

    Generation uses the run's `num_beams` (greedy for 1, beam search otherwise) and
    `max_target_length` (new tokens at most), and puts the run's `source_prefix` before every
    text. `export_config.json` records them (`source_prefix`, `max_target_length`,
    `num_beams`, `tokenizer`).

    Args:
        run: The run directory (`task: seq2seq`).
        max_length: Source tokens (default: the run's `max_length`); inputs are padded to it.
        parity_texts: Source texts (without the prefix) for the parity check; default:
            `default_parity_texts(max_length)`.

    Raises:
        RunDirError: the model cannot be loaded as a TF seq2seq model.
        UnsupportedTokenizerError: the tokenizer cannot be embedded in the graph.
        ExportError: invalid `max_length`.
    """

    def __init__(self, run: RunDirectory, *, max_length: int | None = None,
                 parity_texts: Any = None) -> None:
        super().__init__(run, max_length=max_length, parity_texts=parity_texts)
        from transformers import TFAutoModelForSeq2SeqLM

        config = run.fit_config
        self.source_prefix = str(config.get("source_prefix") or "")
        self.max_new_tokens = int(config.get("max_target_length", 128))
        self.num_beams = int(config.get("num_beams", 1))
        length = run.max_length if max_length is None else max_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise ExportError(
                "Invalid max_length. Expected an integer of at least 2 (one source token and "
                f"eos). Received: max_length={length!r}")
        self._max_length = length
        self.tokenizer = run.load_tokenizer()
        self._check_tokenizer()
        try:
            self.model = TFAutoModelForSeq2SeqLM.from_pretrained(run.path)
        except (OSError, ValueError, KeyError) as error:
            raise RunDirError(
                "Cannot load the fine-tuned model. Expected a TF sequence-to-sequence model "
                "saved with `save_pretrained` in the run directory (written by `tfinetune fit "
                f"--task seq2seq`). Received: run_dir='{run.path}', error: {error}") from error
        self.module = self._build_module()
        self.parity_texts = (list(parity_texts) if parity_texts is not None
                             else default_parity_texts(length))

    def _check_tokenizer(self) -> None:
        """Raises `UnsupportedTokenizerError` before the model is loaded if this export cannot
        use `self.tokenizer` (here: nothing; `_build_module` embeds it or raises)."""

    def _build_module(self) -> tf.Module:
        """The `tf.Module` to save, built once the model and tokenizer are loaded (sets
        `graph_tokenizer` and `tokenizer_kind`)."""
        self.graph_tokenizer, self.tokenizer_kind = _graph_tokenizer(
            self.tokenizer, self._max_length, self.run.path)
        return Seq2SeqServingModule(
            self.model, self.graph_tokenizer, source_prefix=self.source_prefix,
            max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)

    def write_assets(self, assets_extra: Path) -> dict[str, Any]:
        self.tokenizer.save_pretrained(assets_extra / TOKENIZER_DIR)
        write_warmup_requests(assets_extra, WARMUP_TEXTS)
        return {"source_prefix": self.source_prefix,
                "max_target_length": self.max_new_tokens,
                "num_beams": self.num_beams,
                "generation": "greedy" if self.num_beams == 1 else "beam search",
                "tokenizer": self.tokenizer_kind}

    def check_parity(self, export_dir: Path) -> float:
        """Compares the reloaded SavedModel with the in-memory model on `parity_texts`:
        `tokenize` ids exactly with the Hugging Face tokenizer's (padded to `max_length`),
        `generated_ids` exactly with `model.generate` (same `num_beams`, `max_new_tokens`),
        and `generated_text` exactly with `tokenizer.batch_decode(skip_special_tokens=True)`.

        Returns:
            0.0 (every comparison is exact).

        Raises:
            ParityError: naming the first text that differs, the expected and received value.
        """
        texts = self.parity_texts
        expected_ids, expected_texts, encoded = self.reference(texts)
        loaded = tf.saved_model.load(str(export_dir))
        tokenized = loaded.tokenize(tf.constant(texts))
        for key in ("input_ids", "attention_mask"):
            received = tokenized[key].numpy()
            for i, text in enumerate(texts):
                if not np.array_equal(received[i], encoded[key][i]):
                    raise ParityError(
                        f"The exported tokenizer disagrees with the Hugging Face tokenizer. "
                        f"Expected {key}={list(encoded[key][i])} for text {text!r}. Received: "
                        f"{list(received[i])}")
        outputs = loaded.signatures[SERVING_DEFAULT](**{TEXT: tf.constant(texts)})
        received_ids = outputs[GENERATED_IDS].numpy()
        received_texts = [value.decode("utf-8") for value in outputs[GENERATED_TEXT].numpy()]
        for i, text in enumerate(texts):
            self._check_generated_ids(text, expected_ids[i], received_ids[i])
            if received_texts[i] != expected_texts[i]:
                raise ParityError(
                    "The exported detokenizer disagrees with the Hugging Face tokenizer's "
                    f"batch_decode. Expected generated_text={expected_texts[i]!r} for text "
                    f"{text!r}. Received: {received_texts[i]!r}")
        logger.info("Parity: %d texts generate the same ids and text", len(texts))
        return 0.0

    def _check_generated_ids(self, text: str, expected_ids: Sequence[int],
                             received: np.ndarray) -> None:
        """Raises ParityError unless `received` (a row of the SavedModel's `generated_ids`) is
        the in-memory model's `expected_ids` padded with the pad id to its width."""
        pad = self.model.config.pad_token_id or 0
        expected = list(expected_ids)
        expected += [pad] * (len(received) - len(expected))
        if list(received) != expected:
            raise ParityError(
                "The exported generation disagrees with the in-memory model's `generate`. "
                f"Expected generated_ids={expected} for text {text!r}. Received: "
                f"{list(received)}")

    def reference(self, texts: Sequence[str]) -> tuple[list[list[int]], list[str], dict]:
        """`(generated ids, generated texts, encoding)` of the in-memory model and Hugging Face
        tokenizer for `texts` (the encoding padded to `max_length`)."""
        sources = [self.source_prefix + text for text in texts]
        encoded = self.tokenizer(sources, padding="max_length", truncation=True,
                                 max_length=self.max_length, return_tensors="np")
        sequences = self.model.generate(
            input_ids=tf.constant(encoded["input_ids"], tf.int32),
            attention_mask=tf.constant(encoded["attention_mask"], tf.int32),
            max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
            do_sample=False).numpy()
        pad = self.model.config.pad_token_id or 0
        ids = [_strip_padding(list(row), pad) for row in sequences]
        return ids, self.tokenizer.batch_decode(sequences, skip_special_tokens=True), encoded


def _strip_padding(row: list[int], pad: int) -> list[int]:
    """The row without trailing padding (the first token, the decoder start, is kept)."""
    end = len(row)
    while end > 1 and row[end - 1] == pad:
        end -= 1
    return [int(token) for token in row[:end]]


def _graph_tokenizer(tokenizer: Any, max_length: int, run_path: Path) -> tuple[tf.Module, str]:
    if type(tokenizer).__name__ == "ByT5Tokenizer":
        from export.byte_tokenizer import ByteTokenizer

        return ByteTokenizer.from_hf_tokenizer(tokenizer, max_length=max_length), "byt5"
    from export.sentencepiece_tokenizer import SentencePieceTokenizer

    return (SentencePieceTokenizer.from_hf_tokenizer(tokenizer, max_length=max_length,
                                                     run_path=run_path), "sentencepiece")


def write_warmup_requests(assets_extra: Path, texts: Sequence[str]) -> Path:
    """`assets_extra/tf_serving_warmup_requests`: Predict requests on `serving_default` with
    batches of one, two and all `texts` (TF Serving replays them before serving, which also
    compiles the XLA generation)."""
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(assets_extra) / WARMUP_REQUESTS_FILE
    texts = list(texts)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for size in (1, 2, len(texts)):
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = SERVING_DEFAULT
            request.inputs[TEXT].CopyFrom(tf.make_tensor_proto(texts[:size], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path
