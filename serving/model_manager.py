"""`ModelManager`: finds, loads, swaps and unloads the versions of each served model.

It follows TF Serving's file-system source, manager and `ServerCore`:

* each model has its own `ModelConfig`: base path, version policy and version labels;
* versions are the children of the base path whose names are integers; other entries are ignored;
* the model's version policy (default: latest 1) picks the aspired versions;
* "Latest" resolves to the highest AVAILABLE version, a version label to the version it names;
* a version replays its warm-up requests (`ModelWarmup`) before it becomes AVAILABLE;
* a poll loads a new version before unloading the old one (TF Serving's
  `AvailabilityPreservingPolicy`), so no request fails during a swap, and a failed load leaves
  the previous version serving; the failure is reported by GetModelStatus (state END + error);
* a failed load is retried by later polls, up to `max_num_load_retries` times, at least
  `load_retry_interval_seconds` apart (TF Serving: 5 retries, 60 s); the initial load is not
  retried, so a bad model fails start-up at once;
* `reload_config` replaces the model list (HandleReloadConfigRequest, config-file polling):
  models left out are unloaded, new ones loaded (the call returns once they are available),
  policies and labels of the others updated;
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
from typing import Callable, Iterable, Iterator, Mapping

import grpc

from serving.model_config import TENSORFLOW_PLATFORM
from serving.model_config import ModelConfig
from serving.model_warmup import ModelWarmup
from serving.servable import Servable
from serving.servable_options import ServableOptions
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
    config: ModelConfig
    versions: dict[int, _Version] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # the labels in force
    scan_error: ServingError | None = None  # why the last look at the base path failed

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def base_path(self) -> Path:
        return self.config.base_path

    @property
    def policy(self) -> VersionPolicy:
        return self.config.version_policy


def _status_text(error: ServingError) -> str:
    """A status as absl's `Status::ToString` writes it: `NOT_FOUND: message`."""
    return f"{error.code.name}: {error.message}"


class ModelManager:
    """Serves the versions of several models, each from its base path.

    Args:
        models: Model name -> base path (the directory holding `<version>/saved_model.pb`), all
            served with `version_policy`; or `ModelConfig`s, each with its own policy and
            labels.
        version_policy: Which versions to serve for a name -> base path mapping (TF Serving's
            default: the latest one).
        on_change: Called (without arguments) after every version state change.
        tags: The MetaGraphDef tags to load (`--saved_model_tags`, default "serve").
        max_num_load_retries: How many times polls retry a version that failed to load.
        load_retry_interval_seconds: The least time between two load attempts of a version.
        allow_version_labels_for_unavailable_models: Let a new label name a version that is
            not AVAILABLE (`--allow_version_labels_for_unavailable_models`).
        warmup: Replays each version's warm-up requests before it becomes AVAILABLE; default
            `ModelWarmup()` (enabled, 1 iteration, as TF Serving).
    """

    def __init__(self, models: Mapping[str, str | Path] | Iterable[ModelConfig] = (), *,
                 version_policy: VersionPolicy | None = None,
                 on_change: Callable[[], None] | None = None,
                 tags: tuple[str, ...] = ("serve",), max_num_load_retries: int = 5,
                 load_retry_interval_seconds: float = 60.0,
                 allow_version_labels_for_unavailable_models: bool = False,
                 warmup: ModelWarmup | None = None) -> None:
        self._default_policy = version_policy or VersionPolicy.latest()
        self._models = {config.name: _Model(config) for config in self._configs(models)}
        self._retired: dict[str, _Model] = {}  # models a reload removed, for GetModelStatus
        self._on_change = on_change
        self._tags = tags
        self._max_retries = max_num_load_retries
        self._retry_interval = load_retry_interval_seconds
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._warmup = warmup if warmup is not None else ModelWarmup()
        # Batching, method-name check, tensor_content: handed to every Servable.load. The server
        # sets it in start(), before the first load (owned by the batching/limits work).
        self.servable_options = ServableOptions()
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()  # one poll, initial load or reload at a time
        # Set by `unload_all` (server shutdown): lookups then answer UNAVAILABLE, not NOT_FOUND.
        self._shutting_down = False
        self._stop_polling = threading.Event()
        self._poller: threading.Thread | None = None

    def _configs(self, models) -> list[ModelConfig]:
        if isinstance(models, Mapping):
            return [ModelConfig(name, Path(base_path), self._default_policy)
                    for name, base_path in models.items()]
        configs = list(models)
        names = [config.name for config in configs]
        for name in names:
            if names.count(name) > 1:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Illegal to list model {name} multiple times in config list")
        return configs

    # -- queries ---------------------------------------------------------------------------------

    @property
    def model_names(self) -> list[str]:
        """The configured models (not those a reload removed)."""
        return list(self._models)

    def model_config(self, name: str) -> ModelConfig | None:
        """The configuration a model is served with, or None for an unknown model."""
        model = self._models.get(name)
        return model.config if model else None

    def version_labels(self, name: str) -> dict[str, int]:
        """The version labels in force for a model (label -> version)."""
        with self._lock:
            model = self._models.get(name)
            return dict(model.labels) if model else {}

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
        `ServableStateMonitor`, which keeps ended versions too, also of removed models)."""
        with self._lock:
            model = self._models.get(name) or self._retired.get(name)
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
            ServingError: TF Serving's errors for an empty name, an unknown version label, an
                unknown model or a version that is not AVAILABLE.
        """
        servable = self._acquire(model_spec)
        try:
            yield servable
        finally:
            servable.release()

    def _acquire(self, model_spec) -> Servable:
        """TF Serving's `ServableRequestFromModelSpec` + `GetServableHandle`."""
        name = model_spec.name
        if not name:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        choice = model_spec.WhichOneof("version_choice")
        with self._lock:
            if self._shutting_down:
                # A request accepted just before the server stopped: retryable elsewhere, and
                # not "not found" (the model exists; this server is going away).
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   "The server is shutting down: retry on another replica or "
                                   "once it is back")
            model = self._models.get(name)
            number = None
            if choice == "version":
                number = model_spec.version.value
            elif choice == "version_label":
                label = model_spec.version_label
                number = model.labels.get(label) if model else None
                if number is None:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"Unrecognized servable version label: {label}")
            versions = model.versions if model else {}
            if number is not None:
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

    def load_all(self, configs: Iterable[ModelConfig] | None = None,
                 max_workers: int | None = None) -> None:
        """The initial load: every model's aspired versions, in parallel (TF Serving loads
        them before it opens its port).

        Args:
            configs: Replace the models given to the constructor with these (e.g. the models
                of a `--model_config_file`); only before anything is loaded.
            max_workers: Parallel loads; default: one per version, at most 4 x CPUs.

        Raises:
            ServingError: a model's platform is not "tensorflow", a base path is missing or
                empty, a version label names a version the policy does not serve, or a model
                has no version that loaded. Everything loaded so far is unloaded first.
        """
        with self._poll_lock:
            if configs is not None:
                configs = self._configs(configs)
                with self._lock:
                    if any(model.versions for model in self._models.values()):
                        raise RuntimeError("load_all(configs) replaces the models only before "
                                           "anything is loaded; use reload_config.")
                    self._models = {config.name: _Model(config) for config in configs}
            models = list(self._models.values())
            _check_platforms(model.config for model in models)
            jobs = []
            planned = []
            for model in models:
                found = self._scan(model, strict=True)
                aspired = model.policy.select(found)
                if not aspired:
                    raise ServingError(
                        grpc.StatusCode.NOT_FOUND,
                        f"No versions of servable {model.name} found under base path "
                        f"{model.base_path} that match the version policy {model.policy}. "
                        f"Found versions: {sorted(found)}")
                self._check_labels(model.config, None, aspired)
                planned.append((model, found, aspired))
            with self._lock:
                for model in models:
                    model.labels = dict(model.config.version_labels)
            for model, found, aspired in planned:
                for number in sorted(aspired, reverse=True):
                    jobs.append((model, self._add_version(model, number, found[number])))
            workers = max_workers or min(max(len(jobs), 1), 4 * (os.cpu_count() or 1))
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda job: self._load(*job), jobs))
            for model in models:
                if not self.available_versions(model.name):
                    failed = [v for v in model.versions.values() if v.error is not None]
                    self._unload_loaded()
                    first = failed[0]
                    raise ServingError(
                        first.error.code,
                        f"Failed to load version {first.version} of model '{model.name}' from "
                        f"{first.path}: {first.error.message}")

    def reload_config(self, configs: Iterable[ModelConfig]) -> None:
        """Replaces the served models, as TF Serving's `ServerCore::ReloadConfig`.

        Models left out are unloaded; the version policy and labels of the others are updated
        and their versions converged (new aspired versions loaded, others unloaded); new models
        are loaded, and the call returns once each has an AVAILABLE version. The checks run
        before anything changes, so a refused config leaves the server as it was.

        A version label must name a version that is AVAILABLE (unless
        `allow_version_labels_for_unavailable_models`, which covers new labels only); for a
        model this config adds, a version its policy selects on disk (it is loaded by this
        reload).

        Raises:
            ServingError: INVALID_ARGUMENT for a name listed twice, a platform change or an
                unsupported platform; FAILED_PRECONDITION for a label on a version that is not
                available; UNKNOWN `N model(s) did not become available: ...` when a new model
                did not load (the new config stays in force, as in TF Serving).
        """
        configs = self._configs(configs)
        with self._poll_lock:
            for config in configs:
                old = self._models.get(config.name)
                if old is not None and old.config.platform != config.platform:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"Illegal to change a model's platform. For model {config.name} "
                        f"platform was {old.config.platform} and new platform requested is "
                        f"{config.platform}")
            _check_platforms(configs)
            for config in configs:
                old = self._models.get(config.name)
                if old is None:
                    found = self._scan(_Model(config), strict=False) or {}
                    self._check_labels(config, None, config.version_policy.select(found))
                else:
                    self._check_labels(config, old, set(self.available_versions(config.name)))

            with self._lock:
                added = [config.name for config in configs if config.name not in self._models]
                removed = [model for name, model in self._models.items()
                           if name not in {config.name for config in configs}]
                models = {}
                for config in configs:
                    model = self._models.get(config.name) or _Model(config)
                    model.config = config
                    # Labels switch first (they were checked to name available versions), so
                    # a label moved off a version is not left pointing at it while it unloads.
                    model.labels = dict(config.version_labels)
                    models[config.name] = model
                    self._retired.pop(config.name, None)
                for model in removed:
                    self._retired[model.name] = model
                self._models = models
            logger.info("Reloading the model config: %d model(s); added %s, removed %s",
                        len(models), added, [model.name for model in removed])
            self._changed()
            for model in removed:
                self._unload_model(model)
            for model in models.values():
                try:
                    self._converge(model)
                except Exception:  # noqa: BLE001  (converge the other models)
                    logger.exception("Loading model '%s' failed", model.name)
            unavailable = [models[name] for name in added
                           if not self.available_versions(name)]
            if unavailable:
                raise ServingError(
                    grpc.StatusCode.UNKNOWN,
                    f"{len(unavailable)} model(s) did not become available: {{"
                    + "".join(f"{{{_failure(model)}}}, " for model in unavailable) + "}")

    def _check_labels(self, config: ModelConfig, old: _Model | None,
                      available: set[int]) -> None:
        """TF Serving's `UpdateModelVersionLabelMap` check, with its FAILED_PRECONDITION text.

        `available` is the versions a label may name: the AVAILABLE ones of a served model, or
        those the policy selects on disk for a model being added.
        """
        for label, number in config.version_labels.items():
            if number in available:
                continue
            if self._allow_unavailable_labels:
                # The flag covers new labels (or unchanged ones), not moving an existing label.
                existing = old.labels.get(label) if old is not None else None
                if existing is None or existing == number:
                    continue
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Request to assign label to version {number} of model {config.name}, which is "
                f"not currently available for inference")

    def poll(self) -> None:
        """One pass of the file-system source: load new aspired versions, then unload the ones
        no longer aspired once an aspired version is AVAILABLE."""
        with self._poll_lock:
            for model in list(self._models.values()):
                try:
                    self._converge(model)
                except Exception:  # noqa: BLE001  (keep polling the other models)
                    logger.exception("Polling model '%s' failed", model.name)

    def _converge(self, model: _Model) -> None:
        found = self._scan(model, strict=False)
        if found is None:
            return
        aspired = model.policy.select(found)
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
            servable = Servable.load(model.name, version.version, version.path, tags=self._tags,
                                     options=self.servable_options)
            self._warm_up(servable)
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

    def _warm_up(self, servable: Servable) -> None:
        """Replays the warm-up requests; on failure the servable is closed and the load fails."""
        try:
            self._warmup.run(servable)
        except Exception as error:  # noqa: BLE001  (a failed warm-up fails the load)
            servable.close()
            if isinstance(error, ServingError):
                raise
            logger.exception("Warm-up of %s failed", servable.path)
            raise ServingError(grpc.StatusCode.INTERNAL,
                               f"{type(error).__name__}: {error}") from error

    def _finish_unload(self, model: _Model, version: _Version) -> None:
        logger.info("Unloading version %d of model '%s'", version.version, model.name)
        version.servable.close()  # waits for the requests still using it
        with self._lock:
            version.state, version.servable = VersionState.END, None
        self._changed()

    def _unload_model(self, model: _Model) -> None:
        with self._lock:
            loaded = [v for v in model.versions.values() if v.state == VersionState.AVAILABLE]
            for version in loaded:
                version.state = VersionState.UNLOADING
        if loaded:
            self._changed()
        for version in loaded:
            self._finish_unload(model, version)

    def unload_all(self, cancel_running: bool = False) -> None:
        """Unloads every version (after the requests using them finish); later lookups answer
        UNAVAILABLE (the server is shutting down).

        Args:
            cancel_running: First cancel the session runs in progress (they fail with
                CANCELLED), so that the unload does not wait for them (the end of a shutdown
                grace period).
        """
        with self._lock:
            self._shutting_down = True
        if cancel_running:
            with self._lock:
                loaded = [(model, version) for model in self._models.values()
                          for version in model.versions.values()
                          if version.state == VersionState.AVAILABLE]
                for _, version in loaded:
                    version.state = VersionState.UNLOADING  # no new request acquires it
            if loaded:
                self._changed()
            for _, version in loaded:
                if version.servable.requests_in_flight:
                    version.servable.cancel_runs()
            for model, version in loaded:
                self._finish_unload(model, version)
        self._unload_loaded()

    def _unload_loaded(self) -> None:
        for model in list(self._models.values()):
            self._unload_model(model)

    def _scan(self, model: _Model, *, strict: bool) -> dict[int, Path] | None:
        """Version number -> directory, for the integer-named directories in the base path.

        With `strict`, a missing base path or one without versions raises `ServingError`;
        otherwise a missing base path is logged and returns None (nothing changes). The failure
        is kept in `model.scan_error`.
        """
        base = model.base_path
        model.scan_error = None
        try:
            entries = sorted(os.scandir(base), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            message = f"Could not find base path {base} for servable {model.name}"
            return self._scan_failed(model, grpc.StatusCode.INVALID_ARGUMENT, message, strict,
                                     logging.ERROR)
        except OSError as error:
            message = f"Could not list base path {base} for servable {model.name}: {error}"
            return self._scan_failed(model, grpc.StatusCode.INVALID_ARGUMENT, message, strict,
                                     logging.ERROR)
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
            self._scan_failed(model, grpc.StatusCode.NOT_FOUND, message, strict,
                              logging.WARNING)
        return found

    @staticmethod
    def _scan_failed(model: _Model, code: grpc.StatusCode, message: str, strict: bool,
                     level: int) -> None:
        model.scan_error = ServingError(code, message)
        if strict:
            raise model.scan_error
        logger.log(level, message)
        return None

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


def _check_platforms(configs: Iterable[ModelConfig]) -> None:
    """Only TensorFlow SavedModels are served (TF Serving's text for other platforms)."""
    for config in configs:
        if config.platform != TENSORFLOW_PLATFORM:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Model {config.name} requests unsupported platform "
                               f"{config.platform}")


def _failure(model: _Model) -> str:
    """Why a model did not become available, as TF Serving's `WaitUntilModelsAvailable` says:
    `{name: m version: 2} due to error: NOT_FOUND: ...`."""
    failed = sorted((v for v in model.versions.values() if v.error is not None),
                    key=lambda v: -v.version)
    if failed:
        return (f"{{name: {model.name} version: {failed[0].version}}} due to error: "
                f"{_status_text(failed[0].error)}")
    if model.scan_error is not None:
        return f"{{name: {model.name}}} due to error: {_status_text(model.scan_error)}"
    return (f"{{name: {model.name}}} due to error: NOT_FOUND: no version matches the version "
            f"policy {model.policy}")
