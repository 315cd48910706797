"""What the client codecs of portable exports of other tasks (`serving.portable_*_codec`) read
the same way: the `"portable": true` mark and the client tokenizer of `export_config.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from typing import Mapping


def require_portable(config: Mapping[str, Any], config_file: Path, task: str) -> None:
    """Raises ValueError unless `config` (read from `config_file`) is a portable export's.

    Args:
        task: The task, as the message names the default export (e.g. "seq2seq").
    """
    if config.get("portable") is not True:
        raise ValueError(
            f"Not a portable export. Expected \"portable\": true in {config_file} (written "
            f"by `tfinetune export --portable`); a default {task} export takes text, no client "
            f"tokenizer is needed. Received: portable={config.get('portable')!r}")


def read_client_tokenizer(tokenizer_file: Path, config_file: Path, *, alternative: str = ""):
    """The `tokenizers.Tokenizer` of `tokenizer_file` (`client_tokenizer` in `config_file`).

    Args:
        alternative: What else `client_tokenizer` may name, for the message (e.g. ' or "byt5"').

    Raises:
        ValueError: it cannot be read.
    """
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(tokenizer_file))
    except Exception as error:  # noqa: BLE001  (the Rust library raises plain Exceptions)
        raise ValueError(f"Cannot read the client tokenizer {tokenizer_file} (client_"
                         f"tokenizer in {config_file}). Expected a Hugging Face "
                         f"tokenizer.json{alternative}. Received: {error}") from None
