"""`--tokenizer DIR`, shared by the commands that call a model server (`predict`, `score`):
the export whose tokenizer tokenises texts on the client for `--portable` models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

TOKENIZER_HELP = (
    "For models exported with --portable (their signature takes token ids): tokenise with "
    "this export's tokenizer. DIR is the model base path (its highest version), a version "
    "directory or its assets.extra. Not needed for models that take text.")


PAD_HELP = (
    "With --tokenizer: pad every text to the export's max_length, so that all requests have one "
    "shape (needed when the server batches requests: TF Serving cannot batch token ids of "
    "different lengths correctly). Costs compute on the padding.")


def tokenizer_option(function):
    """Adds --tokenizer DIR and --pad-to-max-length."""
    function = click.option("--pad-to-max-length", "pad_to_max_length", is_flag=True,
                            default=False, help=PAD_HELP)(function)
    return click.option("--tokenizer", "tokenizer", metavar="DIR", default=None,
                        type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help=TOKENIZER_HELP)(function)


def load_client_tokenizer(path: Path | None, pad_to_max_length: bool = False) -> Any:
    """The `serving.ClientTokenizer` of the export at `path`, or None without a path.

    Raises:
        click.BadParameter: The directory holds no exported tokenizer (the message says why).
    """
    if path is None:
        return None
    from serving.client_tokenizer import ClientTokenizer

    try:
        return ClientTokenizer.from_path(path, pad_to_max_length=pad_to_max_length)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--tokenizer") from None
