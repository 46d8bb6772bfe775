"""Atomic writes: a crash mid-write leaves no partial file, and an old file survives."""

import json
import os

import pytest

from harness import files


def test_atomic_write_crash_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "run" / "result.json"

    def crash(fd):
        raise OSError("disk died mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        files.write_json(path, {"status": "complete"})
    assert not path.exists()
    assert list(path.parent.iterdir()) == []   # the temporary file is gone too


def test_atomic_write_keeps_old_file_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    files.write_json(path, {"v": 1})

    def half_write(f):
        f.write(b'{"v": 2, "trunc')
        raise KeyboardInterrupt  # killed in the middle

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, half_write)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_result_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_json(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
