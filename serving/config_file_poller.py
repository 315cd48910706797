"""`ConfigFilePoller`: re-reads `--model_config_file` every
`--model_config_file_poll_wait_seconds` and reloads the server's models from it (TF Serving's
`Server::PollFilesystemAndReloadConfig`)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from serving.model_config_list import ModelConfigList
from serving.model_manager import ModelManager
from serving.serving_error import ServingError

logger = logging.getLogger(__name__)


class ConfigFilePoller:
    """Reloads a `ModelManager` from a text `ModelServerConfig` file in a background thread.

    Each poll reads the file and calls `ModelManager.reload_config`; a file that cannot be read
    or a config the manager refuses is logged with TF Serving's texts and the models stay as
    they are (the next poll tries again).

    Example:
        poller = ConfigFilePoller("/models/models.config", manager, interval_seconds=30)
        poller.start()
        ...
        poller.stop()

    Args:
        path: The config file.
        manager: The manager to reload.
        interval_seconds: Seconds between polls; must be positive.
    """

    def __init__(self, path: str | Path, manager: ModelManager, interval_seconds: float) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive (0 means: never poll). "
                             f"Received: interval_seconds={interval_seconds}")
        self._path = Path(path)
        self._manager = manager
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    def start(self) -> "ConfigFilePoller":
        """Starts polling (the first poll is one interval from now)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="serving-config-poller",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stops polling, after a reload in progress finishes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def poll(self) -> bool:
        """Reads the file and reloads the models once. Returns True if the reload succeeded."""
        try:
            configs = ModelConfigList.read(self._path)
        except ServingError as error:
            self._log_failure(f"Failed to read ModelServerConfig file: {error.message}")
            return False
        try:
            self._manager.reload_config(configs)
        except ServingError as error:
            self._log_failure(f"PollFilesystemAndReloadConfig failed to ReloadConfig: "
                              f"{error.message}")
            return False
        if self._last_error is not None:
            logger.info("Reloaded the model config from %s", self._path)
        self._last_error = None
        return True

    def _log_failure(self, message: str) -> None:
        # TF Serving logs every failed poll; a repeated failure is logged once at ERROR here.
        level = logging.DEBUG if message == self._last_error else logging.ERROR
        logger.log(level, message)
        self._last_error = message

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001  (keep polling)
                logger.exception("Polling the model config file %s failed", self._path)
