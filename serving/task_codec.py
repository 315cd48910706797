"""`TaskCodec`: how `Client` talks to the `serving_default` signature of one task's export
(tasks other than text classification, which `Client` handles itself)."""

from __future__ import annotations

import abc
import functools
import importlib
from collections.abc import Mapping, Sequence

import numpy as np

from serving.prediction import Prediction

#: Task name → "module:Class" of its `TaskCodec`, in detection order.
TASK_CODECS = {
    "token-classification": "serving.token_classification_codec:TokenClassificationCodec",
    "question-answering": "serving.question_answering_codec:QuestionAnsweringCodec",
    "seq2seq": "serving.seq2seq_codec:Seq2SeqCodec",
}


@functools.cache
def task_codecs() -> tuple["TaskCodec", ...]:
    """One instance of every task codec whose module exists, in `TASK_CODECS` order (built
    once: `Client` looks the codec up on every response)."""
    codecs = []
    for spec in TASK_CODECS.values():
        module_name, class_name = spec.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        codecs.append(getattr(module, class_name)())
    return tuple(codecs)


def codec_for_outputs(aliases: Sequence[str]) -> "TaskCodec | None":
    """The codec whose `outputs` are all among `aliases`, or None (a text classifier)."""
    aliases = set(aliases)
    for codec in task_codecs():
        if set(codec.outputs) <= aliases:
            return codec
    return None


class TaskCodec(abc.ABC):
    """Request inputs and response decoding of one task's `serving_default` signature.

    Attributes:
        task: The task name (`fit --task`).
        outputs: Output aliases that identify the task (all present in its signature).
        inputs: Input aliases: the first takes `predict`'s `texts`, the optional second its
            `text_pairs` (e.g. `("question", "context")`).
    """

    task: str = ""
    outputs: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("text",)

    @abc.abstractmethod
    def predictions(self, outputs: Mapping[str, np.ndarray], texts: Sequence[str],
                    text_pairs: Sequence[str] | None) -> list[Prediction]:
        """One `Prediction` per input from the response's output arrays (by alias); `texts`
        and `text_pairs` are the inputs sent (e.g. to turn byte offsets into character offsets
        and cut entity or answer text out of them).

        Raises:
            ValueError: an output has the wrong shape or content (the client turns it into
                an INTERNAL `ServingError` naming the model).
        """
