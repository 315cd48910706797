"""`VersionPolicy`: which of a model's version directories to serve (TF Serving's
`ServableVersionPolicy`: `latest {num_versions}`, `all {}`, `specific {versions}`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class VersionPolicy:
    """Chooses the aspired versions among the version numbers found on disk.

    Use the constructors: `VersionPolicy.latest(n)` (TF Serving's default, n=1),
    `VersionPolicy.all()`, `VersionPolicy.specific([v, ...])`.

    Attributes:
        kind: "latest", "all" or "specific".
        num_versions: For "latest": how many of the highest versions to serve.
        versions: For "specific": the versions to serve.
    """

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "all", "specific"):
            raise ValueError(
                f"Unknown version policy. Expected one of ['latest', 'all', 'specific']. "
                f"Received: kind={self.kind!r}")
        if self.kind == "latest" and self.num_versions < 1:
            raise ValueError(
                f"The latest version policy serves at least 1 version. "
                f"Received: num_versions={self.num_versions}")
        if self.kind == "specific" and not self.versions:
            raise ValueError("The specific version policy needs at least one version. Received: []")

    @classmethod
    def latest(cls, num_versions: int = 1) -> "VersionPolicy":
        return cls("latest", num_versions=num_versions)

    @classmethod
    def all(cls) -> "VersionPolicy":
        return cls("all")

    @classmethod
    def specific(cls, versions: Iterable[int]) -> "VersionPolicy":
        return cls("specific", versions=tuple(sorted(set(versions))))

    @classmethod
    def parse(cls, text: str) -> "VersionPolicy":
        """Reads `latest`, `latest:N`, `all` or `specific:V1,V2,...`."""
        kind, _, argument = text.strip().partition(":")
        try:
            if kind == "latest":
                return cls.latest(int(argument) if argument else 1)
            if kind == "all" and not argument:
                return cls.all()
            if kind == "specific" and argument:
                return cls.specific(int(v) for v in argument.split(","))
        except ValueError as error:
            raise ValueError(f"{error} Received: {text!r}") from None
        raise ValueError(
            "Unknown version policy. Expected 'latest', 'latest:N', 'all' or "
            f"'specific:V1,V2,...'. Received: {text!r}")

    def select(self, available: Iterable[int]) -> set[int]:
        """The versions to serve, out of the version numbers present on disk."""
        available = sorted(set(available))
        if self.kind == "latest":
            return set(available[-self.num_versions:])
        if self.kind == "all":
            return set(available)
        return set(available) & set(self.versions)
