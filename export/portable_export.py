"""`export_portable`: `export_model(..., portable=True)`, a SavedModel of core TensorFlow ops.

Stock `tensorflow/serving` images carry an older tensorflow-text than the one tfinetune exports
with, so a model with the tokenizer in its graph may not load there. A portable export leaves
the tokenizer out: its signatures take token ids (see `PortableServingModule`) and the client
tokenises with the tokenizer files in `assets.extra/tokenizer/` (`tokenizer.json`, read by the
`tokenizers` library alone; `serving.Client(..., tokenizer=ClientTokenizer.from_path(...))`,
`tfinetune predict/score --tokenizer`). Everything else (version choice, atomic write, parity
check, `assets.extra/` files) is what `export_model` does for text classifiers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

from export.classifier_serving_module import SERVING_DEFAULT  # noqa: E402
from export.classifier_serving_module import TOKEN_INPUTS  # noqa: E402
from export.errors import ExportError  # noqa: E402
from export.errors import UnsupportedTokenizerError  # noqa: E402
from export.export_result import ExportResult  # noqa: E402
from export.parity_check import default_parity_texts  # noqa: E402
from export.parity_check import parity_pairs  # noqa: E402
from export.portable_parity_check import check_portable_parity  # noqa: E402
from export.portable_serving_module import PortableServingModule  # noqa: E402
from export.run_directory import FIT_CONFIG_FILE  # noqa: E402
from export.run_directory import SUPPORTED_TASK  # noqa: E402
from export.run_directory import RunDirectory  # noqa: E402
from export.warmup_requests import WARMUP_REQUESTS_FILE  # noqa: E402
from export.warmup_requests import example_log  # noqa: E402
from export.warmup_requests import warmup_texts  # noqa: E402
from export.warmup_requests import write_logs  # noqa: E402

logger = logging.getLogger(__name__)

#: Where the client finds the tokenizer, relative to `assets.extra/`.
CLIENT_TOKENIZER_FILE = "tokenizer/tokenizer.json"
#: Task -> "module:Class" of the `TaskExport` of its portable export (other tasks than text
#: classification; `export_model` then writes it as it writes the default task exports).
PORTABLE_TASK_EXPORTS = {
    "token-classification":
        "export.portable_token_classification_export:PortableTokenClassificationExport",
    "seq2seq": "export.portable_seq2seq_export:PortableSeq2SeqExport",
    "question-answering":
        "export.portable_question_answering_export:PortableQuestionAnsweringExport",
}


def export_portable(run: RunDirectory, base: Path, version: int, max_length: int | None,
                    parity_texts: Sequence[str] | None) -> ExportResult:
    """Writes `base/<version>/`: the run's classifier with token-id signatures only (runs of
    the tasks in `PORTABLE_TASK_EXPORTS` are exported by their portable `TaskExport`).

    Called by `export_model(..., portable=True)` once the version is chosen.

    Raises:
        ExportError: The run's task has no portable export.
        UnsupportedTokenizerError: The run's tokenizer has no fast (`tokenizer.json`) version
            or no padding token.
        ParityError: The written tokenizer or SavedModel does not reproduce the run's.
    """
    # Imported here: exporter imports this module lazily (it calls export_portable).
    from export.exporter import ASSETS_EXTRA
    from export.exporter import _resolve_max_length
    from export.exporter import _staged_version
    from export.exporter import _write_assets_extra
    from export.exporter import save_module

    if run.task in PORTABLE_TASK_EXPORTS:
        import importlib

        from export.exporter import _export_task

        module_name, class_name = PORTABLE_TASK_EXPORTS[run.task].split(":")
        export_class = getattr(importlib.import_module(module_name), class_name)
        return _export_task(run, base, version, max_length, parity_texts, export_class)
    if run.task != SUPPORTED_TASK:
        raise ExportError(
            f"No portable export for {run.task} runs yet. Expected a {SUPPORTED_TASK} run "
            f"(single-label, multi-label or regression) or a run of "
            f"{', '.join(sorted(PORTABLE_TASK_EXPORTS))} for --portable. Received: "
            f"task={run.task!r} in {run.path / FIT_CONFIG_FILE}; export it without --portable "
            f"(the tokenizer then runs in the graph, which needs tensorflow-text on the server)")
    model = run.load_model()
    tokenizer = run.load_tokenizer()
    _check_tokenizer(tokenizer, run)
    max_length = _resolve_max_length(run, model, max_length)
    texts = list(parity_texts) if parity_texts is not None else default_parity_texts(max_length)
    pairs = parity_pairs(texts) if run.text_pair else None
    module = PortableServingModule(model, run.labels, text_pair=run.text_pair,
                                   problem_type=run.problem_type, threshold=run.threshold,
                                   pad_token_id=tokenizer.pad_token_id)

    with _staged_version(base, version) as temp_dir:
        save_module(module, temp_dir)
        assets = temp_dir / ASSETS_EXTRA
        _write_assets_extra(assets, run, tokenizer, max_length, version, module.signature_names)
        _mark_portable(assets)
        _write_token_warmup_requests(assets, tokenizer, max_length, text_pair=run.text_pair,
                                     problem_type=run.problem_type)
        difference = check_portable_parity(
            temp_dir, model, tokenizer, texts=texts, text_pairs=pairs, max_length=max_length,
            labels=run.labels, problem_type=run.problem_type, threshold=run.threshold)
    final_dir = base / str(version)
    logger.info("Exported %s as portable version %d to %s (signatures: %s, token ids in; "
                "max_length %d; parity max |difference| %.3g)", run.path, version, final_dir,
                ", ".join(module.signature_names), max_length, difference)
    return ExportResult(path=final_dir, version=version, signatures=module.signature_names,
                        max_abs_difference=difference)


def _check_fast_tokenizer(tokenizer: Any, run: RunDirectory) -> None:
    """Raises `UnsupportedTokenizerError` if `tokenizer` has no fast version (tokenizer.json)."""
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedTokenizerError(
            f"A portable export needs a fast tokenizer: clients tokenise with its tokenizer.json "
            f"(the `tokenizers` library). Expected a tokenizer with a fast version. Received: "
            f"{type(tokenizer).__name__} in {run.path} (no tokenizer.json and no conversion)")


def _check_tokenizer(tokenizer: Any, run: RunDirectory) -> None:
    name = type(tokenizer).__name__
    _check_fast_tokenizer(tokenizer, run)
    if tokenizer.pad_token_id is None:
        raise UnsupportedTokenizerError(
            f"A portable export needs a padding token (clients pad batches of token ids). "
            f"Expected a tokenizer with pad_token set. Received: {name} with pad_token=None in "
            f"{run.path}")
    for side in ("truncation_side", "padding_side"):
        if getattr(tokenizer, side, "right") != "right":
            raise UnsupportedTokenizerError(
                f"A portable export expects truncation and padding on the right. Expected "
                f"{side}='right'. Received: {name} with {side}={getattr(tokenizer, side)!r}")


def _mark_portable(assets: Path) -> None:
    """Adds to `export_config.json` what a client needs to know: token ids in, tokenizer file."""
    from export.exporter import EXPORT_CONFIG_FILE

    path = assets / EXPORT_CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update({"portable": True, "inputs": list(TOKEN_INPUTS),
                   "client_tokenizer": CLIENT_TOKENIZER_FILE})
    if not (assets / CLIENT_TOKENIZER_FILE).is_file():
        raise UnsupportedTokenizerError(
            f"The tokenizer's save_pretrained wrote no tokenizer.json. Expected "
            f"{assets / CLIENT_TOKENIZER_FILE} for clients to tokenise with. Received: "
            f"{sorted(p.name for p in (assets / 'tokenizer').iterdir())}")
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _write_token_warmup_requests(assets: Path, tokenizer: Any, max_length: int, *,
                                 text_pair: bool, problem_type: str) -> Path:
    """`tf_serving_warmup_requests` with token ids: Predict on `serving_default` with batches
    of one, two and all warm-up texts (one longer than `max_length`), then one Classify (or
    Regress) over all of them as tf.Examples."""
    texts = warmup_texts(max_length)
    pairs = [*texts[1:], *texts[:1]] if text_pair else None
    logs = []
    for size in (1, 2, len(texts)):
        encoded = tokenizer(texts[:size], pairs[:size] if pairs else None, padding=True,
                            truncation=True, max_length=max_length, return_tensors="np")
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = SERVING_DEFAULT
        for name in TOKEN_INPUTS:
            values = encoded.get(name, 0 * encoded["input_ids"])
            request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=tf.int32))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    logs.append(example_log(token_examples(tokenizer, texts, pairs, max_length), problem_type))
    return write_logs(assets / WARMUP_REQUESTS_FILE, logs)


def token_examples(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None,
                   max_length: int) -> list[tf.train.Example]:
    """The `tf.Example`s a portable `classify`/`regress` takes: `input_ids` and
    `token_type_ids` int64 lists per input (no padding)."""
    encoded = tokenizer(list(texts), list(pairs) if pairs else None, truncation=True,
                        max_length=max_length)
    examples = []
    for i, ids in enumerate(encoded["input_ids"]):
        types = encoded["token_type_ids"][i] if "token_type_ids" in encoded else [0] * len(ids)
        example = tf.train.Example()
        example.features.feature["input_ids"].int64_list.value.extend(ids)
        example.features.feature["token_type_ids"].int64_list.value.extend(types)
        examples.append(example)
    return examples
