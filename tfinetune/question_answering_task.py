"""`QuestionAnsweringTask`: extractive question answering (SQuAD v1.1 / v2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tfinetune.errors import ModelError
from tfinetune.fine_tuning_task import FineTuningTask
from tfinetune.fit_config import FitConfig
from tfinetune.model_source import load_tokenizer
from tfinetune.model_source import resolve_model
from tfinetune.question_answering_examples import QuestionAnsweringExamples


class QuestionAnsweringTask(FineTuningTask):
    """`fit --task question-answering`: answer spans cut from a context, with
    `TFAutoModelForQuestionAnswering`.

    Contexts longer than one window of `max_length` tokens are split into windows overlapping
    by `doc_stride` tokens; every window is a training example (its answer's start/end tokens,
    or [CLS] when the answer lies outside it), so an epoch counts windows, not questions.
    Validation decodes the best span of each question over its windows (`SpanDecoder`) and
    scores it with SQuAD exact match and F1 (percentages); the kept epoch is the best `val_f1`.
    """

    name = "question-answering"
    pipeline_tag = "question-answering"

    def __init__(self, config: FitConfig) -> None:
        super().__init__(config)
        self.train: QuestionAnsweringExamples | None = None
        self.validation: QuestionAnsweringExamples | None = None
        self._validation_features = None

    def _read(self, path: str | Path, role: str) -> QuestionAnsweringExamples:
        config = self.config
        return QuestionAnsweringExamples.read(
            path, question_column=config.question_column, context_column=config.context_column,
            answers_column=config.answers_column,
            version_2_with_negative=config.version_2_with_negative, role=role)

    def read_data(self) -> None:
        self.train = self._read(self.config.train, "training")
        if self.config.validation:
            self.validation = self._read(self.config.validation, "validation")

    def load_model(self) -> tuple[Any, Any]:
        config = self.config
        source = resolve_model(config.model)
        tokenizer = _load_tokenizer(source, config.model)
        import tf_keras
        from transformers import TFAutoModelForQuestionAnswering

        tf_keras.utils.set_random_seed(config.seed)
        try:
            model = TFAutoModelForQuestionAnswering.from_pretrained(source)
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(
                f"Cannot load --model {config.model!r} as a TensorFlow question-answering model. "
                "Expected a Hugging Face model name or directory of a model type with a TF "
                f"question-answering class (BERT, DistilBERT, RoBERTa, ...). Received: {error}"
            ) from error
        return tokenizer, model

    def _features(self, tokenizer: Any, examples: QuestionAnsweringExamples):
        from tfinetune.question_answering_features import QuestionAnsweringFeatures

        return QuestionAnsweringFeatures.build(
            tokenizer, examples.questions, examples.contexts, max_length=self.config.max_length,
            doc_stride=self.config.doc_stride,
            answers=[(example.answer_texts, example.answer_starts) for example in examples],
            locations=[example.location for example in examples])

    def train_dataset(self, tokenizer: Any,
                      batch_size: int | None = None) -> tuple[Any, int]:
        batch_size = batch_size or self.config.batch_size
        config = self.config
        features = self._features(tokenizer, self.train)
        dataset = features.dataset(batch_size=batch_size,
                                   pad_token_id=tokenizer.pad_token_id or 0, shuffle=True,
                                   seed=config.seed)
        return dataset, math.ceil(len(features) / batch_size)

    def prepare_validation(self, tokenizer: Any) -> None:
        if self.validation is not None:
            self._validation_features = self._features(tokenizer, self.validation)

    def validate(self, model: Any) -> tuple[float | None, dict[str, Any]] | None:
        if self._validation_features is None:
            return None
        return _evaluate(model, self._validation_features, self.validation, self.config,
                         self.config.eval_batch_size)

    def epoch_logs(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {f"val_{key}": float(metrics[key])
                for key in ("exact_match", "f1", "has_answer_f1", "no_answer_f1")
                if metrics.get(key) is not None}

    @property
    def monitor(self) -> str:
        return "val_f1"

    def model_card_lines(self, metrics: dict[str, Any] | None) -> list[str]:
        config = self.config
        return [
            "Extractive question answering (SQuAD"
            + (" v2: questions may have no answer" if config.version_2_with_negative else "")
            + f"): `{config.question_column}` + `{config.context_column}` → an answer span.",
            (f"Windows of {config.max_length} tokens over long contexts, overlapping by "
             f"{config.doc_stride}; answers of at most {config.max_answer_length} tokens. "
             "Metrics: SQuAD exact match and F1 (percent)."),
        ]

    @classmethod
    def evaluate_run(cls, run_dir: Path, config: FitConfig, data: Path, *,
                     batch_size: int = 64) -> dict[str, Any]:
        from transformers import TFAutoModelForQuestionAnswering

        task = cls(config)
        examples = task._read(data, "evaluation")
        tokenizer = _load_tokenizer(str(run_dir), str(run_dir))
        try:
            model = TFAutoModelForQuestionAnswering.from_pretrained(str(run_dir))
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(f"Cannot load the question-answering model of {run_dir}. "
                             f"Expected a run of `tfinetune fit --task question-answering`. "
                             f"Received: {error}") from error
        loss, metrics = _evaluate(model, task._features(tokenizer, examples), examples, config,
                                  batch_size)
        return {"run_dir": str(run_dir), "data": str(data), "loss": loss, **metrics}


def _load_tokenizer(source: str, name: str) -> Any:
    tokenizer = load_tokenizer(source, name)
    if not tokenizer.is_fast:
        raise ModelError(
            "Question answering needs a fast (Rust) tokenizer for character offsets. Expected "
            f"a tokenizer.json or a model type with a fast tokenizer. Received: "
            f"{type(tokenizer).__name__} for {name!r}")
    return tokenizer


def _evaluate(model: Any, features: Any, examples: QuestionAnsweringExamples,
              config: FitConfig, batch_size: int) -> tuple[float, dict[str, Any]]:
    """`(loss, SQuAD metrics)`: loss = mean over windows of (start CE + end CE) / 2."""
    from tfinetune.span_decoder import SpanDecoder
    from tfinetune.squad_metrics import SquadMetrics

    start_logits, end_logits = features.logits(model, batch_size=batch_size)
    losses = [(_cross_entropy(start, first) + _cross_entropy(end, last)) / 2
              for start, end, first, last in zip(start_logits, end_logits,
                                                  features.start_positions,
                                                  features.end_positions)]
    decoder = SpanDecoder(config.max_answer_length,
                          version_2_with_negative=config.version_2_with_negative)
    answers = decoder.decode(examples.contexts, features.example_ids, features.offsets,
                             start_logits, end_logits)
    metrics = SquadMetrics.compute(examples.gold_answers, [answer.text for answer in answers])
    return float(np.mean(losses)), metrics.as_dict()


def _cross_entropy(logits: np.ndarray, target: int) -> float:
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max()
    return float(top + np.log(np.exp(logits - top).sum()) - logits[target])
