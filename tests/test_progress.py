"""A local sweep's progress (harness/schedule/progress.py) and its queue in `status`."""

import json
import os
import socket

from harness import schedule
from harness.schedule.job import append_attempt, this_process
from harness.schedule.manifest import record_submission, suite_dir
from harness.schedule.progress import Progress
from harness.suite import load_suite

SUITE = """
[suite]
name = "queue"
dataset = "synthetic"
seeds = [0, 1]
[[runs]]
method = "cnn"
epochs = 4
subset = 300
"""


def test_status_calls_runs_waiting_in_a_live_local_sweep_queued(tmp_path):
    """A run in the queue of a local sweep that still runs is 'queued'; once that sweep has
    ended, 'not submitted' (before: always 'not submitted')."""
    path = tmp_path / "queue.toml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    sdir = suite_dir(tmp_path, suite)
    sdir.mkdir(parents=True)
    ids = [s.run_id for s in suite.specs]
    alive = {**this_process(), "host": socket.gethostname()}
    record_submission(sdir, suite, "local", [], {"queued": ids, "sweep_process": alive}, [], sdir / "logs")
    rows = schedule.suite_status(str(path), results_dir=tmp_path)["rows"]
    assert [r.state for r in rows] == ["queued", "queued"]
    assert f"(pid {os.getpid()})" in rows[0].detail
    assert "queued" in schedule.format_status(schedule.suite_status(str(path), results_dir=tmp_path))
    manifest = json.loads((sdir / "manifest.json").read_text())
    manifest["submissions"][-1]["parameters"]["sweep_process"]["pid_start"] = "1"   # another process
    (sdir / "manifest.json").write_text(json.dumps(manifest))
    rows = schedule.suite_status(str(path), results_dir=tmp_path)["rows"]
    assert [r.state for r in rows] == ["not submitted", "not submitted"]


def test_progress_prints_each_epoch_once_with_an_eta(tmp_path):
    path = tmp_path / "queue.toml"
    path.write_text(SUITE)
    specs = list(load_suite(str(path)).specs)
    lines = []
    progress = Progress(tmp_path, specs, lines.append)
    run_dir = tmp_path / "synthetic" / "cnn-lenet5" / specs[0].run_id
    append_attempt(run_dir, {"event": "start", "t": progress.t_wall})
    for epoch in (1, 2):
        append_attempt(run_dir, {"event": "epoch", "t": progress.t_wall + epoch, "epoch": epoch,
                                 "epochs": 4, "val_acc": 0.5})
    progress.poll(specs, force=True)
    progress.poll(specs, force=True)         # nothing new: nothing printed again
    assert len(lines) == 2 and "seed 0: epoch 1/4, val acc 50.00%; sweep 1/8 epochs, about " in lines[0]
    assert "sweep 2/8 epochs, about" in lines[1] and lines[1].endswith(" left")
    progress.finished(specs[0])
    assert progress.eta().startswith("; sweep 4/8 epochs")
