"""Version numbering, never overwriting, and the atomic write (no temporary directory left)."""

from __future__ import annotations

import os

import pytest


def _listing(base):
    return sorted(path.name for path in base.iterdir())


def test_first_export_ignores_non_integer_entries(single_export, single_base):
    """`notes`, `2b`, `.hidden` and the file `7` are not versions: the first version is 1."""
    assert single_export.version == 1
    assert {".hidden", "1", "2b", "7", "notes"} <= set(_listing(single_base))
    assert (single_base / "7").is_file()
    assert not [name for name in _listing(single_base) if name.startswith(".tmp-export")]


def test_second_export_takes_the_next_version(single_export, single_base, sensitive_run_dir):
    import export

    first_model = (single_export.path / "saved_model.pb").read_bytes()

    second = export.export_model(sensitive_run_dir, single_base)

    assert second.version == 2
    assert second.path == single_base / "2"
    assert (second.path / "saved_model.pb").is_file()
    assert (single_export.path / "saved_model.pb").read_bytes() == first_model
    assert not [name for name in _listing(single_base) if name.startswith(".tmp-export")]


def test_explicit_existing_version_is_refused(single_export, single_base, tiny_run_dir):
    import export
    from export.errors import VersionError

    before = _listing(single_base)
    model_file = single_export.path / "saved_model.pb"
    stamp = model_file.stat().st_mtime_ns

    with pytest.raises(VersionError, match=r"Version 1 already exists.*next free one is"):
        export.export_model(tiny_run_dir, single_base, version=1)

    assert _listing(single_base) == before
    assert model_file.stat().st_mtime_ns == stamp


def test_existing_version_with_leading_zeros_is_refused(tmp_path, tiny_run_dir):
    """TF Serving reads `007` as version 7."""
    import export
    from export.errors import VersionError

    (tmp_path / "007").mkdir()
    with pytest.raises(VersionError, match="Version 7 already exists"):
        export.export_model(tiny_run_dir, tmp_path, version=7)


@pytest.mark.parametrize("version", [-1, True, 1.5])
def test_invalid_version(tmp_path, tiny_run_dir, version):
    import export
    from export.errors import VersionError

    with pytest.raises(VersionError, match=r"Invalid version.*non-negative integer"):
        export.export_model(tiny_run_dir, tmp_path, version=version)
    assert _listing(tmp_path) == []


def test_base_path_that_is_a_file(tmp_path, tiny_run_dir):
    import export
    from export.errors import VersionError

    base = tmp_path / "models"
    base.write_text("", encoding="utf-8")
    with pytest.raises(VersionError, match="base path is not a directory"):
        export.export_model(tiny_run_dir, base)


def test_failed_export_removes_the_base_path_it_created(tmp_path, tiny_run_dir, monkeypatch):
    import export
    import export.exporter

    def fail(module, export_dir):
        (export_dir / "saved_model.pb").write_bytes(b"half-written")
        raise OSError("disk full")

    monkeypatch.setattr(export.exporter, "save_module", fail)
    base = tmp_path / "new" / "models"

    with pytest.raises(OSError, match="disk full"):
        export.export_model(tiny_run_dir, base)

    assert not base.exists()
    assert (tmp_path / "new").is_dir()


def test_existing_versions_reads_integer_directories_only(tmp_path):
    from export.exporter import existing_versions

    for name in ["1", "10", "003", "x1", "1.5", "-2", ".tmp-export-11-abcd"]:
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("", encoding="utf-8")

    assert existing_versions(tmp_path) == {1: tmp_path / "1", 10: tmp_path / "10",
                                           3: tmp_path / "003"}


def test_rename_never_replaces_a_version_created_meanwhile(tmp_path):
    """POSIX rename() would silently replace an empty directory: the export checks first."""
    from export.errors import VersionError
    from export.exporter import _rename_without_replacing

    temp_dir = tmp_path / ".tmp-export-4-abcd"
    temp_dir.mkdir()
    (temp_dir / "saved_model.pb").write_bytes(b"new")
    (tmp_path / "4").mkdir()  # created by someone else while this export was running

    with pytest.raises(VersionError, match="Version 4 was created by someone else"):
        _rename_without_replacing(temp_dir, tmp_path / "4", 4)

    assert list((tmp_path / "4").iterdir()) == []
    assert (temp_dir / "saved_model.pb").read_bytes() == b"new"


def test_version_directory_permissions_follow_the_umask(single_export):
    """The temporary directory is made with mkdir (not mkdtemp's 0700), so a server running as
    another user can read the version once it is renamed into place."""
    umask = os.umask(0)
    os.umask(umask)
    assert single_export.path.stat().st_mode & 0o777 == 0o777 & ~umask
