"""`Seq2SeqTask`: translation and summarisation with `TFAutoModelForSeq2SeqLM` (T5, BART,
Marian, mT5...)."""

from __future__ import annotations

import logging
import math
import weakref
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from tfinetune.errors import ModelError
from tfinetune.fine_tuning_task import FineTuningTask
from tfinetune.fit_config import FitConfig
from tfinetune.model_source import load_tokenizer
from tfinetune.model_source import resolve_model
from tfinetune.seq2seq_examples import Seq2SeqExamples

logger = logging.getLogger(__name__)

#: Label value the model's loss ignores (padding of the target tokens).
IGNORED_LABEL = -100
#: Validation sets of at least this many batches generate with XLA (see `generate`).
XLA_MIN_BATCHES = 4
#: model → {(max_new_tokens, num_beams): XLA-compiled generate}.
_XLA_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The metrics that go to the epoch logs as `val_<name>`.
EPOCH_LOG_KEYS = ("bleu", "rouge1", "rouge2", "rougeL", "gen_len")


class Seq2SeqTask(FineTuningTask):
    """`fit --task seq2seq`: a target text per source text.

    Training tokenizes `source_prefix + source` (up to `max_length` tokens) and the target
    (`text_target`, up to `max_target_length` tokens, padded with -100 so the loss ignores the
    padding); the model builds its decoder inputs from the labels. Validation generates
    (greedy, or beam search with `num_beams`; at most `max_target_length` new tokens) and
    scores the decoded texts with BLEU and ROUGE-1/2/L (`GenerationMetrics`). The kept epoch is
    the one with the highest `val_bleu`.
    """

    name = "seq2seq"
    pipeline_tag = "text2text-generation"

    def __init__(self, config: FitConfig) -> None:
        super().__init__(config)
        self.train: Seq2SeqExamples | None = None
        self.validation: Seq2SeqExamples | None = None
        self._validation_features = None

    def _read(self, path: str, role: str) -> Seq2SeqExamples:
        return Seq2SeqExamples.read(path, source_column=self.config.source_column,
                                    target_column=self.config.target_column, role=role)

    def read_data(self) -> None:
        self.train = self._read(self.config.train, "training")
        if self.config.validation:
            self.validation = self._read(self.config.validation, "validation")

    @property
    def monitor(self) -> str:
        return "val_bleu"

    def load_model(self) -> tuple[Any, Any]:
        import tf_keras

        source = resolve_model(self.config.model)
        tf_keras.utils.set_random_seed(self.config.seed)
        return load_seq2seq(source, self.config.model)

    def train_dataset(self, tokenizer: Any,
                      batch_size: int | None = None) -> tuple[Any, int]:
        batch_size = batch_size or self.config.batch_size
        features = encode(tokenizer, self.train.sources, self.train.targets, self.config)
        dataset = make_seq2seq_dataset(features, batch_size=batch_size,
                                       pad_token_id=tokenizer.pad_token_id or 0, shuffle=True,
                                       seed=self.config.seed)
        return dataset, math.ceil(len(self.train) / batch_size)

    def prepare_validation(self, tokenizer: Any) -> None:
        if self.validation is None:
            return
        self._tokenizer = tokenizer
        self._validation_features = encode(tokenizer, self.validation.sources,
                                           self.validation.targets, self.config)

    def validate(self, model: Any) -> tuple[float | None, dict[str, Any]] | None:
        if self._validation_features is None:
            return None
        return evaluate_generation(model, self._tokenizer, self._validation_features,
                                   self.validation.targets, self.config,
                                   batch_size=self.config.eval_batch_size)

    def epoch_logs(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {f"val_{key}": float(metrics[key]) for key in EPOCH_LOG_KEYS if key in metrics}

    def model_card_lines(self, metrics: dict[str, Any] | None) -> list[str]:
        config = self.config
        prefix = f" with the prefix `{config.source_prefix!r}`" if config.source_prefix else ""
        generation = ("greedy search" if config.num_beams == 1
                      else f"beam search ({config.num_beams} beams)")
        return [
            (f"Input: `{config.source_column}`{prefix}, up to {config.max_length} tokens. "
             f"Target: `{config.target_column}`, up to {config.max_target_length} tokens."),
            (f"Generation: {generation}, at most {config.max_target_length} new tokens. "
             "Validation metrics: sacrebleu corpus BLEU, ROUGE-1/2/L F-measure (×100)."),
        ]

    @classmethod
    def evaluate_run(cls, run_dir: Path, config: FitConfig, data: Path, *,
                     batch_size: int = 64) -> dict[str, Any]:
        """`loss`, `bleu`, `rouge1`, `rouge2`, `rougeL`, `gen_len` and `count` of the run's
        model on `data` (source and target columns as in training), generating with the run's
        `num_beams` and `max_target_length`."""
        examples = Seq2SeqExamples.read(data, source_column=config.source_column,
                                        target_column=config.target_column, role="evaluation")
        tokenizer, model = load_seq2seq(str(run_dir), str(run_dir))
        features = encode(tokenizer, examples.sources, examples.targets, config)
        loss, metrics = evaluate_generation(model, tokenizer, features, examples.targets,
                                            config, batch_size=batch_size)
        return {"loss": loss, **metrics}


def load_seq2seq(source: str, name: str) -> tuple[Any, Any]:
    """`(tokenizer, model)` of a seq2seq model directory or name.

    Raises:
        ModelError: naming `name` and the cause.
    """
    from transformers import TFAutoModelForSeq2SeqLM

    tokenizer = load_tokenizer(source, name)
    try:
        model = TFAutoModelForSeq2SeqLM.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"Cannot load --model {name!r} as a TensorFlow sequence-to-sequence model. Expected "
            "a Hugging Face model name or directory of an encoder-decoder model type with a TF "
            f"class (T5, mT5, BART, Marian, ...). Received: {error}") from error
    if model.config.decoder_start_token_id is None:
        raise ModelError(
            f"--model {name!r} has no decoder_start_token_id in its config. Expected an "
            "encoder-decoder model that knows how to start decoding. Received: "
            "decoder_start_token_id=None")
    return tokenizer, model


def encode(tokenizer: Any, sources: Sequence[str], targets: Sequence[str] | None,
           config: FitConfig) -> dict[str, list[list[int]]]:
    """Unpadded `input_ids`, `attention_mask` of `source_prefix + source` (at most
    `max_length` tokens) and, with `targets`, `labels` (at most `max_target_length`)."""
    encoded = tokenizer([config.source_prefix + text for text in sources],
                        max_length=config.max_length, truncation=True, padding=False)
    features = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if targets is not None:
        features["labels"] = tokenizer(text_target=list(targets),
                                       max_length=config.max_target_length,
                                       truncation=True, padding=False)["input_ids"]
    return features


def _padded_batches(features: dict[str, list[list[int]]], batch_size: int,
                    pad_token_id: int):
    """`(start, batch)` with every key padded to the batch's longest row (labels with -100)."""
    import numpy as np

    count = len(features["input_ids"])
    for start in range(0, count, batch_size):
        batch = {}
        for key, rows in features.items():
            rows = rows[start:start + batch_size]
            width = max(len(row) for row in rows)
            fill = {"input_ids": pad_token_id, "labels": IGNORED_LABEL}.get(key, 0)
            array = np.full((len(rows), width), fill, dtype=np.int32)
            for i, row in enumerate(rows):
                array[i, :len(row)] = row
            batch[key] = array
        yield start, batch


def make_seq2seq_dataset(features: dict[str, list[list[int]]], *, batch_size: int,
                         pad_token_id: int, shuffle: bool = False, seed: int | None = None):
    """A `tf.data.Dataset` of `(features, labels)` batches, padded per batch (`labels` with
    -100, also in `features` so the model builds its decoder inputs from them).

    With `shuffle`: epoch after epoch without end, each epoch's order a function of
    `(seed, epoch)` only (`tokenized_dataset.shuffled_batches`), so `fit` can resume."""
    import numpy as np
    import tensorflow as tf

    ragged = {}
    for key, rows in features.items():
        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        flat = np.array([token for row in rows for token in row], dtype=np.int32)
        ragged[key] = tf.RaggedTensor.from_row_lengths(flat, lengths)
    if shuffle:
        from tfinetune.tokenized_dataset import shuffled_batches

        batches = shuffled_batches(ragged, len(features["input_ids"]), batch_size=batch_size,
                                   seed=seed, repeat=True)
    else:
        batches = tf.data.Dataset.from_tensor_slices(ragged).ragged_batch(batch_size)

    def pad(batch):
        dense = {key: value.to_tensor(default_value={"input_ids": pad_token_id,
                                                     "labels": IGNORED_LABEL}.get(key, 0))
                 for key, value in batch.items()}
        return dense, dense["labels"]

    return batches.map(pad).prefetch(tf.data.AUTOTUNE)


def generate(model: Any, tokenizer: Any, features: dict[str, list[list[int]]], config: FitConfig,
             *, batch_size: int, use_xla: bool | None = None) -> tuple[list[str], list[int]]:
    """Generated texts (decoded with `skip_special_tokens=True`) and generated token counts
    (special tokens excluded) for every example of `features`, in order.

    `use_xla` (default: when there are at least `XLA_MIN_BATCHES` batches) runs `generate`
    compiled with XLA on batches padded to `batch_size` rows and `input_length` tokens: on
    CPU a compiled call is ~100x faster than eager `generate` (tiny T5: 5 ms instead of 1.2 s
    per batch of 16) but the first call per input length compiles for ~20 s, so small
    validation sets stay eager. Both give the same tokens. If compilation fails (a model or
    generation setting XLA cannot run), generation falls back to eager with a warning.
    """
    import tensorflow as tf

    count = len(features["input_ids"])
    if use_xla is None:
        use_xla = count >= XLA_MIN_BATCHES * batch_size
    special = set(tokenizer.all_special_ids)
    pad = tokenizer.pad_token_id or 0
    texts: list[str] = []
    lengths: list[int] = []
    inputs = {key: features[key] for key in ("input_ids", "attention_mask")}
    for _, batch in _padded_batches(inputs, batch_size, pad):
        sequences = None
        if use_xla:
            try:
                sequences = _xla_generate(model, batch, config, batch_size, pad)
            except (tf.errors.OpError, ValueError, TypeError) as error:
                logger.warning("XLA generation failed (%s); generating eagerly instead",
                               str(error).splitlines()[0][:200])
                use_xla = False
        if sequences is None:
            sequences = model.generate(input_ids=batch["input_ids"],
                                       attention_mask=batch["attention_mask"],
                                       max_new_tokens=config.max_target_length,
                                       num_beams=config.num_beams).numpy()
        texts.extend(tokenizer.batch_decode(sequences, skip_special_tokens=True))
        lengths.extend(sum(1 for token in row[1:] if int(token) not in special)
                       for row in sequences)
    return texts, lengths


def input_length(width: int, max_length: int) -> int:
    """The padded source length of a batch whose longest row has `width` tokens: the next
    power of two (at least 16), at most `max_length` — few lengths, few XLA compilations."""
    return min(max_length, max(16, 1 << max(width - 1, 0).bit_length()))


def _xla_generate(model: Any, batch: dict, config: FitConfig, batch_size: int, pad: int):
    """`model.generate` compiled with XLA on `batch` padded to a fixed shape; numpy rows of
    the real examples."""
    import numpy as np
    import tensorflow as tf

    rows, width = batch["input_ids"].shape
    length = max(width, input_length(width, config.max_length))
    input_ids = np.full((batch_size, length), pad, dtype=np.int32)
    attention_mask = np.zeros((batch_size, length), dtype=np.int32)
    input_ids[:rows, :width] = batch["input_ids"]
    attention_mask[:rows, :width] = batch["attention_mask"]
    attention_mask[rows:, 0] = 1  # padding rows: one (pad) token, so no row is fully masked
    key = (config.max_target_length, config.num_beams)
    functions = _XLA_FUNCTIONS.setdefault(model, {})
    if key not in functions:
        def compiled(ids, mask):
            return model.generate(input_ids=ids, attention_mask=mask,
                                  max_new_tokens=config.max_target_length,
                                  num_beams=config.num_beams)
        functions[key] = tf.function(compiled, jit_compile=True)
    sequences = functions[key](tf.constant(input_ids), tf.constant(attention_mask)).numpy()
    return sequences[:rows]


def evaluate_generation(model: Any, tokenizer: Any, features: dict[str, list[list[int]]],
                        references: Sequence[str], config: FitConfig, *,
                        batch_size: int) -> tuple[float, dict[str, Any]]:
    """`(loss, metrics)`: the mean loss per target token (teacher forcing) and the
    `GenerationMetrics` of the generated texts against `references`."""
    from tfinetune.generation_metrics import GenerationMetrics

    total, tokens = 0.0, 0
    for _, batch in _padded_batches(features, batch_size, tokenizer.pad_token_id or 0):
        output = model(batch, training=False)
        count = int((batch["labels"] != IGNORED_LABEL).sum())
        total += float(output.loss.numpy().mean()) * count
        tokens += count
    texts, lengths = generate(model, tokenizer, features, config, batch_size=batch_size)
    metrics = GenerationMetrics.compute(texts, references, lengths).as_dict()
    logger.debug("Generated %r for %r", texts[:3], list(references[:3]))
    return total / max(tokens, 1), metrics
