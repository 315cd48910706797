"""What `export_model` wrote."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """The outcome of one successful export.

    Attributes:
        path: The version directory, `BASE/<version>`, holding `saved_model.pb`, `variables/` and
            `assets.extra/`.
        version: The version number (the directory's name).
        signatures: The SavedModel's signature names, e.g.
            `("serving_default", "tokens", "classify")`.
        max_abs_difference: The largest absolute difference between the reloaded SavedModel's
            outputs and the in-memory model's on the parity texts (at most 1e-4).
    """

    path: Path
    version: int
    signatures: tuple[str, ...]
    max_abs_difference: float
