"""`VersionState`: the lifecycle of a model version, numbered like TF Serving's
`ModelVersionStatus.State` (so the value goes straight into a `GetModelStatusResponse`)."""

from __future__ import annotations

import enum


class VersionState(enum.IntEnum):
    """START -> LOADING -> AVAILABLE -> UNLOADING -> END (a failed load ends in END too)."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50
