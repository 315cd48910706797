"""The tasks of `fit --task`, each a `FineTuningTask` subclass imported on first use."""

from __future__ import annotations

import importlib

from tfinetune.fit_config import FitConfig
from tfinetune.fit_config import TASKS

#: Task name → "module:Class" of its `FineTuningTask`.
TASK_CLASSES = {
    "text-classification": "tfinetune.text_classification_task:TextClassificationTask",
    "token-classification": "tfinetune.token_classification_task:TokenClassificationTask",
    "question-answering": "tfinetune.question_answering_task:QuestionAnsweringTask",
    "seq2seq": "tfinetune.seq2seq_task:Seq2SeqTask",
}
assert tuple(TASK_CLASSES) == TASKS


def task_class(name: str) -> type:
    """The `FineTuningTask` subclass of task `name` (one of `TASKS`)."""
    module_name, class_name = TASK_CLASSES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def task_for(config: FitConfig):
    """The task object for a run's config."""
    return task_class(config.task)(config)
