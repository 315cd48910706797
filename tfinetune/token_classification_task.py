"""`TokenClassificationTask`: named-entity recognition (BIO tags per word) with
`TFAutoModelForTokenClassification`.

Each word of a sentence is tokenized with the model's fast tokenizer
(`is_split_into_words=True`); the word's tag is the label of its first sub-token, and the other
sub-tokens, the special tokens and the padding get -100, which transformers' token-classification
loss ignores. Predictions are read the same way: one tag per word, from its first sub-token.
A sentence longer than `max_length` tokens is cut into consecutive windows of
`max_length - 2` tokens (as the export does with long texts), in training and evaluation.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any
from typing import Sequence

import numpy as np

from tfinetune.entity_metrics import EntityMetrics
from tfinetune.errors import ModelError
from tfinetune.fine_tuning_task import FineTuningTask
from tfinetune.fit_config import FitConfig
from tfinetune.model_source import load_tokenizer
from tfinetune.model_source import resolve_model
from tfinetune.tag_set import OUTSIDE
from tfinetune.tag_set import TagSet
from tfinetune.token_classification_examples import TokenClassificationExamples

logger = logging.getLogger(__name__)

#: Label of the positions the loss ignores (special tokens, non-first sub-tokens, padding).
IGNORED = -100


class TokenClassificationTask(FineTuningTask):
    """`fit --task token-classification`: a BIO tag per word (CoNLL or JSON Lines data);
    monitors the entity-level micro F1 (`val_f1`)."""

    name = "token-classification"
    pipeline_tag = "token-classification"

    def __init__(self, config: FitConfig) -> None:
        super().__init__(config)
        self.train: TokenClassificationExamples | None = None
        self.validation: TokenClassificationExamples | None = None
        self._validation_encoding: _Encoding | None = None

    @property
    def tag_set(self) -> TagSet:
        return self.train.tag_set

    def read_data(self) -> None:
        config = self.config
        self.train = TokenClassificationExamples.read(
            config.train, tokens_column=config.tokens_column, tags_column=config.tags_column)
        if config.validation:
            self.validation = TokenClassificationExamples.read(
                config.validation, tokens_column=config.tokens_column,
                tags_column=config.tags_column, tag_set=self.train.tag_set, role="validation")

    @property
    def label_names(self) -> list[str]:
        return list(self.tag_set.names)

    def load_model(self) -> tuple[Any, Any]:
        import tf_keras
        from transformers import AutoConfig
        from transformers import TFAutoModelForTokenClassification

        config = self.config
        source = resolve_model(config.model)
        tokenizer = _load_tokenizer(source, config.model)
        try:
            model_config = AutoConfig.from_pretrained(
                source, num_labels=len(self.tag_set), id2label=self.tag_set.id2label,
                label2id=self.tag_set.label2id)
            if config.classifier_dropout is not None:
                if not hasattr(model_config, "classifier_dropout"):
                    raise ModelError(
                        f"--classifier-dropout is not supported for model type "
                        f"{model_config.model_type!r}: its config has no classifier_dropout.")
                model_config.classifier_dropout = config.classifier_dropout
            tf_keras.utils.set_random_seed(config.seed)
            model = TFAutoModelForTokenClassification.from_pretrained(
                source, config=model_config, ignore_mismatched_sizes=True)
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(
                f"Cannot load --model {config.model!r} as a TensorFlow token classifier. "
                "Expected a Hugging Face model name or directory of a model type with a TF "
                f"token-classification class (BERT, DistilBERT, RoBERTa, ...). Received: {error}"
            ) from error
        if config.freeze_backbone or config.freeze_layers:
            from tfinetune.backbone_freezer import BackboneFreezer

            freezer = BackboneFreezer(model)
            if config.freeze_backbone:
                freezer.freeze_backbone()
            else:
                freezer.freeze_layers(config.freeze_layers)
        return tokenizer, model

    def train_dataset(self, tokenizer: Any,
                      batch_size: int | None = None) -> tuple[Any, int]:
        batch_size = batch_size or self.config.batch_size
        config = self.config
        encoding = _Encoding.of(tokenizer, self.train, config.max_length)
        if len(encoding) > len(self.train):
            logger.info("Sentences longer than max_length %d tokens are cut into windows: %d "
                        "windows for %d sentences", config.max_length, len(encoding),
                        len(self.train))
        dataset = encoding.dataset(batch_size, shuffle=True, seed=config.seed)
        return dataset, math.ceil(len(encoding) / batch_size)

    def prepare_validation(self, tokenizer: Any) -> None:
        if self.validation is not None:
            self._validation_encoding = _Encoding.of(tokenizer, self.validation,
                                                     self.config.max_length)

    def validate(self, model: Any) -> tuple[float | None, dict[str, Any]] | None:
        if self._validation_encoding is None:
            return None
        loss, metrics = _evaluate(model, self._validation_encoding, self.validation,
                                  self.config.eval_batch_size)
        return loss, metrics.as_dict()

    def save_files(self, directory: Path) -> None:
        self.tag_set.save(directory)

    def model_card_lines(self, metrics: dict[str, Any] | None) -> list[str]:
        config = self.config
        lines = [
            f"Tags (BIO, tag-id order): {', '.join(f'`{tag}`' for tag in self.tag_set.names)}.",
            f"Input: pre-split words (CoNLL files, or `{config.tokens_column}`/"
            f"`{config.tags_column}` lists in JSON Lines), in windows of up to "
            f"{config.max_length} tokens; each word is tagged from its first sub-token.",
        ]
        if metrics and isinstance(metrics.get("per_type"), dict):
            lines.append("Validation entity F1 per type: " + ", ".join(
                f"{kind} {scores['f1']:.4f}" for kind, scores in metrics["per_type"].items()))
        return lines

    @classmethod
    def evaluate_run(cls, run_dir: Path, config: FitConfig, data: Path, *,
                     batch_size: int = 64) -> dict[str, Any]:
        """Loss, entity-level precision/recall/F1 (micro and per type) and token accuracy of the
        run's model on a labelled CoNLL or JSON Lines file."""
        from transformers import TFAutoModelForTokenClassification

        run_dir = Path(run_dir)
        tag_set = TagSet.load(run_dir)
        examples = TokenClassificationExamples.read(
            data, tokens_column=config.tokens_column, tags_column=config.tags_column,
            tag_set=tag_set, role="evaluation")
        tokenizer = _load_tokenizer(str(run_dir), str(run_dir))
        try:
            model = TFAutoModelForTokenClassification.from_pretrained(run_dir)
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(f"Cannot load the token classifier of {run_dir}. Expected a model "
                             f"saved by `tfinetune fit`. Received: {error}") from error
        if model.config.num_labels != len(tag_set):
            raise ModelError(
                f"The model and labels.json of {run_dir} disagree. Expected {len(tag_set)} tags "
                f"({list(tag_set.names)}). Received: num_labels={model.config.num_labels}")
        encoding = _Encoding.of(tokenizer, examples, config.max_length)
        loss, metrics = _evaluate(model, encoding, examples, batch_size)
        return {"rows": len(examples), "loss": loss, **metrics.as_dict()}


#: Model types whose byte-level BPE tokenizers need `add_prefix_space=True` for pre-split words.
_PREFIX_SPACE_MODEL_TYPES = ("roberta", "deberta", "gpt2", "bloom", "longformer", "bart")


def _load_tokenizer(source: str, name: str) -> Any:
    from transformers import AutoConfig

    try:
        model_type = getattr(AutoConfig.from_pretrained(source), "model_type", None)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"Cannot load a tokenizer for --model {name!r}. Expected a Hugging Face model name "
            f"or a directory with tokenizer files. Received: {error}") from error
    options = {"add_prefix_space": True} if model_type in _PREFIX_SPACE_MODEL_TYPES else {}
    tokenizer = load_tokenizer(source, name, **options)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"Token classification needs a fast (Rust) tokenizer to map sub-tokens to words. "
            f"Expected a tokenizer.json or a model type with a fast tokenizer. Received: "
            f"{type(tokenizer).__name__} for --model {name!r}")
    return tokenizer


class _Encoding:
    """Token windows of sentences: a sentence longer than `max_length` tokens becomes several
    consecutive windows of `max_length - 2` tokens (no overlap, each `[CLS] ... [SEP]`, as the
    export runs long texts), so no word is lost. Per window: its sentence, the training labels
    (the word's tag id on the word's first sub-token, -100 elsewhere) and the `(position, word)`
    of those first sub-tokens."""

    def __init__(self, features: dict[str, list[list[int]]], labels: list[list[int]],
                 sentences: list[int], first_tokens: list[list[tuple[int, int]]],
                 pad_token_id: int) -> None:
        self.features = features
        self.labels = labels
        self.sentences = sentences
        self.first_tokens = first_tokens
        self.pad_token_id = pad_token_id

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, tokenizer: Any, examples: TokenClassificationExamples,
           max_length: int) -> "_Encoding":
        encoded = tokenizer(examples.tokens, is_split_into_words=True, truncation=True,
                            max_length=max_length, return_overflowing_tokens=True, stride=0,
                            padding=False, return_attention_mask=True)
        keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded]
        sentences = list(encoded["overflow_to_sample_mapping"])
        tag_ids = examples.tag_ids()
        seen: dict[int, set[int]] = {}
        labels, first_tokens = [], []
        for window, sentence in enumerate(sentences):
            firsts = first_sub_tokens(encoded.word_ids(window), seen.setdefault(sentence, set()))
            row = [IGNORED] * len(encoded["input_ids"][window])
            for position, word in firsts:
                row[position] = tag_ids[sentence][word]
            labels.append(row)
            first_tokens.append(firsts)
        return cls({key: encoded[key] for key in keys}, labels, sentences, first_tokens,
                   tokenizer.pad_token_id or 0)

    def dataset(self, batch_size: int, *, shuffle: bool = False, seed: int | None = None):
        """`(features, labels)` batches padded to each batch's longest row (labels with -100).

        With `shuffle`: epoch after epoch without end, each epoch's order a function of
        `(seed, epoch)` only (`tokenized_dataset.shuffled_batches`), so `fit` can resume."""
        from tfinetune import _environment  # noqa: F401
        import tensorflow as tf

        def ragged(rows: list[list[int]]) -> tf.RaggedTensor:
            lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
            flat = np.fromiter((value for row in rows for value in row), dtype=np.int32,
                               count=int(lengths.sum()))
            return tf.RaggedTensor.from_row_lengths(flat, lengths)

        elements = ({key: ragged(rows) for key, rows in self.features.items()},
                    ragged(self.labels))
        if shuffle:
            from tfinetune.tokenized_dataset import shuffled_batches

            batches = shuffled_batches(elements, len(self.labels), batch_size=batch_size,
                                       seed=seed, repeat=True)
        else:
            batches = tf.data.Dataset.from_tensor_slices(elements).ragged_batch(batch_size)
        pad_token_id = self.pad_token_id

        def pad(batch, labels):
            dense = {key: value.to_tensor(default_value=pad_token_id if key == "input_ids" else 0)
                     for key, value in batch.items()}
            return dense, labels.to_tensor(default_value=IGNORED)

        return batches.map(pad).prefetch(tf.data.AUTOTUNE)


def first_sub_tokens(word_ids: Sequence[int | None], seen: set[int]) -> list[tuple[int, int]]:
    """`(position, word)` of the words whose first sub-token is in this window (`word_ids` of
    the tokenizer), skipping the words in `seen` (started in an earlier window of the same
    sentence), which it updates."""
    firsts = []
    for position, word in enumerate(word_ids):
        if word is not None and word not in seen:
            seen.add(word)
            firsts.append((position, word))
    return firsts


def _evaluate(model: Any, encoding: _Encoding, examples: TokenClassificationExamples,
              batch_size: int) -> tuple[float, EntityMetrics]:
    """Mean cross-entropy over the labelled positions and the entity metrics of the words'
    predicted tags (`O` for a word without tokens: made only of characters the tokenizer
    drops)."""
    total, count = 0.0, 0
    names = examples.tag_set.names
    predicted = [[OUTSIDE] * len(tokens) for tokens in examples.tokens]
    window = 0
    for features, labels in encoding.dataset(batch_size):
        logits = model(features, training=False).logits.numpy().astype(np.float64)
        labels = labels.numpy()
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        mask = labels != IGNORED
        if mask.any():
            picked = np.take_along_axis(log_probabilities, np.where(mask, labels, 0)[..., None],
                                        axis=-1)[..., 0]
            total -= float(picked[mask].sum())
            count += int(mask.sum())
        for row in logits:
            sentence = encoding.sentences[window]
            for position, word in encoding.first_tokens[window]:
                predicted[sentence][word] = names[int(np.argmax(row[position]))]
            window += 1
    loss = total / count if count else 0.0
    return loss, EntityMetrics.compute(examples.tags, predicted)
