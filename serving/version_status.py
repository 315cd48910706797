"""`VersionStatus`: the state of one model version as reported by GetModelStatus."""

from __future__ import annotations

from dataclasses import dataclass

from serving.serving_error import ServingError
from serving.version_state import VersionState


@dataclass(frozen=True)
class VersionStatus:
    """A snapshot of one version's state.

    Attributes:
        version: The version number.
        state: Where the version is in its lifecycle.
        error: Why its load failed (state END), else None.
    """

    version: int
    state: VersionState
    error: ServingError | None = None
