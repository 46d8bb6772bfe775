"""Atomic writes: a crash mid-write leaves no partial file, and an old file survives."""

import json
import os

import pytest

from harness import store


def test_atomic_write_crash_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "run" / "result.json"

    def crash(fd):
        raise OSError("disk died mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        store.write_json(path, {"status": "complete"})
    assert not path.exists()
    assert list(path.parent.iterdir()) == []   # the temporary file is gone too


def test_atomic_write_keeps_old_file_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    store.write_json(path, {"v": 1})

    def half_write(f):
        f.write(b'{"v": 2, "trunc')
        raise KeyboardInterrupt  # killed in the middle

    with pytest.raises(KeyboardInterrupt):
        store.atomic_write(path, half_write)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_run_dir_is_derived_from_run_id(tmp_path):
    from harness.spec import RunSpec
    a = RunSpec("cnn", "lenet5", "mnist", seed=1)
    b = RunSpec("cnn", "lenet5", "mnist", seed=2)
    assert store.run_dir(tmp_path, a).name == a.run_id and a.run_id.endswith("-s1")
    assert a.config_hash() == b.config_hash() and a.run_id != b.run_id
    assert RunSpec("cnn", "lenet5", "mnist", lr=0.1).config_hash() != a.config_hash()
    assert store.run_dir(tmp_path, RunSpec("cnn", "lenet5", "/x/my data.npz")).parts[-3] == "npz-my_data"


def test_run_id_is_independent_of_number_spelling_and_types_are_checked():
    from harness.errors import UserError
    from harness.spec import RunSpec
    assert RunSpec("cnn", "lenet5", "mnist", lr=1).run_id == RunSpec("cnn", "lenet5", "mnist", lr=1.0).run_id
    assert RunSpec("cnn", "lenet5", "mnist", epochs=3.0).epochs == 3
    with pytest.raises(UserError, match="whole number"):
        RunSpec("cnn", "lenet5", "mnist", batch_size=2.5)


def test_a_run_being_trained_elsewhere_is_refused(tmp_path):
    from harness import runner
    from harness.errors import UserError
    spec = runner.make_spec("cnn", "lenet5", "synthetic", epochs=1, subset=100)
    directory = store.run_dir(tmp_path, spec)
    with runner.run_lock(directory):
        with pytest.raises(UserError, match="another process"):
            runner.execute(spec, results_dir=tmp_path, progress=False)


def test_result_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        store.write_json(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
