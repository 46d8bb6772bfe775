"""harness/livelog.py: --log tensorboard, an observer outside the spec."""

import sys

import pytest

from harness import livelog, store
from harness.errors import UserError
from harness.runner import execute
from harness.suite import make_spec


def test_unknown_kind_and_missing_package_are_one_line(monkeypatch):
    with pytest.raises(UserError, match="unknown; use --log tensorboard"):
        livelog.check("wandb")
    monkeypatch.setitem(sys.modules, "tensorboard", None)      # as if not installed
    with pytest.raises(UserError, match=r"pip install -e '\.\[tensorboard\]'"):
        livelog.check("tensorboard")
    livelog.check(None)


def test_missing_package_refuses_before_the_run(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    spec = make_spec("cnn", None, "synthetic", epochs=1, subset=200, batch_size=50)
    with pytest.raises(UserError, match="tensorboard"):
        execute(spec, results_dir=tmp_path, progress=False, log="tensorboard")
    assert not any(tmp_path.iterdir())       # nothing written


def test_tensorboard_scalars_per_epoch_and_the_same_run(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = make_spec("cnn", None, "synthetic", epochs=2, subset=200, batch_size=50)
    record = execute(spec, results_dir=tmp_path, progress=False, log="tensorboard")
    rd = store.RunDir.of(tmp_path, spec)
    assert record["run_id"] == spec.run_id and "log" not in record["spec"]
    events = EventAccumulator(str(rd.path / "tensorboard"))
    events.Reload()
    val = events.Scalars("val/acc")
    assert [e.step for e in val] == [1, 2]
    history = rd.history.read_text().splitlines()
    header = history[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in history[1:]]
    assert [e.value for e in val] == pytest.approx([float(r["val_acc"]) for r in rows])
