"""Runs fitted with `head_hidden_sizes`, shared by the tfinetune and export dense-head tests.

Not a pytest plugin: the test modules call `fitted_head_run` from their own fixtures. Results
are cached for the whole test process, so each distinct run is fitted once per session even
when both test modules use it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import tfinetune
from tests.conftest import VOCAB

HEAD_SIZES = (16, 8)
#: Encoder weights drawn with this std (BERT's 0.02 makes a tiny random encoder's outputs
#: almost input-independent, so comparing logits would prove little).
SENSITIVE_INIT = 0.5
_RUNS: dict[tuple, "HeadRun"] = {}
_BASES: dict[str, Path] = {}


@dataclasses.dataclass(frozen=True)
class HeadRun:
    """A finished run and what fit had in memory.

    Attributes:
        run_dir: The run directory `tfinetune.fit` wrote.
        model: The in-memory model fit trained and saved (kept weights loaded).
        initial: Every variable's value when training started, by name without the model's
            own prefix (`bert/...`, `head_hidden_0/kernel:0`, ...).
        trainable: The names (same form) of the variables Keras trained.
    """

    run_dir: Path
    model: Any
    initial: dict[str, np.ndarray]
    trainable: tuple[str, ...]


def variable_key(variable) -> str:
    """A variable's name without the model prefix (`dense_head_classifier_3/`)."""
    return variable.name.split("/", 1)[1]


def values_by_name(model) -> dict[str, np.ndarray]:
    return {variable_key(variable): variable.numpy() for variable in model.variables}


def fitted_head_run(tmp_path_factory, model_dir: Path, train: Path, *, name: str,
                    **options) -> HeadRun:
    """`tfinetune.fit` of `model_dir` on `train` with a dense head (cached per options)."""
    import tf_keras

    key = (str(model_dir), str(train), name, tuple(sorted(options.items())))
    if key in _RUNS:
        return _RUNS[key]
    seen: dict[str, Any] = {}

    class Recorder(tf_keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["initial"] = values_by_name(self.model)
            seen["trainable"] = tuple(variable_key(v) for v in self.model.trainable_variables)
            seen["model"] = self.model

    run_dir = tmp_path_factory.mktemp("dense-head") / name
    settings = {"epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "max_length": 32,
                "seed": 0, "head_hidden_sizes": HEAD_SIZES, **options}
    tfinetune.fit(tfinetune.FitConfig(model=str(model_dir), train=str(train),
                                      output_dir=str(run_dir), **settings),
                  callbacks=[Recorder()])
    run = HeadRun(run_dir, seen["model"], seen["initial"], seen["trainable"])
    _RUNS[key] = run
    return run


def sensitive_base_dir(tmp_path_factory, tiny_model_dir: Path, model_type: str) -> Path:
    """A pretrained-style tiny `bert` or `distilbert` base model (2 layers, hidden 32, the tiny
    BERT's WordPiece vocabulary) whose outputs clearly depend on the input (cached)."""
    if model_type in _BASES:
        return _BASES[model_type]
    import tf_keras
    from transformers import BertConfig
    from transformers import BertTokenizerFast
    from transformers import DistilBertConfig
    from transformers import DistilBertTokenizerFast
    from transformers import TFBertModel
    from transformers import TFDistilBertModel

    directory = tmp_path_factory.mktemp(f"sensitive-{model_type}")
    shutil.copyfile(tiny_model_dir / "vocab.txt", directory / "vocab.txt")
    tf_keras.utils.set_random_seed(0)
    if model_type == "distilbert":
        tokenizer = DistilBertTokenizerFast(vocab_file=str(directory / "vocab.txt"))
        model = TFDistilBertModel(DistilBertConfig(
            vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
            max_position_embeddings=128, initializer_range=SENSITIVE_INIT))
    else:
        tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"))
        model = TFBertModel(BertConfig(
            vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128,
            initializer_range=SENSITIVE_INIT))
    tokenizer.save_pretrained(directory)
    model(model.dummy_inputs)
    model.save_pretrained(directory)
    _BASES[model_type] = directory
    return directory
