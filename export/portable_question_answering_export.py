"""`PortableQuestionAnsweringExport`: `tfinetune export --portable` of a question-answering run:
a SavedModel of core TensorFlow ops (token id windows in, start/end logits out); clients cut the
windows and choose the answers (`serving.portable_question_answering_codec`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from export.errors import ExportError  # noqa: E402
from export.errors import ParityError  # noqa: E402
from export.errors import UnsupportedTokenizerError  # noqa: E402
from export.portable_question_answering_module import OUTPUTS  # noqa: E402
from export.portable_question_answering_module import SERVING_DEFAULT  # noqa: E402
from export.portable_question_answering_module import TOKEN_INPUTS  # noqa: E402
from export.portable_question_answering_module import PortableQuestionAnsweringModule  # noqa: E402,E501
from export.question_answering_export import TOLERANCE  # noqa: E402
from export.question_answering_export import WARMUP_PAIRS  # noqa: E402
from export.question_answering_export import QuestionAnsweringExport  # noqa: E402
from export.question_answering_export import _hf_windows  # noqa: E402
from export.question_answering_export import load_model  # noqa: E402
from export.question_answering_export import _parity_pairs  # noqa: E402
from export.run_directory import RunDirectory  # noqa: E402
from export.task_export import TaskExport  # noqa: E402
from export.warmup_requests import WARMUP_REQUESTS_FILE  # noqa: E402
from export.warmup_requests import predict_log  # noqa: E402
from export.warmup_requests import write_logs  # noqa: E402

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
CLIENT_TOKENIZER_FILE = "tokenizer/tokenizer.json"


class PortableQuestionAnsweringExport(TaskExport):
    """The portable export of an extractive question-answering run (see
    `PortableQuestionAnsweringModule` for the signatures).

    `assets.extra/` gets the tokenizer files (`tokenizer/tokenizer.json` for clients) and
    `tf_serving_warmup_requests` (token id Predict requests, cut as clients cut them);
    `export_config.json` gets `"portable": true`, `doc_stride`, `max_answer_length`,
    `version_2_with_negative`, the padding token's id and what the text export records.

    The check after saving cuts the parity pairs into windows with the code clients run
    (`serving.portable_question_answering_codec`, reading the written files) and requires the
    Hugging Face tokenizer's windows exactly, the in-memory model's logits within 1e-4 and its
    answers (the text export's span rule) exactly, scores within 1e-4.

    Unlike the text export, any fast tokenizer works (the windows use its own pair template).

    Args:
        run: The run directory (task `question-answering`).
        max_length: Tokens per window (default: the run's `max_length`).
        parity_texts: `(question, context)` pairs or plain contexts for the parity check
            (default: the text export's `default_parity_pairs`).

    Raises:
        RunDirError: The model cannot be loaded or the options do not fit.
        UnsupportedTokenizerError: The tokenizer has no `tokenizer.json` (not fast), no padding
            token, or pads or truncates on the left.
    """

    def __init__(self, run: RunDirectory, *, max_length: int | None = None,
                 parity_texts: Any = None) -> None:
        super().__init__(run, max_length=max_length, parity_texts=parity_texts)
        from export.portable_export import _check_tokenizer

        self.tokenizer = run.load_tokenizer()
        _check_tokenizer(self.tokenizer, run)
        self.model = load_model(run)
        self._max_length = QuestionAnsweringExport._resolve_max_length(self, max_length)
        QuestionAnsweringExport._read_span_options(self)
        special = self.tokenizer.num_special_tokens_to_add(pair=True)
        if not 0 < self.doc_stride < self._max_length - special - 1:
            raise ExportError(
                f"doc_stride must be smaller than max_length - {special + 1} (room for the "
                f"question and new context tokens). Expected a max_length above "
                f"{self.doc_stride + special + 1}. Received: max_length={self._max_length}, "
                f"doc_stride={self.doc_stride} (fit_config.yaml)")
        self.pairs = _parity_pairs(parity_texts, self._max_length)
        self.module = PortableQuestionAnsweringModule(self.model)

    def write_assets(self, assets_extra: Path) -> dict[str, Any]:
        directory = assets_extra / TOKENIZER_DIR
        self.tokenizer.save_pretrained(str(directory))
        if not (assets_extra / CLIENT_TOKENIZER_FILE).is_file():
            raise UnsupportedTokenizerError(
                f"The tokenizer's save_pretrained wrote no tokenizer.json. Expected "
                f"{assets_extra / CLIENT_TOKENIZER_FILE} for clients to tokenise with. "
                f"Received: {sorted(p.name for p in directory.iterdir())} "
                f"({type(self.tokenizer).__name__})")
        config = self.run.fit_config
        extra = {
            "portable": True,
            "doc_stride": self.doc_stride,
            "max_answer_length": self.max_answer_length,
            "version_2_with_negative": self.version_2_with_negative,
            "question_column": config.get("question_column", "question"),
            "context_column": config.get("context_column", "context"),
            "inputs": list(TOKEN_INPUTS),
            "outputs": list(OUTPUTS),
            "client_tokenizer": CLIENT_TOKENIZER_FILE,
            "special_token_ids": {"pad": int(self.tokenizer.pad_token_id)},
            "tokenizer": type(self.tokenizer).__name__,
        }
        self._write_warmup_requests(assets_extra, extra)
        return extra

    def _write_warmup_requests(self, assets_extra: Path, config: dict[str, Any]) -> Path:
        """Predict requests on `serving_default` with the windows of one, two and all warm-up
        pairs (the last context spans several windows), cut as clients cut them."""
        codec = _client_codec(assets_extra, {**config, "max_length": self._max_length})
        pairs = [*WARMUP_PAIRS, ("Where is Paris?", " ".join(
            ["The river is long and the city of Paris is in France."]
            * (self._max_length // 6 + 2)))]
        logs = []
        for size in (1, 2, len(pairs)):
            inputs = codec.encode([q for q, _ in pairs[:size]], [c for _, c in pairs[:size]])
            logs.append(predict_log({name: inputs[name] for name in TOKEN_INPUTS}))
        return write_logs(assets_extra / WARMUP_REQUESTS_FILE, logs)

    def check_parity(self, export_dir: Path) -> float:
        """Checks the written export as a client uses it (see the class). Returns the largest
        |difference| of logits and scores."""
        from export.exporter import ASSETS_EXTRA
        from export.exporter import EXPORT_CONFIG_FILE

        assets = export_dir / ASSETS_EXTRA
        config = json.loads((assets / EXPORT_CONFIG_FILE).read_text(encoding="utf-8"))
        codec = _client_codec(assets, config)
        questions = [question for question, _ in self.pairs]
        contexts = [context for _, context in self.pairs]
        windows = codec.windows.windows(questions, contexts)
        reference = _hf_windows(self.tokenizer, questions, contexts, self._max_length,
                                self.doc_stride)
        _compare_windows(windows, reference, assets / CLIENT_TOKENIZER_FILE)

        inputs = {name: tf.constant(value) for name, value in windows.inputs().items()}
        model_inputs = {name: inputs[name] for name in TOKEN_INPUTS if name in reference}
        expected = self.model(**model_inputs, training=False)
        loaded = tf.saved_model.load(str(export_dir))
        served = {name: value.numpy() for name, value in
                  loaded.signatures[SERVING_DEFAULT](**inputs).items()}
        mask = windows.attention_mask.astype(bool)
        difference = 0.0
        for name in OUTPUTS:
            want = getattr(expected, name).numpy()
            difference = max(difference, float(np.max(np.abs(served[name] - want)[mask],
                                                      initial=0.0)))
        if difference > TOLERANCE:
            raise ParityError(
                f"The portable SavedModel's logits differ from the in-memory model's. Expected "
                f"|difference| <= {TOLERANCE}. Received: {difference:.3g} on the parity pairs")

        want_answers = QuestionAnsweringExport._in_memory_answers(self, contexts, reference,
                                                                  expected, mask)
        got_answers = codec.predictions(served, windows, contexts)
        for i, ((text, start, end, score), got) in enumerate(zip(want_answers, got_answers)):
            if (got.answer, got.start, got.end) != (text, start, end):
                raise ParityError(
                    f"Clients of the portable export would answer differently from the "
                    f"in-memory model. Expected {(text, start, end)!r}. Received: "
                    f"{(got.answer, got.start, got.end)!r} for question {questions[i]!r} and "
                    f"context {contexts[i][:60]!r}")
            difference = max(difference, abs(got.score - score))
        if difference > TOLERANCE:
            raise ParityError(
                f"Clients of the portable export would score answers differently from the "
                f"in-memory model. Expected |difference| <= {TOLERANCE}. Received: "
                f"{difference:.3g}")
        logger.info("Portable parity check passed on %d pairs (%d windows); max |difference| "
                    "%.3g", len(self.pairs), len(windows), difference)
        return difference


def _client_codec(assets: Path, config: dict[str, Any]):
    """The client's codec, read from the written files as a client reads them."""
    from serving.portable_question_answering_codec import PortableQuestionAnsweringCodec

    try:
        return PortableQuestionAnsweringCodec.from_export(assets, config)
    except ValueError as error:
        raise UnsupportedTokenizerError(
            f"Clients could not cut windows with the exported tokenizer: {error}") from None


def _compare_windows(windows: Any, reference: dict[str, Any], tokenizer_file: Path) -> None:
    """The client's windows must be the Hugging Face tokenizer's (training's) exactly."""
    if windows.example.tolist() != reference["example"].tolist():
        raise ParityError(
            f"Clients would split the contexts into other windows than the run's tokenizer. "
            f"Expected windows of pairs {reference['example'].tolist()}. Received: "
            f"{windows.example.tolist()} ({tokenizer_file})")
    got = windows.inputs()
    for name in TOKEN_INPUTS:
        if name not in reference:
            continue
        want = reference[name]
        if got[name].shape != want.shape or not np.array_equal(got[name], want):
            row = next((i for i in range(len(want)) if i >= len(got[name]) or
                        got[name][i].tolist() != want[i].tolist()), len(want) - 1)
            raise ParityError(
                f"Clients would tokenise differently from the run's tokenizer. Expected "
                f"{name} of window {row}: {want[row].tolist()}. Received: "
                f"{got[name][row].tolist() if row < len(got[name]) else None} from "
                f"{tokenizer_file}")
    for row, offsets in enumerate(reference["offsets"]):
        received = [(int(a), int(b)) if a >= 0 else None for a, b in
                    zip(windows.offset_start[row][:len(offsets)],
                        windows.offset_end[row][:len(offsets)])]
        if received != offsets:
            raise ParityError(
                f"Clients would compute other character offsets than the run's tokenizer. "
                f"Expected {offsets}. Received: {received} (window {row}, {tokenizer_file})")
