"""`export_model`: a fine-tuned run directory → a TF Serving version directory, atomically."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from export import _environment  # noqa: F401  (must run before TF/transformers imports)

import tensorflow as tf  # noqa: E402

from export import saved_model_signatures  # noqa: E402
from export.classifier_serving_module import CLASSIFY  # noqa: E402
from export.classifier_serving_module import REGRESS  # noqa: E402
from export.classifier_serving_module import ClassifierServingModule  # noqa: E402
from export.errors import ExportError  # noqa: E402
from export.errors import RunDirError  # noqa: E402
from export.errors import VersionError  # noqa: E402
from export.export_result import ExportResult  # noqa: E402
from export.in_graph_tokenizer import InGraphTokenizer  # noqa: E402
from export.parity_check import check_parity  # noqa: E402
from export.parity_check import default_parity_texts  # noqa: E402
from export.parity_check import parity_pairs  # noqa: E402
from export.run_directory import FIT_CONFIG_FILE  # noqa: E402
from export.run_directory import LABELS_FILE  # noqa: E402
from export.run_directory import SUPPORTED_TASK  # noqa: E402
from export.run_directory import RunDirectory  # noqa: E402
from export.warmup_requests import write_warmup_requests  # noqa: E402

logger = logging.getLogger(__name__)

ASSETS_EXTRA = "assets.extra"
EXPORT_CONFIG_FILE = "export_config.json"
TOKENIZER_DIR = "tokenizer"
TEMP_PREFIX = ".tmp-export-"
_VERSION_NAME = re.compile(r"[0-9]+")
_TEMP_NAME = re.compile(
    re.escape(TEMP_PREFIX) + r"[0-9]+-(?P<host>.+)-(?P<pid>[0-9]+)-[0-9a-f]{8}")


def export_model(
    run_dir: str | Path,
    base_path: str | Path,
    *,
    version: int | None = None,
    max_length: int | None = None,
    parity_texts: Sequence[str] | None = None,
    portable: bool = False,
) -> ExportResult:
    """Exports a fine-tuned run as a SavedModel with its tokenizer in the graph.

    Text classifiers are described below; runs of the other tasks (token classification,
    question answering, seq2seq) are exported by their `TaskExport` (see `export.task_export`)
    with the same version handling, atomic write and parity check.

    Writes `base_path/<version>/` the way TF Serving expects: the SavedModel is written to a
    temporary directory beside it (`base_path/.tmp-export-<version>-<host>-<pid>-<random>`, a
    name TF Serving ignores), checked, then renamed, so a server polling `base_path` never sees a
    half-written version. On any failure the temporary directory is removed and `base_path` is
    left as it was; when the process is killed before it can clean up, the next export into
    `base_path` removes the leftover (see `remove_leftovers`).

    Signatures: `serving_default` (`text` [, `text_pair`] strings → `probabilities`, `label_id`,
    `label`, `classes`), `tokens` (`input_ids`, `attention_mask`, `token_type_ids` →
    `logits`, `probabilities`) and `classify` (serialized `tf.Example`s → `classes`, `scores`;
    method name `tensorflow/serving/classify`). The run's `problem_type` changes the outputs:
    multi-label runs give `scores` (sigmoid), `classes` and `predicted` (score >= the run's
    threshold) instead; regression runs give `value` and a `regress` signature (`inputs` →
    `outputs`, method `tensorflow/serving/regress`) instead of `classify` (see
    `ClassifierServingModule`). `assets.extra/` holds `labels.json`, `export_config.json`
    (with `problem_type` and `threshold`), a copy of `fit_config.yaml`, the tokenizer files and
    `tf_serving_warmup_requests` (Predict and Classify or Regress requests that TF Serving
    replays before serving the version).

    Example:

    ```python
    import export

    result = export.export_model("runs/sst2", "models/sst2")
    print(result.path)  # models/sst2/1
    ```

    Args:
        run_dir: A run directory written by `tfinetune fit`.
        base_path: The model's base path (the directory TF Serving polls); created if missing
            (and removed again if the export fails).
        version: The version to write; default: one above the highest integer directory in
            `base_path`, or 1. An existing version is never overwritten.
        max_length: Maximum tokens per input (special tokens included); default: `max_length`
            from the run's `fit_config.yaml`. At most the model's `max_position_embeddings`.
        parity_texts: Texts for the parity check; default: a fixed varied set plus texts longer
            than `max_length`. For pair models the second segments are the texts rotated by one.
        portable: Leave the tokenizer out of the graph, for stock TF Serving images (core
            TensorFlow ops only): every signature takes token ids and clients tokenise with
            `assets.extra/tokenizer/tokenizer.json` (see `export.portable_export`). Text
            classification runs and the tasks of `portable_export.PORTABLE_TASK_EXPORTS`.

    Returns:
        The written path, version, signature names and the parity check's max difference.

    Raises:
        ExportError: The run directory is invalid (`RunDirError`), the tokenizer is not
            WordPiece (`UnsupportedTokenizerError`), the version exists or is invalid
            (`VersionError`), or the reloaded SavedModel does not match the in-memory model
            (`ParityError`).
    """
    if parity_texts is not None and (
        isinstance(parity_texts, str)
        or not parity_texts
        or not all(isinstance(text, str) for text in parity_texts)
    ):
        raise ExportError(
            f"Invalid parity_texts. Expected a non-empty sequence of strings. Received: "
            f"{parity_texts!r}"
        )
    run = RunDirectory.open(run_dir)
    base = _check_base_path(base_path)
    version = _choose_version(base, version)
    if portable:
        from export.portable_export import export_portable

        return export_portable(run, base, version, max_length, parity_texts)
    if run.task != SUPPORTED_TASK:
        return _export_task(run, base, version, max_length, parity_texts)
    model = run.load_model()
    tokenizer = run.load_tokenizer()
    max_length = _resolve_max_length(run, model, max_length)
    texts = list(parity_texts) if parity_texts is not None else default_parity_texts(max_length)
    pairs = parity_pairs(texts) if run.text_pair else None

    in_graph_tokenizer = InGraphTokenizer.from_hf_tokenizer(tokenizer, max_length=max_length)
    module = ClassifierServingModule(model, in_graph_tokenizer, run.labels, text_pair=run.text_pair,
                                     problem_type=run.problem_type, threshold=run.threshold)

    with _staged_version(base, version) as temp_dir:
        save_module(module, temp_dir)
        _write_assets_extra(temp_dir / ASSETS_EXTRA, run, tokenizer, max_length, version,
                            module.signature_names)
        difference = check_parity(
            temp_dir,
            model,
            tokenizer,
            texts=texts,
            text_pairs=pairs,
            max_length=max_length,
            labels=run.labels,
            problem_type=run.problem_type,
            threshold=run.threshold,
        )
    final_dir = base / str(version)
    logger.info(
        "Exported %s as version %d to %s (signatures: %s; max_length %d; parity max |difference| "
        "%.3g)",
        run.path,
        version,
        final_dir,
        ", ".join(module.signature_names),
        max_length,
        difference,
    )
    return ExportResult(
        path=final_dir,
        version=version,
        signatures=module.signature_names,
        max_abs_difference=difference,
    )


def _export_task(run: RunDirectory, base: Path, version: int, max_length: int | None,
                 parity_texts: Any, export_class: type | None = None) -> ExportResult:
    """Exports a run of a task other than text classification through its `TaskExport`
    (`export_class`, e.g. a portable one; default: the task's)."""
    from export.task_export import task_export_class

    export_class = export_class or task_export_class(run.task)
    task_export = export_class(run, max_length=max_length, parity_texts=parity_texts)
    with _staged_version(base, version) as temp_dir:
        task_export.save(temp_dir)
        assets = temp_dir / ASSETS_EXTRA
        assets.mkdir(parents=True, exist_ok=True)
        extra = task_export.write_assets(assets)
        if run.labels:
            (assets / LABELS_FILE).write_text(
                json.dumps({"labels": list(run.labels)}, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(run.path / FIT_CONFIG_FILE, assets / FIT_CONFIG_FILE)
        config = {
            "task": run.task,
            "labels": list(run.labels),
            "max_length": task_export.max_length,
            "version": version,
            "run_dir": str(run.path.resolve()),
            "base_model": run.fit_config.get("model"),
            "signatures": list(task_export.signature_names),
            **extra,
            **_provenance(),
        }
        (assets / EXPORT_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n",
                                                 encoding="utf-8")
        difference = task_export.check_parity(temp_dir)
    final_dir = base / str(version)
    logger.info("Exported %s (%s) as version %d to %s (signatures: %s; parity max |difference| "
                "%.3g)", run.path, run.task, version, final_dir,
                ", ".join(task_export.signature_names), difference)
    return ExportResult(path=final_dir, version=version,
                        signatures=tuple(task_export.signature_names),
                        max_abs_difference=difference)


def _provenance() -> dict[str, Any]:
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tfinetune_version": _distribution_version("tfinetune"),
        "tensorflow_version": tf.__version__,
        "tensorflow_text_version": _distribution_version("tensorflow-text"),
        "transformers_version": _distribution_version("transformers"),
    }


def save_module(module: ClassifierServingModule, export_dir: Path) -> None:
    """Saves the module with its three signatures and marks `classify` as a classification
    (or `regress` as a regression)."""
    tf.saved_model.save(module, str(export_dir), signatures=module.signatures())
    if REGRESS in module.signature_names:
        saved_model_signatures.set_method_name(
            export_dir, REGRESS, saved_model_signatures.REGRESS_METHOD_NAME
        )
    else:
        saved_model_signatures.set_method_name(
            export_dir, CLASSIFY, saved_model_signatures.CLASSIFY_METHOD_NAME
        )


def existing_versions(base: Path) -> dict[int, Path]:
    """The version directories in `base` (children whose names are integers), by version."""
    if not base.is_dir():
        return {}
    versions = {}
    for child in base.iterdir():
        if _VERSION_NAME.fullmatch(child.name) and child.is_dir():
            versions[int(child.name)] = child
    return versions


def _check_base_path(base_path: str | Path) -> Path:
    base = Path(base_path)
    if base.exists() and not base.is_dir():
        raise VersionError(
            f"The base path is not a directory. Expected a directory to hold version "
            f"directories (created if missing). Received: base_path='{base}' (a file)"
        )
    return base


def _choose_version(base: Path, version: int | None) -> int:
    versions = existing_versions(base)
    next_version = max(versions, default=0) + 1
    if version is None:
        return next_version
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise VersionError(
            f"Invalid version. Expected a non-negative integer (or none, to use {next_version}). "
            f"Received: version={version!r}"
        )
    if version in versions:
        raise VersionError(
            f"Version {version} already exists and is never overwritten. Expected a new version "
            f"number (the next free one is {next_version}), or no version to pick it. Received: "
            f"version={version} with {versions[version]} present"
        )
    return version


def _resolve_max_length(run: RunDirectory, model: Any, max_length: int | None) -> int:
    source = "max_length"
    if max_length is None:
        max_length = run.max_length
        source = f"max_length in {FIT_CONFIG_FILE}"
        if max_length is None:
            raise RunDirError(
                f"No max_length to export with. Expected max_length in "
                f"{run.path / FIT_CONFIG_FILE} or an explicit max_length (--max-length). "
                f"Received: neither"
            )
    minimum = 4 if run.text_pair else 3
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < minimum:
        raise ExportError(
            f"Invalid {source}. Expected an integer of at least {minimum} (room for the special "
            f"tokens and one token of text). Received: max_length={max_length!r}"
        )
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ExportError(
            f"{source} is longer than the model supports. Expected at most {limit} (the "
            f"model's max_position_embeddings). Received: max_length={max_length}"
        )
    return max_length


@contextlib.contextmanager
def _staged_version(base: Path, version: int) -> Iterator[Path]:
    """A new temporary directory beside `base/<version>` that is renamed to it when the block
    ends without an error. On any error (the rename's included) it is removed, and so is
    `base` when this export created it."""
    base_existed = base.exists()
    temp_dir = _make_temp_dir(base, version)
    try:
        yield temp_dir
        _rename_without_replacing(temp_dir, base / str(version), version)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        if not base_existed:
            _remove_if_empty(base)
        raise


def _make_temp_dir(base: Path, version: int) -> Path:
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VersionError(
            f"Cannot create the base path. Expected a writable directory. Received: "
            f"base_path='{base}' ({error})"
        ) from error
    remove_leftovers(base)
    while True:
        temp_dir = base / (f"{TEMP_PREFIX}{version}-{_host_name()}-{os.getpid()}-"
                           f"{secrets.token_hex(4)}")
        try:
            temp_dir.mkdir()  # honours the umask, unlike tempfile.mkdtemp's 0o700
        except FileExistsError:
            continue
        return temp_dir


def remove_leftovers(base: Path) -> list[Path]:
    """Removes the temporary directories of exports that died before their rename (killed,
    or the machine went down): `.tmp-export-<version>-<host>-<pid>-<random>` written on this
    host (same host name) by a process that no longer runs. Those of running exports are left
    alone, and so are those of other hosts sharing the directory and names without a pid
    (written before pids were added; remove them by hand once no export runs).

    Returns:
        The directories removed.
    """
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if (match is None or match.group("host") != _host_name()
                or _process_running(int(match.group("pid")))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            logger.warning("Removed %s, left by an export (pid %s) that did not finish",
                           entry.path, match.group("pid"))
            removed.append(Path(entry.path))
    return removed


def _host_name() -> str:
    """This machine's name as it appears in temporary directory names (no `/`)."""
    return (socket.gethostname() or "localhost").replace("/", "_")


def _process_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def _rename_without_replacing(temp_dir: Path, final_dir: Path, version: int) -> None:
    # Re-checked here: another export may have taken the version while this one was running.
    if os.path.lexists(final_dir) or version in existing_versions(final_dir.parent):
        raise VersionError(
            f"Version {version} was created by someone else during this export and is never "
            f"overwritten. Expected {final_dir} to stay free. Received: it exists now"
        )
    try:
        os.rename(temp_dir, final_dir)
    except OSError as error:
        raise VersionError(
            f"Cannot move the export into place. Expected to rename {temp_dir} to {final_dir}. "
            f"Received: {error}"
        ) from error


def _write_assets_extra(
    directory: Path,
    run: RunDirectory,
    tokenizer: Any,
    max_length: int,
    version: int,
    signatures: Sequence[str],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    labels = list(run.labels)
    (directory / LABELS_FILE).write_text(
        json.dumps({"labels": labels}, indent=2) + "\n", encoding="utf-8"
    )
    shutil.copyfile(run.path / FIT_CONFIG_FILE, directory / FIT_CONFIG_FILE)
    tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    config = {
        "task": run.fit_config.get("task", SUPPORTED_TASK),
        "problem_type": run.problem_type,
        # Multi-label only: the score from which `predicted` is 1; None for the other types.
        "threshold": run.threshold if run.problem_type == "multi-label" else None,
        "labels": labels,
        "max_length": max_length,
        "text_pair": run.text_pair,
        "text_column": run.fit_config.get("text_column"),
        "text_pair_column": run.fit_config.get("text_pair_column"),
        "version": version,
        "run_dir": str(run.path.resolve()),
        "base_model": run.fit_config.get("model"),
        "signatures": list(signatures),
        "tokenizer": type(tokenizer).__name__,
        **_provenance(),
    }
    (directory / EXPORT_CONFIG_FILE).write_text(
        json.dumps(config, indent=2) + "\n", encoding="utf-8"
    )
    write_warmup_requests(directory, max_length=max_length, text_pair=run.text_pair,
                          problem_type=run.problem_type)


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
