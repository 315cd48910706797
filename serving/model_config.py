"""`ModelConfig`: one served model as TF Serving's `ModelConfig` describes it (name, base path,
platform, version policy and version labels)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping

from serving.version_policy import VersionPolicy

TENSORFLOW_PLATFORM = "tensorflow"  # kTensorFlowModelPlatform


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What the server serves for one model name.

    Build one directly, or read a whole `ModelServerConfig` with `ModelConfigList`.

    Example:
        ModelConfig("sentiment", "/models/sentiment", VersionPolicy.specific([1, 2]),
                    {"stable": 1, "canary": 2})

    Attributes:
        name: The name requests put in `ModelSpec.name`.
        base_path: The directory of the model's integer-named version directories, made
            absolute against the working directory (symlinks are kept, so that a base path
            that is a symlink can be switched while serving).
        version_policy: Which versions to serve (default: the latest).
        version_labels: Label -> version, for `ModelSpec.version_label`.
        platform: The model platform; only "tensorflow" is served.
    """

    name: str
    base_path: Path
    version_policy: VersionPolicy = VersionPolicy.latest()
    version_labels: Mapping[str, int] = dataclasses.field(default_factory=dict)
    platform: str = TENSORFLOW_PLATFORM

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_path", Path(os.path.abspath(self.base_path)))
        object.__setattr__(self, "version_labels", dict(self.version_labels))
