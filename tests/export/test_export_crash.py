"""An export killed (SIGKILL) at any moment leaves nothing a server would load, and the next
export removes the leftover and takes the next version; leftovers of running exports stay."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMP_PREFIX = ".tmp-export-"


def _temp_dirs(base: Path) -> list[Path]:
    return sorted(path for path in base.iterdir() if path.name.startswith(TEMP_PREFIX))


def _start_export(run_dir: Path, base: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as stderr:  # a file, not a pipe: a full pipe would block the export
        return subprocess.Popen(
            [sys.executable, "-m", "tfinetune.cli.main", "export", str(run_dir), "-b",
             str(base)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)


def _kill_when(process: subprocess.Popen, log: Path, base: Path, ready, what: str) -> Path:
    """SIGKILLs `process` as soon as `ready(temp_dir)` holds for its temporary directory."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        temps = [temp for temp in _temp_dirs(base) if f"-{process.pid}-" in temp.name]
        if temps and ready(temps[0]):
            process.kill()
            process.wait()
            return temps[0]
        if process.poll() is not None:
            pytest.fail(f"export ended ({process.returncode}) before {what}: "
                        f"{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.005)
    process.kill()
    process.wait()
    pytest.fail(f"export did not reach {what} within 120 s")


def _served_versions(base: Path) -> list[int]:
    """The versions a real server loads from `base` (the latest one, by default)."""
    from serving.server import Server

    server = Server({"clf": base}, port=0, file_system_poll_wait_seconds=0)
    server.start()
    try:
        return server.available_versions("clf")
    finally:
        server.stop(grace=0)


@pytest.mark.slow
def test_sigkill_during_export_leaves_no_loadable_version_and_next_export_cleans_up(
        tmp_path, single_export, tiny_run_dir):
    import export
    from export.exporter import existing_versions

    base = tmp_path / "clf"
    base.mkdir()
    shutil.copytree(single_export.path, base / "1")  # a complete earlier version
    moments = [
        ("its temporary directory exists", lambda temp: True),
        ("saved_model.pb is written (assets and parity check to come)",
         lambda temp: (temp / "saved_model.pb").exists()),
    ]
    for what, ready in moments:
        log = tmp_path / "export.log"
        leftover = _kill_when(_start_export(tiny_run_dir, base, log), log, base, ready, what)
        # Only the old version is a version; the half-written export is a hidden directory
        # (the leftover of the previous kill was removed by this export when it started).
        assert _temp_dirs(base) == [leftover]
        assert existing_versions(base) == {1: base / "1"}
        assert [path.name for path in base.iterdir() if not path.name.startswith(".")] == ["1"]
        assert _served_versions(base) == [1]

    result = export.export_model(tiny_run_dir, base)

    assert result.version == 2
    assert sorted(path.name for path in base.iterdir()) == ["1", "2"]  # leftovers removed
    assert (base / "2" / "saved_model.pb").is_file()
    assert _served_versions(base) == [2]  # the latest version (TF Serving's default policy)


def test_leftovers_of_dead_exports_are_removed_and_others_kept(tmp_path):
    from export.exporter import remove_leftovers

    host = socket.gethostname()
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its pid runs nothing now
    dead_pid = finished.pid
    names = {
        "dead": f"{TEMP_PREFIX}3-{host}-{dead_pid}-0123abcd",
        "running": f"{TEMP_PREFIX}3-{host}-{os.getppid()}-0123abcd",
        "this_process": f"{TEMP_PREFIX}4-{host}-{os.getpid()}-0123abcd",
        "other_host": f"{TEMP_PREFIX}3-not-{host}-{dead_pid}-0123abcd",
        "no_pid": f"{TEMP_PREFIX}3-0123abcd",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"half")
    (tmp_path / "1").mkdir()

    removed = remove_leftovers(tmp_path)

    assert removed == [tmp_path / names["dead"]]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["1", *(name for key, name in names.items() if key != "dead")])


def test_export_names_its_temporary_directory_with_host_and_pid(tmp_path, tiny_run_dir,
                                                                monkeypatch):
    """What `remove_leftovers` relies on: the name tells which process on which host writes."""
    import export
    import export.exporter

    seen = []

    def fail(module, export_dir):
        seen.append(export_dir.name)
        raise OSError("disk full")

    monkeypatch.setattr(export.exporter, "save_module", fail)
    with pytest.raises(OSError, match="disk full"):
        export.export_model(tiny_run_dir, tmp_path)
    assert len(seen) == 1
    assert seen[0].startswith(f"{TEMP_PREFIX}1-{socket.gethostname()}-{os.getpid()}-")
    assert export.exporter._TEMP_NAME.fullmatch(seen[0])
