"""`PortableTokenClassificationExport`: `export --portable` of a token-classification (NER) run,
a SavedModel of core TensorFlow ops whose clients split words and tokenise themselves.

Signatures (`PortableTokenClassifierServingModule`): `serving_default` and `tokens`, both
`input_ids`, `attention_mask`, `token_type_ids` (int32 [-1, -1], one row per window) →
`logits`, `probabilities` (float32 [-1, -1, T]), as the default export's `tokens` signature.

The client (`serving.client_tokenizer.ClientTokenizer.from_path(...)`, which hands NER exports
to `serving.portable_token_classification_codec`) splits words as the default export's graph does,
cuts the same windows of `max_length - 2` word pieces, tags each word from its first piece and
decodes entities with the default export's codec: the same entities and offsets.

`assets.extra/export_config.json` has, besides the default NER export's fields, `"portable":
true`, `inputs`, `client_tokenizer` (`tokenizer/tokenizer.json`) and `special_token_ids`
(`cls`, `sep`, `pad`: how windows are framed and padded). The parity check runs the client's
code on the written files: its words must be the graph's (`tensorflow_text`'s split), its
windows the Hugging Face tokenizer's, and the SavedModel's outputs on them the in-memory
model's.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from export._not_tracked import NotTracked  # noqa: E402
from export.classifier_serving_module import SERVING_DEFAULT  # noqa: E402
from export.classifier_serving_module import TOKEN_INPUTS  # noqa: E402
from export.classifier_serving_module import TOKENS  # noqa: E402
from export.errors import ParityError  # noqa: E402
from export.errors import UnsupportedTokenizerError  # noqa: E402
from export.portable_export import CLIENT_TOKENIZER_FILE  # noqa: E402
from export.portable_export import _check_fast_tokenizer  # noqa: E402
from export.run_directory import RunDirectory  # noqa: E402
from export.token_classification_export import TOLERANCE  # noqa: E402
from export.token_classification_export import TokenClassificationExport  # noqa: E402
from export.token_classification_export import _compare  # noqa: E402
from export.token_classification_export import default_parity_texts  # noqa: E402
from export.token_classification_export import hf_windows  # noqa: E402
from export.token_classification_export import unpadded_rows  # noqa: E402
from export.token_classifier_serving_module import TokenClassifierServingModule  # noqa: E402
from export.warmup_requests import WARMUP_REQUESTS_FILE  # noqa: E402

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
OUTPUTS = ("logits", "probabilities")
SIGNATURE_NAMES = (SERVING_DEFAULT, TOKENS)


class PortableTokenClassifierServingModule(tf.Module):
    """A fine-tuned token classifier without its tokenizer: token ids in, per-token logits and
    probabilities out (`serving_default` and `tokens`, the same function).

    Args:
        model: A built `TFAutoModelForTokenClassification`.
    """

    #: The default export's `tokens` body and `signatures()`.
    _tokens = TokenClassifierServingModule._tokens
    signatures = TokenClassifierServingModule.signatures

    def __init__(self, model: Any) -> None:
        super().__init__(name="portable_token_classifier_serving_module")
        self._model = NotTracked(model)
        self.model_variables = list(model.variables)
        self.signature_names = SIGNATURE_NAMES
        self._model_takes_token_type_ids = "token_type_ids" in inspect.signature(
            model.call).parameters
        spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in TOKEN_INPUTS]
        self.serving_default = tf.function(self._tokens, input_signature=spec)
        self.tokens = tf.function(self._tokens, input_signature=spec)



class PortableTokenClassificationExport(TokenClassificationExport):
    """Builds the portable NER SavedModel of a run directory (see the module docstring): the
    default export's model loading, checks and in-memory logits, with a tokenizer check of its
    own (`_check_tokenizer`), the token-id module, assets and parity check.

    Args:
        run: A token-classification run directory.
        max_length: Tokens per window, special tokens included (default: the run's).
        parity_texts: Texts for the parity check (default: the default export's, with one
            longer than `max_length`).

    Raises:
        RunDirError: the model cannot be loaded or disagrees with `labels.json`.
        UnsupportedTokenizerError: the tokenizer has no `tokenizer.json` (fast version) or no
            [CLS]/[SEP]/[PAD] tokens.
        ExportError: invalid `max_length` or `parity_texts`.
    """

    def _check_tokenizer(self) -> None:
        _check_tokenizer(self.tokenizer, self.run)

    def _build_module(self) -> tf.Module:
        return PortableTokenClassifierServingModule(self.model)

    def write_assets(self, assets_extra: Path) -> dict[str, Any]:
        self.tokenizer.save_pretrained(str(assets_extra / TOKENIZER_DIR))
        if not (assets_extra / CLIENT_TOKENIZER_FILE).is_file():
            raise UnsupportedTokenizerError(
                f"The tokenizer's save_pretrained wrote no tokenizer.json. Expected "
                f"{assets_extra / CLIENT_TOKENIZER_FILE} for clients to tokenise with. "
                f"Received: {sorted(p.name for p in (assets_extra / TOKENIZER_DIR).iterdir())}")
        tokenizer = self.tokenizer
        config = {"tags": list(self.run.labels), "outputs": list(OUTPUTS),
                  "tokenizer": type(tokenizer).__name__,
                  "tokens_column": self.run.fit_config.get("tokens_column"),
                  "tags_column": self.run.fit_config.get("tags_column"),
                  "portable": True, "inputs": list(TOKEN_INPUTS),
                  "client_tokenizer": CLIENT_TOKENIZER_FILE,
                  "special_token_ids": {"cls": tokenizer.cls_token_id,
                                        "sep": tokenizer.sep_token_id,
                                        "pad": tokenizer.pad_token_id},
                  "windows": "consecutive runs of max_length - 2 word pieces, each as "
                             "[CLS] pieces [SEP]; each word tagged from its first piece"}
        self._write_warmup_requests(assets_extra, config)
        return config

    def check_parity(self, export_dir: Path) -> float:
        """Runs the client's code (`ClientTokenizer.from_path(export_dir)`, see
        `serving.client_tokenizer`) on `parity_texts` and checks: its words and byte offsets
        equal the default export's graph split (`tensorflow_text`); its windows equal the
        Hugging Face tokenizer's pieces of those words framed by [CLS]/[SEP] (exactly); the
        SavedModel's `serving_default` and `tokens` logits on its inputs equal the in-memory
        model's (within 1e-4); and the entities the client decodes from them equal those of
        the in-memory logits (same types, offsets and texts, scores within 1e-4).

        Raises:
            ParityError: naming the text and what differs.
        """
        from serving.client_tokenizer import ClientTokenizer
        from serving.token_classification_codec import decode_entities

        from export.token_classifier_serving_module import split_words as graph_split

        texts = self.parity_texts
        codec = ClientTokenizer.from_path(export_dir).task_codec
        inputs, layouts = codec.windows(texts)
        words, starts, ends = graph_split(tf.constant(texts, dtype=tf.string))
        budget = self._max_length - 2
        for i, (text, layout) in enumerate(zip(texts, layouts)):
            graph_words = [(w.decode("utf-8"), int(s), int(e)) for w, s, e in zip(
                words[i].numpy(), starts[i].numpy(), ends[i].numpy())]
            expected = self.tokenizer([w for w, _, _ in graph_words], is_split_into_words=True,
                                      add_special_tokens=False)
            tagged = sorted({w for w in expected.word_ids() if w is not None})
            if list(layout.words) != [graph_words[w] for w in tagged]:
                raise ParityError(
                    f"The client splits words differently from the default export's graph. "
                    f"Expected the words {[graph_words[w] for w in tagged]} (word, byte start, "
                    f"byte end). Received: {list(layout.words)} for text {text!r}")
            windows = hf_windows(self.tokenizer, expected["input_ids"], budget)
            received = unpadded_rows(
                inputs, range(layout.first_row, layout.first_row + layout.window_count))
            if received != windows:
                raise ParityError(
                    f"The client tokenises differently from the run's "
                    f"{type(self.tokenizer).__name__}. Expected the windows {windows}. "
                    f"Received: {received} from {export_dir}/assets.extra/"
                    f"{CLIENT_TOKENIZER_FILE} for text {text!r}")

        loaded = tf.saved_model.load(str(export_dir))
        tensors = {name: tf.constant(values) for name, values in inputs.items()}
        served = {name: {key: value.numpy() for key, value in
                         loaded.signatures[name](**tensors).items()}
                  for name in SIGNATURE_NAMES}
        largest = 0.0
        reference = np.zeros_like(served[SERVING_DEFAULT]["logits"])
        for text, layout in zip(texts, layouts):
            for row in range(layout.first_row, layout.first_row + layout.window_count):
                length = int(inputs["attention_mask"][row].sum())
                reference[row, :length] = self._in_memory_logits(
                    inputs["input_ids"][row, :length].tolist())
                for name in SIGNATURE_NAMES:
                    largest = max(largest, _compare(served[name]["logits"][row, :length],
                                                    reference[row, :length],
                                                    f"{name} logits", text))
        exponents = np.exp(reference - reference.max(axis=-1, keepdims=True))
        expected_words = codec.tagged_words(
            {"probabilities": exponents / exponents.sum(axis=-1, keepdims=True)}, layouts)
        received_words = codec.tagged_words(served[SERVING_DEFAULT], layouts)
        for text, expected, received in zip(texts, expected_words, received_words):
            _compare_entities(decode_entities(text, expected), decode_entities(text, received),
                              expected, text)
        logger.info("Portable token-classification parity on %d texts (%d windows): max "
                    "|difference| %.3g", len(texts), len(inputs["input_ids"]), largest)
        return largest

    def _write_warmup_requests(self, assets_extra: Path, config: dict) -> Path:
        """Predict requests on `serving_default` with the client's windows of one, two and all
        default parity texts (one longer than `max_length`), then all of them padded to
        `max_length` (the shape of `--pad-to-max-length` clients)."""
        from serving.portable_token_classification_codec import PortableTokenClassificationCodec

        from export.warmup_requests import predict_log
        from export.warmup_requests import write_logs

        texts = default_parity_texts(self._max_length)
        logs = []
        for size, padded in ((1, False), (2, False), (len(texts), False), (len(texts), True)):
            codec = PortableTokenClassificationCodec.from_export(
                assets_extra, {**config, "max_length": self._max_length},
                pad_to_max_length=padded)
            logs.append(predict_log(codec.encode(texts[:size])))
        return write_logs(assets_extra / WARMUP_REQUESTS_FILE, logs)


def _check_tokenizer(tokenizer: Any, run: RunDirectory) -> None:
    name = type(tokenizer).__name__
    _check_fast_tokenizer(tokenizer, run)
    missing = [token for token in ("cls_token", "sep_token", "pad_token")
               if getattr(tokenizer, f"{token}_id", None) is None]
    if missing:
        raise UnsupportedTokenizerError(
            f"A portable token-classification export frames windows as [CLS] pieces [SEP] and "
            f"pads them. Expected a tokenizer with cls_token, sep_token and pad_token. "
            f"Received: {name} without {', '.join(missing)} in {run.path}")


def _compare_entities(expected: list[dict], received: list[dict], words: list, text: str) -> None:
    same = len(expected) == len(received) and all(
        {k: v for k, v in e.items() if k != "score"} == {k: v for k, v in r.items()
                                                          if k != "score"}
        and abs(e["score"] - r["score"]) <= TOLERANCE for e, r in zip(expected, received))
    if not same:
        raise ParityError(
            f"The SavedModel's entities differ from the in-memory model's. Expected {expected} "
            f"(words {words}). Received: {received} for text {text!r}")
