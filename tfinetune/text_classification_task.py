"""`TextClassificationTask`: single-label, multi-label and regression text classifiers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tfinetune.errors import ModelError
from tfinetune.fine_tuning_task import FineTuningTask
from tfinetune.fit_config import FitConfig
from tfinetune.label_set import LabelSet
from tfinetune.model_source import load_tokenizer
from tfinetune.model_source import resolve_model
from tfinetune.problem_type import ProblemType
from tfinetune.text_classification_examples import TextClassificationExamples


class TextClassificationTask(FineTuningTask):
    """`fit --task text-classification`: a label (or label set, or number) per text or pair,
    with `TFAutoModelForSequenceClassification` (plus `--head-hidden-sizes` dense layers)."""

    name = "text-classification"
    pipeline_tag = "text-classification"

    def __init__(self, config: FitConfig) -> None:
        super().__init__(config)
        self.problem_type = ProblemType(config.problem_type, threshold=config.threshold)
        self.labels: LabelSet | None = None
        self._validation_dataset = None

    def _columns(self) -> dict[str, Any]:
        config = self.config
        return {"text_column": config.text_column, "label_column": config.label_column,
                "text_pair_column": config.text_pair_column,
                "problem_type": config.problem_type, "label_delimiter": config.label_delimiter}

    def read_data(self) -> None:
        self.train = TextClassificationExamples.read(self.config.train, role="training",
                                                     **self._columns())
        self.labels = self.train.labels or LabelSet.for_regression(self.config.label_column)
        if self.config.validation:
            self.validation = TextClassificationExamples.read(
                self.config.validation, labels=self.train.labels, role="validation",
                **self._columns())

    @property
    def label_names(self) -> list[str]:
        return list(self.labels.names)

    @property
    def monitor(self) -> str:
        return self.problem_type.monitor

    def compile_metrics(self) -> list:
        return self.problem_type.compile_metrics

    def load_model(self) -> tuple[Any, Any]:
        config = self.config
        source = resolve_model(config.model)
        tokenizer = load_tokenizer(source, config.model)
        model = self._load_classifier(source)
        if self.problem_type.training_loss() is not None:
            # transformers' TF classifiers know only cross-entropy and MSE: give this model the
            # problem type's loss (its call passes `labels` and `logits` here).
            model.hf_compute_loss = self.problem_type.training_loss()
        if config.freeze_backbone or config.freeze_layers:
            from tfinetune.backbone_freezer import BackboneFreezer

            freezer = BackboneFreezer(model)
            if config.freeze_backbone:
                freezer.freeze_backbone()
            else:
                freezer.freeze_layers(config.freeze_layers)
        return tokenizer, model

    def _load_classifier(self, source: str) -> Any:
        import tf_keras
        from transformers import AutoConfig
        from transformers import TFAutoModelForSequenceClassification

        config, labels = self.config, self.labels
        try:
            model_config = AutoConfig.from_pretrained(
                source, num_labels=self.problem_type.num_labels(labels.names),
                id2label=labels.id2label, label2id=labels.label2id,
                problem_type=self.problem_type.hf_problem_type)
            if config.classifier_dropout is not None:
                _set_classifier_dropout(model_config, config.classifier_dropout)
            tf_keras.utils.set_random_seed(config.seed)
            if config.head_hidden_sizes:
                from export.dense_head import load_with_dense_head

                return load_with_dense_head(source, model_config, config.head_hidden_sizes)
            # Fine-tuning a dense-head run without --head-hidden-sizes: a plain classifier,
            # whose config must not keep the old head's description.
            for name in ("tfinetune_head", "head_hidden_sizes"):
                if hasattr(model_config, name):
                    delattr(model_config, name)
            if getattr(model_config, "architectures", None) == ["DenseHeadClassifier"]:
                model_config.architectures = None
            return TFAutoModelForSequenceClassification.from_pretrained(
                source, config=model_config, ignore_mismatched_sizes=True)
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(
                f"Cannot load --model {config.model!r} as a TensorFlow sequence classifier. "
                "Expected a Hugging Face model name or directory of a model type with a TF class "
                f"(BERT, DistilBERT, RoBERTa, ...). Received: {error}") from error

    def train_dataset(self, tokenizer: Any,
                      batch_size: int | None = None) -> tuple[Any, int]:
        batch_size = batch_size or self.config.batch_size
        from tfinetune import tokenized_dataset
        from tfinetune.tokenized_dataset import make_dataset
        from tfinetune.tokenized_dataset import tokenize

        config = self.config
        features = tokenize(tokenizer, self.train.texts, self.train.text_pairs, config.max_length)
        dataset = make_dataset(features, self.train.targets, batch_size=batch_size,
                               pad_token_id=tokenizer.pad_token_id or 0, shuffle=True,
                               seed=config.seed,
                               length_window=tokenized_dataset.TRAIN_LENGTH_WINDOW,
                               length_granularity=tokenized_dataset.TRAIN_LENGTH_GRANULARITY,
                               repeat=True)
        return dataset, math.ceil(len(self.train) / batch_size)

    def prepare_validation(self, tokenizer: Any) -> None:
        if self.validation is None:
            return
        from tfinetune.tokenized_dataset import make_dataset
        from tfinetune.tokenized_dataset import tokenize

        self._validation_dataset = make_dataset(
            tokenize(tokenizer, self.validation.texts, self.validation.text_pairs,
                     self.config.max_length),
            self.validation.targets, batch_size=self.config.eval_batch_size,
            pad_token_id=tokenizer.pad_token_id or 0)

    def validate(self, model: Any) -> tuple[float | None, dict[str, Any]] | None:
        if self._validation_dataset is None:
            return None
        from tfinetune.validation_metrics_callback import evaluate

        loss, metrics = evaluate(model, self._validation_dataset, self.validation.targets,
                                 self.labels.names, self.problem_type)
        return loss, metrics.as_dict()

    def epoch_logs(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {f"val_{key}": float(metrics[key]) for key in self.problem_type.epoch_log_keys
                if metrics.get(key) is not None}

    def save_files(self, directory: Path) -> None:
        self.labels.save(directory)

    def model_card_lines(self, metrics: dict[str, Any] | None) -> list[str]:
        config, labels = self.config, self.labels.names
        return [
            (f"Target: `{labels[0]}` (regression)." if config.problem_type == "regression" else
             f"Labels (class id order, {config.problem_type}): "
             f"{', '.join(f'`{label}`' for label in labels)}."),
            f"Input: `{config.text_column}`"
            + (f" + `{config.text_pair_column}`" if config.text_pair_column else "")
            + f", up to {config.max_length} tokens."
            + (f" Head: dense {list(config.head_hidden_sizes)} before the output layer."
               if config.head_hidden_sizes else ""),
        ]

    @classmethod
    def evaluate_run(cls, run_dir: Path, config: FitConfig, data: Path, *,
                     batch_size: int = 64) -> dict[str, Any]:
        from tfinetune.run_evaluation import RunEvaluation

        return RunEvaluation.compute(run_dir, data, batch_size=batch_size).as_dict()


def _set_classifier_dropout(model_config, rate: float) -> None:
    """Sets the head's dropout under the name the architecture uses (saved in config.json)."""
    for name in ("classifier_dropout", "seq_classif_dropout"):
        if hasattr(model_config, name):
            setattr(model_config, name, rate)
            return
    raise ModelError(
        f"--classifier-dropout is not supported for model type {model_config.model_type!r}: "
        "its config has no classifier dropout setting.")
