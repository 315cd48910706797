"""`TokenClassificationExport`: a `--task token-classification` (NER) run → TF Serving
SavedModel that tags raw text.

Signatures (see `export.token_classifier_serving_module` for the details):

- `serving_default`: input `text` string [-1] (raw UTF-8 text); outputs per word `tags`
  string [-1, -1] (BIO tag), `scores` float32 [-1, -1] (its softmax probability),
  `word_start` / `word_end` int64 [-1, -1] (byte offsets into the UTF-8 text, end exclusive),
  padded past `word_count` int64 [-1] with `""` / 0. Text is split into words on whitespace and
  punctuation (BERT's basic tokenization), each word tagged from its first sub-token; a text
  longer than `max_length` tokens runs as consecutive windows of `max_length - 2` word pieces,
  so every word is tagged.
- `tokens`: `input_ids`, `attention_mask`, `token_type_ids` int32 [-1, -1] → `logits`,
  `probabilities` float32 [-1, -1, T].

Entities are decoded client-side from the per-word tags (`serving.TokenClassificationCodec`:
BIO spans, an `I-X` not continuing an `X` starts a new entity as in seqeval, character offsets,
score = mean of the words' scores); `tfinetune predict`/`score` print them.

`assets.extra/` holds, besides the common files, `tokenizer/` (the Hugging Face tokenizer),
`tf_serving_warmup_requests` (Predict requests on `serving_default`) and `export_config.json`
with `tags` and `outputs`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from typing import Iterable
from typing import Mapping
from typing import Sequence

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

from export.classifier_serving_module import SERVING_DEFAULT  # noqa: E402
from export.classifier_serving_module import TEXT  # noqa: E402
from export.classifier_serving_module import TOKENS  # noqa: E402
from export.errors import ExportError  # noqa: E402
from export.errors import ParityError  # noqa: E402
from export.errors import RunDirError  # noqa: E402
from export.in_graph_tokenizer import InGraphTokenizer  # noqa: E402
from export.run_directory import RunDirectory  # noqa: E402
from export.task_export import TaskExport  # noqa: E402
from export.token_classifier_serving_module import OUTPUTS  # noqa: E402
from export.token_classifier_serving_module import TokenClassifierServingModule  # noqa: E402
from export.warmup_requests import WARMUP_REQUESTS_FILE  # noqa: E402

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
TOLERANCE = 1e-4

#: Texts of the parity check: names and places, accents and multi-piece words, punctuation,
#: CJK, odd whitespace, characters the tokenizer drops, an empty text; `default_parity_texts`
#: adds one longer than `max_length`.
DEFAULT_PARITY_TEXTS = (
    "Alice Smith lives in Paris.",
    "Zoë lives in München, not in New York!",
    "mr Bob Jones visited London today",
    "Dr. O'Neil met 李雷 in Berlin (Germany)...",
    "",
    "  spaces\tand\nnewlines  ",
    "naïve café-owner Ærø said: «bonjour»",
    # A zero-width space, a control character and a lone combining mark: words that normalise
    # to nothing (no token, not tagged); "Bob\u0301" stays one word.
    "Alice \u200b met \x07 Bob\u0301 \u0301 in Rome",
)


def default_parity_texts(max_length: int) -> list[str]:
    """`DEFAULT_PARITY_TEXTS` plus a text longer than `max_length` tokens."""
    return [*DEFAULT_PARITY_TEXTS,
            " ".join(["Carol met Dave in Rome, then Emma Brown in London."] * (max_length // 8))]


class TokenClassificationExport(TaskExport):
    """Builds the NER SavedModel of a run directory (see the module docstring).

    Args:
        run: A token-classification run directory.
        max_length: Tokens per text, special tokens included (default: the run's).
        parity_texts: Texts for the parity check (default: `default_parity_texts(max_length)`).

    Raises:
        RunDirError: the model cannot be loaded or disagrees with `labels.json`.
        UnsupportedTokenizerError: the tokenizer is not a BERT-style WordPiece tokenizer.
        ExportError: invalid `max_length` or `parity_texts`.
    """

    def __init__(self, run: RunDirectory, *, max_length: int | None = None,
                 parity_texts: Any = None) -> None:
        super().__init__(run, max_length=max_length, parity_texts=parity_texts)
        from transformers import TFAutoModelForTokenClassification

        try:
            self.model = TFAutoModelForTokenClassification.from_pretrained(run.path)
        except (OSError, ValueError, KeyError) as error:
            raise RunDirError(
                f"Cannot load the fine-tuned model. Expected a TF token-classification model "
                f"saved with `save_pretrained` in the run directory (written by `tfinetune "
                f"fit`). Received: run_dir='{run.path}', error: {error}") from error
        if self.model.config.num_labels != len(run.labels):
            raise RunDirError(
                f"The model and labels.json disagree on the number of tags. Expected "
                f"{len(run.labels)} tags ({list(run.labels)}). Received: "
                f"num_labels={self.model.config.num_labels} in {run.path / 'config.json'}")
        self.tokenizer = run.load_tokenizer()
        self._check_tokenizer()
        self._max_length = _checked_max_length(run, self.model, max_length)
        if parity_texts is not None and (
                isinstance(parity_texts, str) or not parity_texts
                or not all(isinstance(text, str) for text in parity_texts)):
            raise ExportError(f"Invalid parity_texts. Expected a non-empty sequence of strings. "
                              f"Received: {parity_texts!r}")
        self.parity_texts = (list(parity_texts) if parity_texts is not None
                             else default_parity_texts(self._max_length))
        self.module = self._build_module()

    def _check_tokenizer(self) -> None:
        """Raises `UnsupportedTokenizerError` before `max_length` is checked if this export
        cannot use `self.tokenizer` (here: nothing; the in-graph tokenizer checks its own)."""

    def _build_module(self) -> tf.Module:
        """The `tf.Module` to save, built once the model, tokenizer and length are known."""
        in_graph = InGraphTokenizer.from_hf_tokenizer(self.tokenizer, max_length=self._max_length)
        return TokenClassifierServingModule(self.model, in_graph, self.run.labels)

    def write_assets(self, assets_extra: Path) -> dict[str, Any]:
        self.tokenizer.save_pretrained(str(assets_extra / TOKENIZER_DIR))
        _write_warmup_requests(assets_extra, default_parity_texts(self._max_length))
        return {"tags": list(self.run.labels), "outputs": list(OUTPUTS),
                "tokenizer": type(self.tokenizer).__name__,
                "tokens_column": self.run.fit_config.get("tokens_column"),
                "tags_column": self.run.fit_config.get("tags_column")}

    def check_parity(self, export_dir: Path) -> float:
        """Reloads `export_dir` and checks, on `parity_texts`: every window's token ids equal
        the Hugging Face tokenizer's ids of the same words cut into the same windows (exactly);
        every word is tagged from its first sub-token; `tokens` logits and `serving_default`
        scores equal the in-memory model's (within 1e-4) and the tags are its argmax.

        Raises:
            ParityError: naming the text and what differs.
        """
        loaded = tf.saved_model.load(str(export_dir))
        texts = self.parity_texts
        text_tensor = tf.constant(texts, dtype=tf.string)
        served = {key: value.numpy() for key, value in
                  loaded.signatures[SERVING_DEFAULT](text=text_tensor).items()}
        encoded = {key: value.numpy() for key, value in loaded.tokenize(text_tensor).items()}
        first_rows = np.cumsum(encoded["window_count"]) - encoded["window_count"]
        budget = self._max_length - 2
        tags = list(self.run.labels)
        largest = 0.0
        for i, text in enumerate(texts):
            data = text.encode("utf-8")
            count = int(served["word_count"][i])
            words = [data[start:end].decode("utf-8") for start, end in
                     zip(served["word_start"][i][:count], served["word_end"][i][:count])]
            expected = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False)
            windows = hf_windows(self.tokenizer, expected["input_ids"], budget)
            rows = range(first_rows[i], first_rows[i] + encoded["window_count"][i])
            received = unpadded_rows(encoded, rows)
            if received != windows:
                raise ParityError(
                    f"The in-graph tokenizer differs from the Hugging Face tokenizer. Expected "
                    f"the windows {windows} for the words {words}. Received: {received} for "
                    f"text {text!r}")
            first_tokens = _first_tokens(expected.word_ids())
            if sorted(first_tokens) != list(range(count)):
                raise ParityError(
                    f"The export tags words the model does not see. Expected each of the "
                    f"{count} words to have a first token. Received: word ids "
                    f"{expected.word_ids()} for text {text!r}")
            references = []
            for window, row in zip(windows, rows):
                reference = self._in_memory_logits(window)
                logits = loaded.signatures[TOKENS](**{
                    key: tf.constant(encoded[key][row:row + 1, :len(window)]) for key in
                    ("input_ids", "attention_mask", "token_type_ids")})["logits"].numpy()[0]
                largest = max(largest, _compare(logits, reference, "tokens logits", text))
                references.append(reference)
            word_logits = np.array(
                [references[first_tokens[word] // budget][first_tokens[word] % budget + 1]
                 for word in range(count)]).reshape(count, len(tags))
            probabilities = tf.nn.softmax(word_logits, axis=-1).numpy()
            largest = max(largest, _compare(served["scores"][i][:count],
                                            probabilities.max(axis=-1),
                                            "serving_default scores", text))
            for word, row in enumerate(probabilities):
                best = np.sort(row)[-2:]
                tag = served["tags"][i][word].decode("utf-8")
                if tag != tags[int(np.argmax(row))] and best[-1] - best[0] > TOLERANCE:
                    raise ParityError(
                        f"The SavedModel's tag differs from the in-memory model's. Expected "
                        f"{tags[int(np.argmax(row))]!r} for word {words[word]!r}. Received: "
                        f"{tag!r} in text {text!r}")
        logger.info("Token-classification parity on %d texts: max |difference| %.3g",
                    len(texts), largest)
        return largest

    def _in_memory_logits(self, ids: list[int]) -> np.ndarray:
        """The in-memory model's logits [tokens, tags] for one unpadded sequence of ids."""
        inputs = {"input_ids": tf.constant([ids], tf.int32),
                  "attention_mask": tf.ones([1, len(ids)], tf.int32)}
        if self.module._model_takes_token_type_ids:
            inputs["token_type_ids"] = tf.zeros([1, len(ids)], tf.int32)
        return tf.cast(self.model(inputs, training=False).logits, tf.float32).numpy()[0]


def hf_windows(tokenizer: Any, ids: Sequence[int], budget: int) -> list[list[int]]:
    """The windows of one text's word-piece `ids` (without special tokens): consecutive runs
    of `budget` pieces, each as [CLS] pieces [SEP]; one window when there are no pieces."""
    return [[tokenizer.cls_token_id, *ids[k:k + budget], tokenizer.sep_token_id]
            for k in range(0, max(len(ids), 1), budget)]


def unpadded_rows(inputs: Mapping[str, np.ndarray], rows: Iterable[int]) -> list[list[int]]:
    """The `input_ids` of `rows` without their padding (as far as `attention_mask` reaches)."""
    return [inputs["input_ids"][row][:inputs["attention_mask"][row].sum()].tolist()
            for row in rows]


def _first_tokens(word_ids: Sequence[int | None]) -> dict[int, int]:
    """Word index → position of its first token."""
    first: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in first:
            first[word] = position
    return first


def _compare(actual: np.ndarray, expected: np.ndarray, what: str, text: str) -> float:
    if actual.shape != expected.shape:
        raise ParityError(f"The SavedModel's {what} have another shape. Expected "
                          f"{expected.shape}. Received: {actual.shape} for text {text!r}")
    difference = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    if difference > TOLERANCE:
        raise ParityError(f"The SavedModel's {what} differ from the in-memory model's. Expected "
                          f"a max |difference| of at most {TOLERANCE}. Received: {difference:.3g} "
                          f"for text {text!r}")
    return difference


def _checked_max_length(run: RunDirectory, model: Any, max_length: int | None) -> int:
    source = "max_length" if max_length is not None else "max_length in fit_config.yaml"
    if max_length is None:
        max_length = run.max_length
    if max_length is None:
        raise RunDirError(
            f"No max_length to export with. Expected max_length in {run.path / 'fit_config.yaml'}"
            f" or an explicit max_length (--max-length). Received: neither")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
        raise ExportError(f"Invalid {source}. Expected an integer of at least 3 ([CLS], one "
                          f"token, [SEP]). Received: max_length={max_length!r}")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ExportError(f"{source} is longer than the model supports. Expected at most {limit} "
                          f"(the model's max_position_embeddings). Received: "
                          f"max_length={max_length}")
    return max_length


def _write_warmup_requests(assets_extra: Path, texts: Sequence[str]) -> Path:
    """Predict requests on `serving_default` with batches of one, two and all `texts`."""
    path = assets_extra / WARMUP_REQUESTS_FILE
    with tf.io.TFRecordWriter(str(path)) as writer:
        for size in (1, 2, len(texts)):
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = SERVING_DEFAULT
            request.inputs[TEXT].CopyFrom(tf.make_tensor_proto(list(texts[:size]),
                                                               dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path
