"""`QuestionAnsweringExport`: a `tfinetune fit --task question-answering` run → a SavedModel
whose `serving_default` takes a question and a context and returns the answer span."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

from export.errors import ExportError  # noqa: E402
from export.errors import ParityError  # noqa: E402
from export.errors import RunDirError  # noqa: E402
from export.in_graph_tokenizer import InGraphTokenizer  # noqa: E402
from export.question_answering_serving_module import CONTEXT  # noqa: E402
from export.question_answering_serving_module import OUTPUTS  # noqa: E402
from export.question_answering_serving_module import QUESTION  # noqa: E402
from export.question_answering_serving_module import SERVING_DEFAULT  # noqa: E402
from export.question_answering_serving_module import TOKEN_INPUTS  # noqa: E402
from export.question_answering_serving_module import QuestionAnsweringServingModule  # noqa: E402
from export.run_directory import RunDirectory  # noqa: E402
from export.task_export import TaskExport  # noqa: E402
from export.warmup_requests import WARMUP_REQUESTS_FILE  # noqa: E402

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4
TOKENIZER_DIR = "tokenizer"
#: Questions of the default parity pairs (and of parity texts given as plain contexts).
PARITY_QUESTIONS = ("Where is the café?", "WHO wrote the book", "what is it ?", "")
#: Contexts of the default parity pairs; `default_parity_pairs` adds ones longer than a window.
PARITY_CONTEXTS = (
    "The café is in Zürich, near the old bridge.",
    "The book was written by a naïve author in 1999; it is long.",
    "ok",
    "",
    "  Spaces, tabs\tand\nnewlines  ",
    "北京 is a city. Straße, ǅ and ﬁ ligatures!",
    "An " + "overlong" * 14 + " word (over 100 bytes) and e\u0301cole 😀 İstanbul.",
)


def default_parity_pairs(max_length: int) -> list[tuple[str, str]]:
    """Fixed (question, context) pairs: short, empty, accented, CJK and contexts several
    windows long."""
    long_context = " ".join(["The river is long and the city of Paris is in France."]
                            * (max_length // 6 + 2))
    contexts = [*PARITY_CONTEXTS, long_context, long_context.upper() + " Ünïcödé ending."]
    return [(PARITY_QUESTIONS[i % len(PARITY_QUESTIONS)], context)
            for i, context in enumerate(contexts)]


class QuestionAnsweringExport(TaskExport):
    """The export of an extractive question-answering run (see
    `QuestionAnsweringServingModule` for the signatures).

    `assets.extra/` gets the tokenizer files and `tf_serving_warmup_requests` (Predict requests
    on `serving_default`); `export_config.json` gets `doc_stride`, `max_answer_length`,
    `version_2_with_negative`, the question/context columns and the outputs.

    Args:
        run: The run directory (task `question-answering`).
        max_length: Tokens per window (default: the run's `max_length`).
        parity_texts: `(question, context)` pairs for the parity check, or plain strings used
            as contexts (asked `PARITY_QUESTIONS` in turn); default `default_parity_pairs`.

    Raises:
        RunDirError: the model or tokenizer cannot be loaded, or the options do not fit.
        UnsupportedTokenizerError: the tokenizer is not BERT-style WordPiece.
    """

    def __init__(self, run: RunDirectory, *, max_length: int | None = None,
                 parity_texts: Any = None) -> None:
        super().__init__(run, max_length=max_length, parity_texts=parity_texts)
        self.model = load_model(run)
        self.tokenizer = run.load_tokenizer()
        self._max_length = self._resolve_max_length(max_length)
        self._read_span_options()
        if not 0 < self.doc_stride < self._max_length - 4:
            raise ExportError(
                f"doc_stride must be smaller than max_length - 4 (room for the question and new "
                f"context tokens). Expected a max_length above {self.doc_stride + 4}. Received: "
                f"max_length={self._max_length}, doc_stride={self.doc_stride} (fit_config.yaml)")
        self.pairs = _parity_pairs(parity_texts, self._max_length)
        in_graph = InGraphTokenizer.from_hf_tokenizer(self.tokenizer, max_length=self._max_length)
        self.module = QuestionAnsweringServingModule(
            self.model, in_graph, doc_stride=self.doc_stride,
            max_answer_length=self.max_answer_length,
            version_2_with_negative=self.version_2_with_negative)

    def _read_span_options(self) -> None:
        """`doc_stride`, `max_answer_length` and `version_2_with_negative` from the run's
        fit_config.yaml (training's defaults when absent)."""
        config = self.run.fit_config
        self.doc_stride = int(config.get("doc_stride", 128))
        self.max_answer_length = int(config.get("max_answer_length", 30))
        self.version_2_with_negative = bool(config.get("version_2_with_negative", False))

    def _in_memory_answers(self, contexts: Sequence[str], reference: dict[str, Any],
                           outputs: Any, mask: np.ndarray) -> list[tuple[str, int, int, float]]:
        """`_reference_answers` of the in-memory model's `outputs` on the `reference` windows
        (`_hf_windows`), each window's logits cut to its tokens (`mask`)."""
        lengths = mask.sum(axis=1)
        return _reference_answers(
            contexts, reference["example"], reference["offsets"],
            [row[:n] for row, n in zip(outputs.start_logits.numpy(), lengths)],
            [row[:n] for row, n in zip(outputs.end_logits.numpy(), lengths)],
            self.max_answer_length, self.version_2_with_negative)

    def _resolve_max_length(self, max_length: int | None) -> int:
        source = "max_length"
        if max_length is None:
            max_length, source = self.run.max_length, "max_length in fit_config.yaml"
        if max_length is None:
            raise RunDirError("No max_length to export with. Expected max_length in "
                              f"fit_config.yaml or the max_length option. Received: neither, "
                              f"run_dir='{self.run.path}'")
        limit = int(getattr(self.model.config, "max_position_embeddings", max_length))
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not (
                8 <= max_length <= limit):
            raise ExportError(
                f"Invalid {source}. Expected an integer from 8 to the model's "
                f"max_position_embeddings ({limit}). Received: max_length={max_length!r}")
        return max_length

    def write_assets(self, assets_extra: Path) -> dict[str, Any]:
        self.tokenizer.save_pretrained(str(assets_extra / TOKENIZER_DIR))
        write_warmup_requests(assets_extra, self._max_length)
        config = self.run.fit_config
        return {
            "doc_stride": self.doc_stride,
            "max_answer_length": self.max_answer_length,
            "version_2_with_negative": self.version_2_with_negative,
            "question_column": config.get("question_column", "question"),
            "context_column": config.get("context_column", "context"),
            "inputs": [QUESTION, CONTEXT],
            "outputs": list(OUTPUTS),
            "tokenizer": type(self.tokenizer).__name__,
        }

    def check_parity(self, export_dir: Path) -> float:
        """Compares the reloaded SavedModel with the Hugging Face tokenizer and the in-memory
        model on the parity pairs: the windows (ids, masks, segment ids, character offsets)
        exactly, the `tokens` logits and the answers' scores within 1e-4, and the answers
        (text, start, end) exactly against the same span rule applied in Python."""
        loaded = tf.saved_model.load(str(export_dir))
        questions = [question for question, _ in self.pairs]
        contexts = [context for _, context in self.pairs]
        reference = _hf_windows(self.tokenizer, questions, contexts, self._max_length,
                                self.doc_stride)
        windows = {key: value.numpy() for key, value in loaded.windows(
            tf.constant(questions), tf.constant(contexts)).items()}
        self._compare_windows(windows, reference)

        inputs = {name: tf.constant(reference[name], tf.int32) for name in TOKEN_INPUTS
                  if name in reference}
        model_inputs = dict(inputs)
        if "token_type_ids" not in model_inputs:
            inputs["token_type_ids"] = tf.zeros_like(inputs["input_ids"])
        expected = self.model(**model_inputs, training=False)
        outputs = loaded.signatures["tokens"](**inputs)
        mask = reference["attention_mask"].astype(bool)
        difference = 0.0
        for name in ("start_logits", "end_logits"):
            got = outputs[name].numpy()
            want = getattr(expected, name).numpy()
            difference = max(difference, float(np.max(np.abs(got - want)[mask], initial=0.0)))
        if difference > TOLERANCE:
            raise ParityError(
                f"The exported model's logits differ from the in-memory model's. Expected "
                f"|difference| <= {TOLERANCE}. Received: {difference:.3g} on the parity pairs")

        answers = self._in_memory_answers(contexts, reference, expected, mask)
        served = loaded.signatures[SERVING_DEFAULT](question=tf.constant(questions),
                                                    context=tf.constant(contexts))
        for i, (text, start, end, score) in enumerate(answers):
            got = (served["answer"].numpy()[i].decode("utf-8"), int(served["start"].numpy()[i]),
                   int(served["end"].numpy()[i]))
            if got != (text, start, end):
                raise ParityError(
                    f"The exported model's answer differs from the in-memory model's. Expected "
                    f"{(text, start, end)!r}. Received: {got!r} for question "
                    f"{questions[i]!r} and context {contexts[i][:60]!r}")
            difference = max(difference, abs(float(served["score"].numpy()[i]) - score))
        if difference > TOLERANCE:
            raise ParityError(
                f"The exported model's answer scores differ from the in-memory model's. Expected "
                f"|difference| <= {TOLERANCE}. Received: {difference:.3g}")
        logger.info("Parity check passed on %d pairs (%d windows); max |difference| %.3g",
                    len(self.pairs), len(reference["example"]), difference)
        return difference

    def _compare_windows(self, windows: dict[str, np.ndarray], reference: dict) -> None:
        if not np.array_equal(windows["example"], reference["example"]):
            raise ParityError(
                "The exported model splits the contexts into other windows than the Hugging "
                f"Face tokenizer. Expected windows of pairs {reference['example'].tolist()}. "
                f"Received: {windows['example'].tolist()}")
        for name in TOKEN_INPUTS:
            if name not in reference:
                continue
            if windows[name].shape != reference[name].shape or not np.array_equal(
                    windows[name], reference[name]):
                row = _first_different_row(windows[name], reference[name])
                raise ParityError(
                    f"The exported tokenizer's {name} differ from the Hugging Face tokenizer's. "
                    f"Expected window {row}: {reference[name][row].tolist()}. Received: "
                    f"{windows[name][row].tolist() if row < len(windows[name]) else None}")
        for row, offsets in enumerate(reference["offsets"]):
            got = [(int(start), int(end)) if start >= 0 else None for start, end in
                   zip(windows["offset_start"][row][:len(offsets)],
                       windows["offset_end"][row][:len(offsets)])]
            if got != offsets:
                raise ParityError(
                    "The exported tokenizer's character offsets differ from the Hugging Face "
                    f"tokenizer's. Expected {offsets}. Received: {got} (window {row})")


def load_model(run: RunDirectory) -> Any:
    """The run's `TFAutoModelForQuestionAnswering`.

    Raises:
        RunDirError: it cannot be loaded.
    """
    from transformers import TFAutoModelForQuestionAnswering

    try:
        return TFAutoModelForQuestionAnswering.from_pretrained(run.path)
    except (OSError, ValueError, KeyError) as error:
        raise RunDirError(
            "Cannot load the fine-tuned model. Expected a TF question-answering model saved "
            f"with `save_pretrained` in the run directory. Received: run_dir='{run.path}', "
            f"error: {error}") from error


def _parity_pairs(parity_texts: Any, max_length: int) -> list[tuple[str, str]]:
    if parity_texts is None:
        return default_parity_pairs(max_length)
    pairs = []
    for i, item in enumerate(parity_texts):
        if isinstance(item, str):
            pairs.append((PARITY_QUESTIONS[i % len(PARITY_QUESTIONS)], item))
        elif (isinstance(item, (tuple, list)) and len(item) == 2
              and all(isinstance(part, str) for part in item)):
            pairs.append((item[0], item[1]))
        else:
            raise ExportError(
                "Invalid parity_texts for question answering. Expected contexts (strings) or "
                f"(question, context) pairs. Received: {item!r}")
    if not pairs:
        raise ExportError("Invalid parity_texts. Expected at least one pair. Received: none")
    return pairs


def _hf_windows(tokenizer: Any, questions: Sequence[str], contexts: Sequence[str],
                max_length: int, doc_stride: int) -> dict[str, Any]:
    """The Hugging Face tokenizer's windows (as in training), padded to the longest."""
    encoded = tokenizer(list(questions), list(contexts), truncation="only_second",
                        max_length=max_length, stride=doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding="longest")
    offsets = []
    for window, row in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(window)
        offsets.append([tuple(offset) if sequence_id == 1 else None
                        for offset, sequence_id in zip(row, sequence_ids)])
    reference = {name: np.asarray(encoded[name], dtype=np.int32) for name in TOKEN_INPUTS
                 if name in encoded}
    reference["example"] = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64)
    reference["offsets"] = offsets
    return reference


def _reference_answers(contexts, example_ids, offsets, start_logits, end_logits,
                       max_answer_length: int,
                       version_2: bool) -> list[tuple[str, int, int, float]]:
    """The serving module's span rule in NumPy: best start + end logit over each pair's
    windows (first window on ties); with `version_2`, no answer when the lowest [CLS] score is
    higher."""
    best: dict[int, tuple[float, tuple]] = {}
    null: dict[int, tuple[float, float]] = {}
    for window, example in enumerate(example_ids):
        start = np.asarray(start_logits[window], np.float32)
        end = np.asarray(end_logits[window], np.float32)
        start_log = start - _logsumexp(start)
        end_log = end - _logsumexp(end)
        null_score = float(start[0] + end[0])
        if example not in null or null_score < null[example][0]:
            null[example] = (null_score, float(np.exp(start_log[0] + end_log[0])))
        window_offsets = offsets[window][:len(start)]
        is_context = np.array([offset is not None for offset in window_offsets])
        if not is_context.any():
            continue
        positions = np.arange(len(start))
        gap = positions[None, :] - positions[:, None]
        valid = (is_context[:, None] & is_context[None, :] & (gap >= 0)
                 & (gap < max_answer_length))
        scores = np.where(valid, start[:, None] + end[None, :], -np.inf)
        first, last = divmod(int(np.argmax(scores)), len(start))
        score = float(scores[first, last])
        if example in best and best[example][0] >= score:
            continue
        begin, finish = window_offsets[first][0], window_offsets[last][1]
        best[example] = (score, (contexts[example][begin:finish], int(begin), int(finish),
                                 float(np.exp(start_log[first] + end_log[last]))))
    answers = []
    for example in range(len(contexts)):
        no_answer = ("", 0, 0, null[example][1])
        if example not in best or (version_2 and null[example][0] > best[example][0]):
            answers.append(no_answer)
        else:
            answers.append(best[example][1])
    return answers


def _logsumexp(values: np.ndarray) -> float:
    top = float(np.max(values))
    return top + float(np.log(np.sum(np.exp(values - top))))


def _first_different_row(got: np.ndarray, want: np.ndarray) -> int:
    for row in range(len(want)):
        if row >= len(got) or got[row].shape != want[row].shape or not np.array_equal(
                got[row], want[row]):
            return row
    return len(want) - 1


#: Warm-up pairs: short, accented, empty, and (see `write_warmup_requests`) a long context.
WARMUP_PAIRS = (
    ("Where is the café?", "The café is in Zürich, near the old bridge."),
    ("Who wrote it?", "It was written by a naïve author."),
    ("", ""),
)


def warmup_logs(max_length: int) -> list[prediction_log_pb2.PredictionLog]:
    """Predict requests on `serving_default` with batches of one, two and all warm-up pairs
    (the last pair's context spans several windows)."""
    pairs = [*WARMUP_PAIRS, ("Where is Paris?", " ".join(
        ["The river is long and the city of Paris is in France."] * (max_length // 6 + 2)))]
    logs = []
    for size in (1, 2, len(pairs)):
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = SERVING_DEFAULT
        request.inputs[QUESTION].CopyFrom(tf.make_tensor_proto(
            [question for question, _ in pairs[:size]], dtype=tf.string))
        request.inputs[CONTEXT].CopyFrom(tf.make_tensor_proto(
            [context for _, context in pairs[:size]], dtype=tf.string))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_requests(assets_extra: Path, max_length: int) -> Path:
    """Writes `assets_extra/tf_serving_warmup_requests` (TF Serving's PredictionLog TFRecord)."""
    path = Path(assets_extra) / WARMUP_REQUESTS_FILE
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in warmup_logs(max_length):
            writer.write(log.SerializeToString())
    return path
