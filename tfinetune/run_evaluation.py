"""`RunEvaluation`: every metric of a fine-tuned run on a labelled file, computed in-process."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tfinetune import _environment  # noqa: F401
from tfinetune.errors import ModelError
from tfinetune.errors import RunDirError
from tfinetune.fit_config import FitConfig
from tfinetune.label_set import LabelSet
from tfinetune.problem_type import ProblemType
from tfinetune.text_classification_examples import TextClassificationExamples


@dataclasses.dataclass(frozen=True)
class RunEvaluation:
    """The metrics of a run directory's model on one labelled file.

    Attributes:
        run_dir: The evaluated run.
        data: The labelled file.
        loss: Mean cross-entropy.
        metrics: The problem type's metrics: `ClassificationMetrics` (single-label),
            `MultiLabelMetrics` or `RegressionMetrics`.
    """

    run_dir: Path
    data: Path
    loss: float
    metrics: Any

    def as_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "data": str(self.data), "loss": self.loss,
                **self.metrics.as_dict()}

    @classmethod
    def compute(cls, run_dir: str | Path, data: str | Path, *, batch_size: int = 64,
                text_column: str | None = None, text_pair_column: str | None = None,
                label_column: str | None = None) -> "RunEvaluation":
        """Evaluates `run_dir` (as written by `tfinetune fit`) on `data`.

        Columns default to those the run was trained with (its `fit_config.yaml`). Every row is
        checked first; a label the run does not know is an error naming the file and row.

        Raises:
            RunDirError: `run_dir` is not a finished run.
            DataError: the file, a column or a row is bad.
            ModelError: the model or tokenizer cannot be loaded.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "fit_config.yaml").is_file() or not (run_dir / "labels.json").is_file():
            raise RunDirError(
                f"Not a finished run directory. Expected fit_config.yaml and labels.json (written "
                f"by `tfinetune fit`) in {run_dir}. Received: {run_dir}")
        config = FitConfig.load(run_dir / "fit_config.yaml")
        labels = LabelSet.load(run_dir)
        pair_column = text_pair_column or config.text_pair_column
        problem_type = ProblemType(config.problem_type, threshold=config.threshold)
        examples = TextClassificationExamples.read(
            data, text_column=text_column or config.text_column,
            label_column=label_column or config.label_column, text_pair_column=pair_column,
            labels=None if config.problem_type == "regression" else labels, role="evaluation",
            problem_type=config.problem_type, label_delimiter=config.label_delimiter)

        from transformers import AutoTokenizer

        from export.dense_head import load_classifier
        from tfinetune.tokenized_dataset import make_dataset
        from tfinetune.tokenized_dataset import tokenize
        from tfinetune.validation_metrics_callback import evaluate

        try:
            tokenizer = AutoTokenizer.from_pretrained(run_dir)
            # DenseHeadClassifier for `--head-hidden-sizes` runs (marked in config.json).
            model = load_classifier(run_dir)
        except (OSError, ValueError) as error:
            raise ModelError(f"Cannot load the model of {run_dir}: {error}") from error
        dataset = make_dataset(
            tokenize(tokenizer, examples.texts, examples.text_pairs, config.max_length),
            examples.targets, batch_size=batch_size, pad_token_id=tokenizer.pad_token_id or 0)
        loss, metrics = evaluate(model, dataset, examples.targets, labels.names, problem_type)
        return cls(run_dir, Path(data), loss, metrics)
