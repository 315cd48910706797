"""`ServeProcess`: `tfinetune serve` as a real child process, for tests of the command itself."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class ServeProcess:
    """Runs `tfinetune serve FLAGS...`; its stderr lines are collected as they come.

    Use as a context manager: leaving the block kills the process if the test did not stop it.

    Args:
        *flags: Command-line flags of `tfinetune serve`.
    """

    def __init__(self, *flags: str):
        self.flags = [str(flag) for flag in flags]
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []

    def __enter__(self) -> "ServeProcess":
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tfinetune.cli.serve import command; command()",
             *self.flags],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(
            target=lambda: [self.lines.put(line) for line in self.process.stderr], daemon=True)
        self._reader.start()
        return self

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match:
        """Reads stderr until a line matches `pattern`; fails on an `Error` line first."""
        while True:
            line = self.lines.get(timeout=timeout)
            self.seen.append(line)
            assert "Error" not in line, "".join(self.seen)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> int:
        """Sends SIGTERM and returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def rest_of_output(self) -> str:
        """Everything written to stderr after the last `wait_for` (once the process ended)."""
        self._reader.join(timeout=10)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get_nowait())
        return "".join(rest)

    def __exit__(self, *exc_info) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
