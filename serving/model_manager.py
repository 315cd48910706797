"""`ModelManager`: finds, loads, swaps and unloads the versions of each served model.

It follows TF Serving's file-system source and manager:

* versions are the children of the base path whose names are integers; other entries are ignored;
* the version policy (default: latest 1) picks the aspired versions;
* "Latest" resolves to the highest AVAILABLE version;
* a poll loads a new version before unloading the old one (TF Serving's
  `AvailabilityPreservingPolicy`), so no request fails during a swap, and a failed load leaves
  the previous version serving; the failure is reported by GetModelStatus (state END + error);
* a failed load is retried by later polls, up to `max_num_load_retries` times, at least
  `load_retry_interval_seconds` apart (TF Serving: 5 retries, 60 s); the initial load is not
  retried, so a bad model fails start-up at once;
* a version is unloaded only once the requests running on it have finished.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import grpc

from serving.servable import Servable
from serving.serving_error import ServingError
from serving.version_policy import VersionPolicy
from serving.version_state import VersionState
from serving.version_status import VersionStatus

logger = logging.getLogger(__name__)

_VERSION_NAME = re.compile(r"^[+-]?[0-9]+$")  # what absl::SimpleAtoi accepts, minus whitespace
_INT64 = (-(1 << 63), (1 << 63) - 1)


@dataclass
class _Version:
    version: int
    path: Path
    state: VersionState = VersionState.START
    error: ServingError | None = None
    servable: Servable | None = None
    gone: bool = False  # its directory disappeared after it ended (a failed load may be retried)
    failed_loads: int = 0
    failed_at: float = 0.0  # time.monotonic() of the last failed load


@dataclass
class _Model:
    name: str
    base_path: Path
    versions: dict[int, _Version] = field(default_factory=dict)


class ModelManager:
    """Serves the versions of several models, each from its base path.

    Args:
        models: Model name -> base path (the directory holding `<version>/saved_model.pb`).
        version_policy: Which versions to serve (TF Serving's default: the latest one).
        on_change: Called (without arguments) after every version state change.
        tags: The MetaGraphDef tags to load (`--saved_model_tags`, default "serve").
        max_num_load_retries: How many times polls retry a version that failed to load.
        load_retry_interval_seconds: The least time between two load attempts of a version.
    """

    def __init__(self, models: Mapping[str, str | Path], *,
                 version_policy: VersionPolicy | None = None,
                 on_change: Callable[[], None] | None = None,
                 tags: tuple[str, ...] = ("serve",), max_num_load_retries: int = 5,
                 load_retry_interval_seconds: float = 60.0) -> None:
        self._models = {name: _Model(name, Path(base_path)) for name, base_path in models.items()}
        self._policy = version_policy or VersionPolicy.latest()
        self._on_change = on_change
        self._tags = tags
        self._max_retries = max_num_load_retries
        self._retry_interval = load_retry_interval_seconds
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._stop_polling = threading.Event()
        self._poller: threading.Thread | None = None

    # -- queries ---------------------------------------------------------------------------------

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def available_versions(self, name: str) -> list[int]:
        """The AVAILABLE versions of a model, highest first."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                return []
            return sorted((v.version for v in model.versions.values()
                           if v.state == VersionState.AVAILABLE), reverse=True)

    def all_models_available(self) -> bool:
        """True when every model has at least one AVAILABLE version."""
        return all(self.available_versions(name) for name in self._models)

    def version_statuses(self, name: str) -> list[VersionStatus]:
        """Every version this manager has seen for `name`, highest first (like TF Serving's
        `ServableStateMonitor`, which keeps ended versions too)."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                return []
            return [VersionStatus(v.version, v.state, v.error)
                    for v in sorted(model.versions.values(), key=lambda v: -v.version)]

    def requests_in_flight(self, name: str) -> int:
        """How many requests are running on the loaded versions of `name`."""
        with self._lock:
            model = self._models.get(name)
            servables = [v.servable for v in model.versions.values()
                         if v.servable is not None] if model else []
        return sum(servable.requests_in_flight for servable in servables)

    @contextlib.contextmanager
    def servable(self, model_spec) -> Iterator[Servable]:
        """The servable a `ModelSpec` asks for, held (not unloaded) while the block runs.

        Raises:
            ServingError: TF Serving's errors for an empty name, a version label, an unknown
                model or a version that is not AVAILABLE.
        """
        servable = self._acquire(model_spec)
        try:
            yield servable
        finally:
            servable.release()

    def _acquire(self, model_spec) -> Servable:
        name = model_spec.name
        if not name:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version_label":  # no version labels are configured (yet)
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Unrecognized servable version label: {model_spec.version_label}")
        with self._lock:
            model = self._models.get(name)
            versions = model.versions if model else {}
            if choice == "version":
                number = model_spec.version.value
                version = versions.get(number)
                if version is None or version.state != VersionState.AVAILABLE:
                    raise ServingError(
                        grpc.StatusCode.NOT_FOUND,
                        f"Servable not found for request: Specific({name}, {number})")
            else:
                available = [v for v in versions.values() if v.state == VersionState.AVAILABLE]
                if not available:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Servable not found for request: Latest({name})")
                version = max(available, key=lambda v: v.version)
            version.servable.acquire()
            return version.servable

    # -- loading ---------------------------------------------------------------------------------

    def load_all(self, max_workers: int | None = None) -> None:
        """The initial load: every model's aspired versions, in parallel (TF Serving loads
        them before it opens its port).

        Raises:
            ServingError: a base path is missing or empty, or a model has no version that
                loaded. Everything loaded so far is unloaded first.
        """
        jobs = []
        for model in self._models.values():
            found = self._scan(model, strict=True)
            aspired = self._policy.select(found)
            if not aspired:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"No versions of servable {model.name} found under base path "
                    f"{model.base_path} that match the version policy {self._policy}. "
                    f"Found versions: {sorted(found)}")
            for number in sorted(aspired, reverse=True):
                jobs.append((model, self._add_version(model, number, found[number])))
        workers = max_workers or min(len(jobs), 4 * (os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda job: self._load(*job), jobs))
        for model in self._models.values():
            if not self.available_versions(model.name):
                failed = [v for v in model.versions.values() if v.error is not None]
                self.unload_all()
                first = failed[0]
                raise ServingError(
                    first.error.code,
                    f"Failed to load version {first.version} of model '{model.name}' from "
                    f"{first.path}: {first.error.message}")

    def poll(self) -> None:
        """One pass of the file-system source: load new aspired versions, then unload the ones
        no longer aspired once an aspired version is AVAILABLE."""
        with self._poll_lock:
            for model in self._models.values():
                try:
                    self._converge(model)
                except Exception:  # noqa: BLE001  (keep polling the other models)
                    logger.exception("Polling model '%s' failed", model.name)

    def _converge(self, model: _Model) -> None:
        found = self._scan(model, strict=False)
        if found is None:
            return
        aspired = self._policy.select(found)
        with self._lock:
            for version in model.versions.values():
                if version.state == VersionState.END and version.version not in found:
                    version.gone = True
            to_load = []
            for number in sorted(aspired, reverse=True):
                version = model.versions.get(number)
                if version is None or (version.state == VersionState.END
                                       and (version.error is None or version.gone)):
                    to_load.append(self._add_version(model, number, found[number]))
                elif self._should_retry(version):
                    to_load.append(version)
        for version in to_load:
            self._load(model, version)
        with self._lock:
            available = [v for v in model.versions.values() if v.state == VersionState.AVAILABLE]
            unaspired = sorted((v for v in available if v.version not in aspired),
                               key=lambda v: v.version)
            if not aspired or any(v.version in aspired for v in available):
                to_unload = unaspired
            else:  # keep serving the highest unaspired version until an aspired one is up
                to_unload = unaspired[:-1]
            for version in to_unload:
                version.state = VersionState.UNLOADING
        if to_unload:
            self._changed()
        for version in to_unload:
            self._finish_unload(model, version)

    def _should_retry(self, version: _Version) -> bool:
        return (version.state == VersionState.END and version.error is not None
                and 0 < version.failed_loads <= self._max_retries
                and time.monotonic() - version.failed_at >= self._retry_interval)

    def _add_version(self, model: _Model, number: int, path: Path) -> _Version:
        with self._lock:
            version = _Version(number, path)
            model.versions[number] = version
        self._changed()
        return version

    def _load(self, model: _Model, version: _Version) -> None:
        with self._lock:
            version.state = VersionState.LOADING
        self._changed()
        logger.info("Loading version %d of model '%s' from %s", version.version, model.name,
                    version.path)
        try:
            servable = Servable.load(model.name, version.version, version.path, tags=self._tags)
        except ServingError as error:
            logger.error("Failed to load version %d of model '%s' from %s: %s",
                         version.version, model.name, version.path, error)
            with self._lock:
                version.state, version.error = VersionState.END, error
                version.failed_loads += 1
                version.failed_at = time.monotonic()
        else:
            logger.info("Version %d of model '%s' is available", version.version, model.name)
            with self._lock:
                version.state, version.servable = VersionState.AVAILABLE, servable
                version.error = None
        self._changed()

    def _finish_unload(self, model: _Model, version: _Version) -> None:
        logger.info("Unloading version %d of model '%s'", version.version, model.name)
        version.servable.close()  # waits for the requests still using it
        with self._lock:
            version.state, version.servable = VersionState.END, None
        self._changed()

    def unload_all(self) -> None:
        """Unloads every version (after the requests using them finish)."""
        with self._lock:
            loaded = [(model, v) for model in self._models.values()
                      for v in model.versions.values() if v.state == VersionState.AVAILABLE]
            for _, version in loaded:
                version.state = VersionState.UNLOADING
        if loaded:
            self._changed()
        for model, version in loaded:
            self._finish_unload(model, version)

    def _scan(self, model: _Model, *, strict: bool) -> dict[int, Path] | None:
        """Version number -> directory, for the integer-named directories in the base path.

        With `strict`, a missing base path or one without versions raises `ServingError`;
        otherwise a missing base path is logged and returns None (nothing changes).
        """
        base = model.base_path
        try:
            entries = sorted(os.scandir(base), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            message = f"Could not find base path {base} for servable {model.name}"
            if strict:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, message) from None
            logger.error(message)
            return None
        except OSError as error:
            message = f"Could not list base path {base} for servable {model.name}: {error}"
            if strict:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, message) from None
            logger.error(message)
            return None
        found: dict[int, Path] = {}
        for entry in entries:
            if not _VERSION_NAME.match(entry.name):
                continue
            number = int(entry.name)
            if not (_INT64[0] <= number <= _INT64[1]) or not entry.is_dir():
                continue
            if number in found:
                logger.warning("Duplicate version directories detected. Version %d will be "
                               "loaded from %s, %s will be ignored.", number, found[number],
                               entry.path)
                continue
            found[number] = Path(entry.path)
        if not found:
            message = (f"No versions of servable {model.name} found under base path {base}. "
                       f"Did you forget to name your leaf directory as a number (eg. '/1/')?")
            if strict:
                raise ServingError(grpc.StatusCode.NOT_FOUND, message)
            logger.warning(message)
        return found

    # -- polling ---------------------------------------------------------------------------------

    def start_polling(self, interval_seconds: float) -> None:
        """Polls the base paths every `interval_seconds` in a background thread (a value <= 0
        does not poll: TF Serving's 0 means "poll once", done by `load_all`)."""
        if interval_seconds <= 0 or self._poller is not None:
            return
        self._stop_polling.clear()
        self._poller = threading.Thread(target=self._poll_loop, args=(interval_seconds,),
                                        name="serving-model-poller", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        """Stops the poll thread (after a load in progress finishes)."""
        self._stop_polling.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None

    def _poll_loop(self, interval_seconds: float) -> None:
        while not self._stop_polling.wait(interval_seconds):
            self.poll()

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # noqa: BLE001
                logger.exception("on_change callback failed")
