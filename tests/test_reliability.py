"""Shared results directories are safe (issue 12), as a small automated battery.

- kill -9 at random points (training step, checkpoint write, history/record write, and
  during a --force run including its swap), then the same command again: the result is
  bit-identical to an uninterrupted run and no temporary file is left;
- symbolic links planted as `.lock`, run directory or suite lock are refused, their
  targets untouched;
- files that would run code when unpickled (a crafted checkpoint, a crafted submitit
  result pickle read by `status`, pickles in a folder others can change): the marker
  file their payload would create never appears;
- two `sweep --executor local` of one suite at once: both exit 0, every run trained once;
- a table of bad inputs: each exits 2 with exactly one line on stderr, no traceback, and
  leaves no debris (no run directory holding only `.lock`, no created data directory,
  no `%j` folder, no temporary files), within 10 s; with the cases of issue 21 (FIFOs and
  /dev/zero where files belong, nesting 200,000 deep, a million-run grid, absurd
  numbers, a host with sbatch but no srun), each run under an alarm and a memory limit
  so that a hang fails the case, not the test run;
- issue 21 besides: `status` reads no log outside its suite folder and calls a run
  running only while the very process recorded is alive; report.md and runs.csv are inert.

Kills use a child process that SIGKILLs itself at the chosen point (the same as an
outside `kill -9` there, but exactly at the point). The points are drawn from a seeded
RNG ($SPECTRAL_BENCH_KILL_SEED, default 12) and printed. Everything runs on a 400-image
.npz cut from the synthetic set, one CPU thread, so that reruns are bit-identical.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import files, runner, schedule, store
from harness.__main__ import main
from harness.data import make_synthetic
from harness.errors import UserError
from harness.suite import make_spec

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parent.parent
TIME_KEYS = ("train_s", "eval_s", "data_s")
SEED = int(os.environ.get("SPECTRAL_BENCH_KILL_SEED", "12"))


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    """400 training and 100 test images of the synthetic set as an .npz dataset."""
    x_tr, y_tr, x_te, y_te = make_synthetic(n_train=400, n_test=100, seed=3)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return path


def run_args(npz: Path, results: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", str(npz), "--epochs", "3", "--batch-size", "50", "--set", "val_size=100",
            "--device", "cpu", "--threads", "1", "--results-dir", str(results), "--quiet", *extra]


def tiny_spec(npz: Path, **kw):
    base = dict(epochs=3, batch_size=50, threads=1)
    base.update(kw)
    return make_spec("cnn", "lenet5", str(npz), {"val_size": "100"}, **base)


def snapshot(run_dir: Path) -> dict:
    """What must be bit-identical between runs: metrics, history without times, weights."""
    import csv

    rec = store.read_record(run_dir)
    with open(run_dir / "history.csv") as f:
        hist = [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in csv.DictReader(f)]
    model = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    return {"status": rec["status"], "metrics": rec["metrics"], "history": hist, "model": model}


def same(a: dict, b: dict) -> bool:
    """Bit-identical: holds by construction for a rerun on this machine, one thread."""
    return (a["status"], a["metrics"], a["history"]) == (b["status"], b["metrics"], b["history"]) and \
        a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k])
                                                       for k in a["model"])


@pytest.fixture(scope="module")
def reference(npz, tmp_path_factory) -> dict:
    """The uninterrupted run, and a checkpoint after epoch 1 of the same spec."""
    root = tmp_path_factory.mktemp("reference")
    assert main(run_args(npz, root / "full")) == 0
    spec = tiny_spec(npz)
    assert runner.execute(spec, results_dir=root / "part", progress=False, stop_after=1) is None
    return {"spec": spec, "dir": store.run_dir(root / "full", spec), "snap":
            snapshot(store.run_dir(root / "full", spec)),
            "checkpoint": store.run_dir(root / "part", spec) / "checkpoint.pt"}


def orphans(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob(".*.tmp")]


# ----------------------------------------------------------------------------- kill -9

CHILD = r"""
import json, os, signal, sys
import torch
torch.set_num_threads(1)
cfg = json.loads(sys.argv[1])
kind, nth, count = cfg["kill"], cfg["nth"], [0]

def hit():
    count[0] += 1
    if count[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)

if kind == "step":                                   # inside training, before an optimizer step
    import harness.step as T
    real_step = T.train_step
    def step(*a, **k):
        hit()
        return real_step(*a, **k)
    T.train_step = step
elif kind in ("checkpoint.pt", "history.csv", "result.json"):   # the file is written, not renamed
    real_fsync = os.fsync
    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith("." + kind + "."):
            hit()
        return real_fsync(fd)
    os.fsync = fsync
elif kind == "swap":                                 # between the moves of a --force swap
    real_replace = os.replace
    def replace(src, dst, *a, **k):
        if "/.staging/" in str(src) and "/.staging/" not in str(dst):
            hit()
        return real_replace(src, dst, *a, **k)
    os.replace = replace
from harness.__main__ import main
sys.exit(main(cfg["argv"]))
"""


def killed_run(argv: list[str], kill: str, nth: int) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"argv": argv, "kill": kill, "nth": nth})],
                         capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert res.returncode in (-signal.SIGKILL, 0), res.stderr[-3000:]
    return res.returncode


def test_kill_minus_9_anywhere_then_rerun_is_bit_identical(npz, reference, tmp_path):
    """Plain runs: 2 kills in training, 2 in checkpoint writes, 1 each in the history and
    record writes. --force over a finished run: 1 in training, 1 in a staged checkpoint,
    1 in the staged record, 1 in the swap; the old record must survive every one."""
    rng = random.Random(SEED)
    steps = 2 + 3 * 6           # warm-up steps + 3 epochs of 6 steps (300 images, batch 50)
    plan = [("step", rng.randint(3, steps)), ("step", rng.randint(3, steps)),
            ("checkpoint.pt", rng.randint(1, 3)), ("checkpoint.pt", rng.randint(1, 3)),
            ("history.csv", 1), ("result.json", 1)]
    forced = [("step", rng.randint(3, steps)), ("checkpoint.pt", rng.randint(1, 3)),
              ("result.json", 1), ("swap", rng.randint(1, 3))]
    spec, ref = reference["spec"], reference["snap"]
    tally = {"kills": 0, "survived": 0, "orphans_made": 0, "orphans_left": 0, "record_lost": 0}
    for i, (kind, nth) in enumerate(plan + forced):
        force = i >= len(plan)
        root = tmp_path / f"k{i}"
        d = store.run_dir(root, spec)
        if force:                        # a finished run to be replaced
            shutil.copytree(reference["dir"], d)
            old = store.read_record(d)
        code = killed_run(run_args(npz, root, *(["--force"] if force else [])), kind, nth)
        assert code == -signal.SIGKILL, f"{kind} #{nth}: the child was not killed"
        tally["kills"] += 1
        tally["orphans_made"] += len(orphans(root))
        if force:                        # never without a finished record, old or new
            rec = store.read_record(d)
            if not (rec and rec["status"] == "complete"):
                tally["record_lost"] += 1
            assert rec == old or (kind == "swap" and rec["status"] == "complete"), (kind, nth)
        # the same command again (here in-process, also one thread)
        assert main(run_args(npz, root, *(["--force"] if force else []))) == 0, (kind, nth)
        left = orphans(root) + ([d / store.STAGING] if (d / store.STAGING).exists() else [])
        tally["orphans_left"] += len(left)
        if same(snapshot(d), ref) and not left:
            tally["survived"] += 1
        else:
            pytest.fail(f"kill at {kind} #{nth} (force={force}): rerun differs or left {left}")
    print(f"\nkill -9 battery (seed {SEED}): {tally['survived']}/{tally['kills']} kills survived "
          f"bit-identical; {tally['orphans_made']} orphan temporary files made by the kills, "
          f"{tally['orphans_left']} left after the rerun; finished records lost by --force: "
          f"{tally['record_lost']}")
    assert tally["survived"] == tally["kills"] == len(plan) + len(forced)
    assert tally["orphans_made"] >= 4       # the write kills really left files to clean


def test_force_keeps_the_old_record_and_resumes_from_staging(npz, reference, tmp_path):
    spec = reference["spec"]
    d = store.run_dir(tmp_path, spec)
    shutil.copytree(reference["dir"], d)
    old = store.read_record(d)
    # interrupted after epoch 1 of the forced run: the old record is untouched
    assert runner.execute(spec, results_dir=tmp_path, progress=False, force=True, stop_after=1) is None
    assert store.read_record(d) == old and (d / store.STAGING / "checkpoint.pt").exists()
    # without --force the finished record answers; with it, the staged run resumes
    assert runner.execute(spec, results_dir=tmp_path, progress=False) == old
    rec = runner.execute(spec, results_dir=tmp_path, progress=False, force=True)
    assert rec["timing"]["sessions"] == 2 and store.read_record(d) == rec
    assert same(snapshot(d), reference["snap"]) and not (d / store.STAGING).exists()
    # a journal planted in the shared directory cannot make the swap delete other files
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (d / store.STAGING).mkdir()
    (d / store.STAGING / store.COMMIT).write_text(json.dumps({"remove": ["../../../../victim.txt"],
                                                                "move": ["../x"]}))
    with pytest.raises(UserError, match="not followed"):
        store.RunDir(d).finish_swap()
    assert victim.read_text() == "precious" and store.RunDir(d)._read() == rec


def test_run_suite_goes_on_past_a_refused_run(npz, reference, tmp_path, capsys):
    from harness.suite import load_suite

    suite = write_suite(tmp_path / "pair.toml", npz, epochs=1)
    first, second = load_suite(str(suite)).specs
    results = tmp_path / "r"
    d = store.run_dir(results, first)
    d.mkdir(parents=True)
    shutil.copy(reference["checkpoint"], d / "checkpoint.pt")    # a checkpoint of another spec
    assert main(["run", "--suite", str(suite), "--results-dir", str(results), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "different spec" in err and err.strip().splitlines()[-1].startswith("error: 1 of 2 runs")
    assert "Traceback" not in err
    assert store.read_record(store.run_dir(results, second))["status"] == "complete"


# ----------------------------------------------------------------------------- symlinks

def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_symlinked_lock_and_run_directory_are_refused(npz, reference, tmp_path, capsys):
    spec = reference["spec"]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    # a .lock that points at someone's file: refused, the file keeps its bytes
    d = store.run_dir(tmp_path / "a", spec)
    d.mkdir(parents=True)
    (d / ".lock").symlink_to(victim)
    assert main(run_args(npz, tmp_path / "a")) == 2
    assert "symbolic link" in one_line(capsys) and victim.read_text() == "precious"
    # a run directory that is a link, with and without --force: the target is untouched
    target = tmp_path / "elsewhere"
    shutil.copytree(reference["dir"], target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    d = store.run_dir(tmp_path / "b", spec)
    d.parent.mkdir(parents=True)
    d.symlink_to(target)
    for extra in ([], ["--force"]):
        assert main(run_args(npz, tmp_path / "b", *extra)) == 2
        assert "symbolic link" in one_line(capsys)
        assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    # a folder above the run directory that is a link
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / d.parent.parent.name).symlink_to(tmp_path / "b" / d.parent.parent.name)
    assert main(run_args(npz, tmp_path / "c")) == 2 and "symbolic link" in one_line(capsys)
    # the suite lock
    sdir = tmp_path / "sdir"
    sdir.mkdir()
    (sdir / ".lock").symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        with store.locked(sdir, wait=True):
            pass
    assert victim.read_text() == "precious"


# ----------------------------------------------------------------------------- code execution

class Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_files_never_run_code(npz, reference, tmp_path, capsys, monkeypatch):
    import pickle

    spec = reference["spec"]
    attempts, executed = 0, 0
    # 1. checkpoints with a payload in timing, history, model state and at the top level
    for where in ("timing", "history", "model", "top"):
        marker = tmp_path / f"marker-ckpt-{where}"
        ckpt = torch.load(reference["checkpoint"], weights_only=True)
        if where == "history":
            ckpt["history"].append({"epoch": Payload(marker)})
        elif where == "top":
            ckpt["extra"] = Payload(marker)
        else:
            ckpt[where]["evil"] = Payload(marker)
        root = tmp_path / f"ck-{where}"
        d = store.run_dir(root, spec)
        d.mkdir(parents=True)
        torch.save(ckpt, d / "checkpoint.pt")
        assert main(run_args(npz, root)) == 2
        assert "refusing to load checkpoint" in one_line(capsys)
        attempts += 1
        executed += marker.exists()
    # a checkpoint of an older harness (numpy RNG state as an array) still resumes
    ckpt = torch.load(reference["checkpoint"], weights_only=True)
    kind, keys, *rest = ckpt["rng"]["numpy"]
    ckpt["rng"]["numpy"] = (kind, keys.numpy().astype(np.uint32), *rest)
    d = store.run_dir(tmp_path / "legacy", spec)
    d.mkdir(parents=True)
    torch.save(ckpt, d / "checkpoint.pt")
    assert main(run_args(npz, tmp_path / "legacy")) == 0
    assert same(snapshot(d), reference["snap"])

    # 2. status with a crafted submitit result pickle where the old code read one
    suite = tmp_path / "s.toml"
    suite.write_text(f'[suite]\nname = "s"\ndataset = "{npz}"\n[budgets.b]\nepochs = 1\n'
                     f'[[runs]]\nmethod = "cnn"\narch = "lenet5"\nseeds = [0, 1]\n')
    from harness.suite import load_suite
    specs = load_suite(str(suite)).specs
    root = tmp_path / "st"
    sdir = schedule.suite_dir(root, load_suite(str(suite)))
    folder = sdir / "logs"
    runs = {}
    for i, s in enumerate(specs):
        job = f"77_{i}"
        (folder / job).mkdir(parents=True)
        marker = tmp_path / f"marker-result-{i}"
        with open(folder / job / f"{job}_0_result.pkl", "wb") as f:
            pickle.dump(("error", Payload(marker)), f)
        log = folder / job / f"{job}_0_log.out"
        log.write_text("Traceback (most recent call last):\n  File \"x\", line 1\n"
                       "ValueError: the real reason\nsubmitit ERROR: job failed\n")
        runs[s.run_id] = {"job_id": job, "run_id": s.run_id, "executor": "slurm", "folder": str(folder / "%j"),
                          "log": str(log)}
        store.run_dir(root, s).mkdir(parents=True)
    sdir.mkdir(parents=True, exist_ok=True)
    files.write_json(sdir / "manifest.json", {"submissions": [{"number": 1}], "runs": runs})
    bare = tmp_path / "bin"     # no sacct/squeue: status falls back to the files
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    rep = schedule.suite_status(str(suite), results_dir=root)
    attempts += len(specs)
    executed += sum((tmp_path / f"marker-result-{i}").exists() for i in range(len(specs)))
    assert [r.detail for r in rep["rows"]] == ["ValueError: the real reason"] * 2
    monkeypatch.undo()

    # 3. job pickles in a folder others could replace: refused before anything is written
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)          # group/world-writable, no sticky bit
    with pytest.raises(UserError, match="not private"):
        schedule.job_folder(shared / "_suites" / "x")
    attempts += 1
    assert not list(shared.rglob("*.pkl"))
    private = schedule.job_folder(tmp_path / "mine" / "_suites" / "x")
    assert private.stat().st_mode & 0o777 == 0o700
    print(f"\ncode-execution attempts: {executed} of {attempts} executed")
    assert executed == 0


# ----------------------------------------------------------------------------- concurrency

def write_suite(path: Path, npz: Path, epochs: int = 2) -> Path:
    path.write_text(textwrap.dedent(f"""
        [suite]
        name = "pair"
        dataset = "{npz}"
        seeds = [0, 1]
        [budgets.b]
        epochs = {epochs}
        batch_size = 50
        val_size = 100
        [[runs]]
        method = "cnn"
        arch = "lenet5"
        """))
    return path


def test_a_run_locked_elsewhere_is_skipped_not_failed(npz, tmp_path, capsys):
    from harness.suite import load_suite

    suite = write_suite(tmp_path / "pair.toml", npz, epochs=1)
    first, second = load_suite(str(suite)).specs
    results = tmp_path / "r"
    with store.RunDir(store.run_dir(results, first)).lock():
        assert main(["run", "--suite", str(suite), "--results-dir", str(results), "--quiet"]) == 0
        err = capsys.readouterr().err
        assert "running elsewhere" in err and "error" not in err
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-m", "harness", "sweep", str(suite), "--executor", "local",
                              "--results-dir", str(results)], capture_output=True, text=True,
                             timeout=300, env=env, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "running elsewhere" in out.stdout and "FAILED" not in out.stdout
    assert "0 failed, 1 running elsewhere (skipped)" in out.stdout
    assert store.read_record(store.run_dir(results, first)) is None
    assert store.read_record(store.run_dir(results, second))["status"] == "complete"
    assert not list(results.rglob("%j"))


def test_two_local_sweeps_of_one_suite_at_once(npz, tmp_path):
    suite = write_suite(tmp_path / "pair.toml", npz, epochs=4)
    results = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "harness", "sweep", str(suite), "--executor", "local",
           "--results-dir", str(results)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=REPO) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert "FAILED" not in out and "being trained by another process" not in out
    from harness.suite import load_suite
    for s in load_suite(str(suite)).specs:
        d = store.run_dir(results, s)
        assert store.read_record(d)["status"] == "complete"
        att = schedule.read_attempts(d)
        events = [a for a in att if a["event"] != "epoch"]     # epoch lines: the sweep's progress
        assert [a["event"] for a in events] == ["start", "end"] and events[1]["outcome"] == "complete"
    assert not list(results.rglob("%j")) and not orphans(results)
    schedule.read_manifest(schedule.suite_dir(results, load_suite(str(suite))))   # still valid
    elsewhere = sum(o.count("running elsewhere") for o, _ in outs)
    print(f"\ntwo sweeps at once: exit {[p.returncode for p in procs]}, "
          f"{elsewhere} 'running elsewhere' skips, 0 failures")


def test_status_into_a_closed_pipe_is_quiet(npz, tmp_path):
    suite = write_suite(tmp_path / "pair.toml", npz)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "harness", "status", str(suite), "--results-dir",
                          str(tmp_path / "r")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         cwd=REPO)
    p.stdout.close()           # as `| head` does after its lines
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == "", err


def test_refused_sbatch_leaves_no_files(npz, tmp_path, capsys, monkeypatch):
    # every program submitit needs (sbatch refuses), and nothing else on PATH: a SLURM
    # installed on this machine by an earlier run must not take part
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", "echo 'sbatch: error: invalid partition specified: nope' >&2\nexit 1"),
                       ("srun", "exit 0"), ("scontrol", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    suite = write_suite(tmp_path / "pair.toml", npz)
    results = tmp_path / "r"
    assert main(["sweep", str(suite), "--results-dir", str(results), "--max-array-size", "5"]) == 2
    assert "invalid partition" in one_line(capsys)
    left = [p.name for p in results.rglob("*") if p.is_file() and p.name != ".lock"]
    assert left == [], left
    assert not list(results.rglob("%j"))


# ----------------------------------------------------------------------------- records

def test_records_are_strict_json_and_status_shows_broken_ones(npz, tmp_path):
    files.write_json(tmp_path / "r.json", {"loss": float("nan"), "x": [float("inf"), 1.0]})

    def refuse(name):
        raise ValueError(f"bare {name} in a record")

    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse) == \
        {"loss": None, "x": [None, 1.0]}
    suite = write_suite(tmp_path / "pair.toml", npz)
    from harness.suite import load_suite
    a, b = load_suite(str(suite)).specs
    root = tmp_path / "res"
    files.write_json(store.run_dir(root, a) / "result.json", {"status": "complete"})
    store.run_dir(root, b).mkdir(parents=True)
    (store.run_dir(root, b) / "result.json").write_text("{not json")
    rows = schedule.suite_status(str(suite), results_dir=root)["rows"]
    assert rows[0].state == "done" and "nan" not in rows[0].detail and "no test accuracy" in rows[0].detail
    assert rows[1].state == "unknown" and "unreadable" in rows[1].detail


def test_corrupt_history_csv_is_reported_not_fatal(npz, reference, tmp_path, capsys):
    root = tmp_path / "res"
    d = root / "x" / "y" / reference["dir"].name
    shutil.copytree(reference["dir"], d)
    (d / "history.csv").write_text("epoch,train_loss\n1,abc\n2\n")
    assert main(["report", str(root), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "history.csv" in capsys.readouterr().err
    assert "no history" in (tmp_path / "out" / "report.md").read_text()


# ----------------------------------------------------------------------------- bad inputs

def _npz(path: Path, drop: str | None = None, **over) -> Path:
    x = np.zeros((20, 8, 8), np.uint8)
    d = dict(x_train=x, y_train=np.arange(20) % 4, x_test=x[:8], y_test=np.arange(8) % 4)
    d.update(over)
    d.pop(drop, None)
    np.savez(path, **d)
    return path


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _suite(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


SUITE_OK = '[suite]\nname = "t"\ndataset = "synthetic"\n[budgets.b]\nepochs = 1\n[[runs]]\nmethod = "cnn"\n'


def _plant_record(t: Path, npz: Path, text: str) -> list[str]:
    d = store.run_dir(t / "r", tiny_spec(npz))
    d.mkdir(parents=True)
    (d / "result.json").write_text(text)
    return run_args(npz, t / "r")


def _plant_checkpoint(t: Path, npz: Path, reference, kind: str) -> list[str]:
    d = store.run_dir(t / "r", tiny_spec(npz))
    d.mkdir(parents=True)
    if kind == "garbage":
        (d / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    else:   # a real checkpoint of another spec
        ckpt = torch.load(reference["checkpoint"], weights_only=True)
        ckpt["spec"] = dict(ckpt["spec"], lr=0.5)
        torch.save(ckpt, d / "checkpoint.pt")
    return run_args(npz, t / "r")


def _suite_with_planted(t: Path, npz: Path, what: str) -> Path:
    from harness.suite import load_suite

    suite = write_suite(t / "pair.toml", npz)
    s = load_suite(str(suite))
    if what == "record":
        d = store.run_dir(t / "r", s.specs[0])
        d.mkdir(parents=True)
        (d / "result.json").write_bytes(b"\xff\xfe garbage")
    else:
        sdir = schedule.suite_dir(t / "r", s)
        sdir.mkdir(parents=True)
        (sdir / "manifest.json").write_text('{"submissions": 3}')
    return suite


def bad_inputs(npz, reference):
    """(name, argv builder(t), patch(monkeypatch, t) or None, expected text in the error)."""
    def R(t, *a, dataset=None, results=None):       # a run on the tiny .npz
        return ["run", "--dataset", str(dataset or npz), "--epochs", "1", "--device", "cpu",
                "--results-dir", str(t / "r") if results is None else results,
                "--data-dir", str(t / "d"), "--quiet", "--set", "val_size=100", *a]

    def N(t, *a):                                   # a run without --dataset (MNIST or synthetic)
        return ["run", "--results-dir", str(t / "r"), "--data-dir", str(t / "d"), "--quiet", *a]

    def sweep(t, body, *a):
        return ["sweep", str(_suite(t / "s.toml", body)), "--results-dir", str(t / "r"), *a]

    def enospc(mp, t):
        def fsync(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        mp.setattr(os, "fsync", fsync)

    def erofs(mp, t):
        real = os.mkdir

        def mkdir(path, *a, **k):
            if str(path).startswith(str(t / "r")):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real(path, *a, **k)
        mp.setattr(os, "mkdir", mkdir)

    def offline(mp, t):
        import urllib.request

        def urlopen(url, *a, **k):
            raise urllib.error.URLError(f"no network for {url.split('/')[2]}")
        mp.setattr(urllib.request, "urlopen", urlopen)

    labels = np.arange(19) % 4
    return [
        # method and training options
        ("dropout_conv=2 (cnn)", lambda t: R(t, "--set", "dropout_conv=2"), None, "dropout_conv"),
        ("dropout_fc=-0.1", lambda t: R(t, "--set", "dropout_fc=-0.1"), None, "dropout_fc"),
        ("dropout=1 (spatial-param)", lambda t: R(t, "--method", "spatial-param", "--set", "dropout=1"),
         None, "dropout"),
        ("momentum=-1", lambda t: R(t, "--set", "momentum=-1"), None, "momentum must be >= 0"),
        ("seed 1e20", lambda t: R(t, "--seed", "100000000000000000000"), None, "--seed"),
        ("seed -1", lambda t: R(t, "--seed", "-1"), None, "--seed"),
        ("lr inf", lambda t: R(t, "--lr", "inf"), None, "finite"),
        ("lr nan", lambda t: R(t, "--lr", "nan"), None, "finite"),
        ("lr 0", lambda t: R(t, "--lr", "0"), None, "--lr must be > 0"),
        ("clip_norm=nan", lambda t: R(t, "--set", "clip_norm=nan"), None, "clip_norm"),
        ("warmup_epochs=-5", lambda t: R(t, "--set", "warmup_epochs=-5"), None, "warmup_epochs"),
        ("weight_decay=-1", lambda t: R(t, "--set", "weight_decay=-1"), None, "weight_decay"),
        ("lr_min=inf", lambda t: R(t, "--set", "lr_min=inf"), None, "lr_min"),
        ("act_std=nan (cemnet)", lambda t: R(t, "--method", "cemnet", "--set", "act_std=nan"), None,
         "act_std"),
        ("wf=bogus (cemnet)", lambda t: R(t, "--method", "cemnet", "--set", "wf=bogus"), None, "bogus"),
        ("optimizer=adagrad", lambda t: R(t, "--set", "optimizer=adagrad"), None, "optimizer"),
        ("val_size=-1", lambda t: R(t, "--set", "val_size=-1"), None, "val_size"),
        ("epochs 0", lambda t: R(t, "--epochs", "0"), None, "--epochs"),
        ("batch-size 0", lambda t: R(t, "--batch-size", "0"), None, "--batch-size"),
        ("batch-size 100000", lambda t: R(t, "--batch-size", "100000"), None, "larger than the"),
        ("subset 1", lambda t: R(t, "--subset", "1"), None, "--subset"),
        ("subset -3", lambda t: R(t, "--subset", "-3"), None, "--subset"),
        ("device tpu", lambda t: R(t, "--device", "tpu"), None, "device"),
        ("device cuda:7", lambda t: R(t, "--device", "cuda:7"), None, "cuda"),
        ("arch resnet", lambda t: R(t, "--arch", "resnet"), None, "valid architectures"),
        ("vgg-small on 28x28", lambda t: R(t, "--arch", "vgg-small"), None, "too small"),
        ("--set nope=1", lambda t: R(t, "--set", "nope=1"), None, "valid options"),
        ("--set without =", lambda t: R(t, "--set", "dropout_conv"), None, "key=value"),
        # no --dataset: checked before MNIST is looked for, downloaded or its folder made
        ("method typo", lambda t: N(t, "--method", "cnnn"), None, "valid methods"),
        ("epochs 0, no dataset", lambda t: N(t, "--epochs", "0"), None, "--epochs"),
        ("device tpu, no dataset", lambda t: N(t, "--device", "tpu"), None, "device"),
        ("mnist offline", lambda t: ["run", "--dataset", "mnist", "--data-dir", str(t / "d" / "new"),
                                     "--results-dir", str(t / "r")], offline, "ossci-datasets"),
        # results directory
        ("results-dir ''", lambda t: R(t, results=""), None, "empty"),
        ("results-dir is a file", lambda t: R(t, results=str(_file(t / "f", b"x"))), None, "not a directory"),
        ("results-dir read-only", lambda t: R(t), erofs, "Read-only"),
        ("disk full", lambda t: R(t), enospc, "No space left"),
        # datasets
        ("npz empty", lambda t: R(t, dataset=_file(t / "e.npz", b"")), None, "cannot read"),
        ("npz not a zip", lambda t: R(t, dataset=_file(t / "z.npz", b"hello")), None, "cannot read"),
        ("npz member without .npy", lambda t: R(t, dataset=_zip(t / "m.npz")), None, "lacks keys"),
        ("npz label 2^31", lambda t: R(t, dataset=_npz(t / "l.npz", y_train=np.r_[labels, 2**31])), None,
         "relabel"),
        ("npz stray label 5000", lambda t: R(t, dataset=_npz(t / "s.npz", y_train=np.r_[labels, 5000])),
         None, "relabel"),
        ("npz float images", lambda t: R(t, dataset=_npz(t / "f.npz", x_train=np.zeros((20, 8, 8)))), None,
         "uint8"),
        ("npz missing key", lambda t: R(t, dataset=_npz(t / "k.npz", drop="y_test")), None, "lacks keys"),
        ("missing.npz", lambda t: R(t, dataset=t / "missing.npz"), None, "does not exist"),
        ("dataset imagenet", lambda t: R(t, dataset="imagenet"), None, "valid datasets"),
        # suite files
        ("suite hparams string", lambda t: sweep(t, SUITE_OK + 'hparams = "x"\n', "--dry-run"), None,
         "hparams"),
        ("suite budgets = 3", lambda t: sweep(t, 'budgets = 3\n[[runs]]\nmethod = "cnn"\n', "--dry-run"),
         None, "budgets"),
        ("suite = \"x\"", lambda t: sweep(t, 'suite = "x"\n[[runs]]\nmethod = "cnn"\n', "--dry-run"),
         None, "suite"),
        ("suite not UTF-8", lambda t: ["run", "--suite", str(_file(t / "u.toml", b'[suite]\nname = "\xff"\n'))],
         None, "UTF-8"),
        ("suite unknown [suite] key", lambda t: sweep(t, SUITE_OK.replace(
            'name = "t"', 'name = "t"\ndefault_budjet = "b"'), "--dry-run"), None, "default_budjet"),
        ("suite unknown top-level key", lambda t: sweep(t, SUITE_OK + "[slurn]\n", "--dry-run"), None, "slurn"),
        ("suite default_budget missing", lambda t: sweep(t, SUITE_OK.replace(
            'name = "t"', 'name = "t"\ndefault_budget = "long"'), "--dry-run"), None, "default_budget"),
        ("suite dataset = 3", lambda t: sweep(t, SUITE_OK.replace('dataset = "synthetic"', "dataset = 3"),
                                              "--dry-run"), None, "dataset"),
        ("suite invalid TOML", lambda t: ["run", "--suite", str(_file(t / "i.toml", b"[suite\n"))], None,
         "invalid TOML"),
        ("suite + --method", lambda t: ["run", "--suite", str(_suite(t / "j.toml", SUITE_OK)), "--method",
                                        "cemnet"], None, "cannot be combined"),
        ("suite missing", lambda t: ["sweep", str(t / "nope.toml"), "--dry-run"], None, "does not exist"),
        # sweep options
        ("max-parallel 0", lambda t: sweep(t, SUITE_OK, "--executor", "local", "--max-parallel", "0"), None,
         "--max-parallel"),
        ("devices tpu", lambda t: sweep(t, SUITE_OK, "--executor", "local", "--devices", "tpu"), None,
         "--devices"),
        ("sweep --time soon", lambda t: sweep(t, SUITE_OK, "--dry-run", "--time", "soon"), None, "--time"),
        ("sweep --sbatch x", lambda t: sweep(t, SUITE_OK, "--dry-run", "--sbatch", "x"), None, "--sbatch"),
        # files in the results directory
        ("invalid result.json (run)", lambda t: _plant_record(t, npz, "{oops"), None, "unreadable"),
        ("record without status (run)", lambda t: _plant_record(t, npz, "[1, 2]"), None, "not a run record"),
        ("invalid result.json (dry-run)", lambda t: ["sweep", str(_suite_with_planted(t, npz, "record")),
                                                     "--dry-run", "--results-dir", str(t / "r")], None,
         "unreadable"),
        ("invalid manifest (status)", lambda t: ["status", str(_suite_with_planted(t, npz, "manifest")),
                                                 "--results-dir", str(t / "r")], None, "manifest"),
        ("invalid manifest (dry-run)", lambda t: ["sweep", str(_suite_with_planted(t, npz, "manifest")),
                                                  "--dry-run", "--results-dir", str(t / "r")], None,
         "manifest"),
        ("checkpoint of another spec", lambda t: _plant_checkpoint(t, npz, reference, "foreign"), None,
         "different spec"),
        ("checkpoint garbage", lambda t: _plant_checkpoint(t, npz, reference, "garbage"), None,
         "cannot read checkpoint"),
        ("report of nothing", lambda t: ["report", str(t / "nothing"), "--out", str(t / "o")], None,
         "does not exist"),
    ]


def _zip(path: Path) -> Path:
    import zipfile
    with zipfile.ZipFile(path, "w") as z:
        for k in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(k, b"not an array")
    return path


def debris(t: Path, before: set[str]) -> list[str]:
    """What a refused command left behind that was not there before it ran."""
    found = []
    for p in t.rglob("*"):
        rel = str(p.relative_to(t))
        if rel in before:
            continue
        if p.is_dir() and {c.name for c in p.iterdir()} <= {".lock"} and p.name != "d":
            found.append(f"{rel}/ (only .lock)" if (p / ".lock").exists() else f"{rel}/ (empty)")
        elif p.name.endswith(".tmp") or "%j" in p.name:
            found.append(rel)
    if (t / "d").exists():
        found.append("d/ (data directory created)")
    return found


def test_bad_inputs_one_line_exit_2_no_debris(npz, reference, tmp_path, capsys, monkeypatch):
    """Every case: its expected outcome (one `error:` line and exit 2, unless the case says
    otherwise: `Warned`, `Shown`), within 10 s, no debris. The issue-21 cases (a section
    of their own below) are tallied apart. Each case runs `guarded`: a harness that hangs
    or streams /dev/zero fails the case instead of the test process."""
    import harness.runner, harness.schedule, reports.render    # noqa: F401 - imports are not a case's time

    old, new = bad_inputs(npz, reference), issue21_inputs(npz, reference)
    tally = {"old": {}, "new": {}}
    problems = []
    for i, (name, argv, patch, expect) in enumerate(old + new):
        t = tmp_path / f"c{i:02d}"
        t.mkdir()
        args = argv(t)
        before = {str(p.relative_to(t)) for p in t.rglob("*")}
        _run_case(i, name, args, patch, expect, t, before, len(old), tally, problems, capsys, monkeypatch)
    for which, label in (("old", "bad inputs"), ("new", "issue 21 cases")):
        counts = tally[which]
        n = len(old) if which == "old" else len(new)
        if which == "new":
            label += f" ({sum(not c[0].startswith('21+') for c in new)} listed in the issue, the rest found beside them)"
        print(f"\n{label}: {n} tried, {counts.get('clean', 0)} clean (the expected one line, exit "
              f"status, within 10 s, no debris); " + ", ".join(
                  f"{v} {k}" for k, v in sorted(counts.items()) if k != "clean"))
    assert len(old) >= 40 and len(new) >= 25
    assert not problems, "\n".join(problems)


def _run_case(i, name, args, patch, expect, t, before, n_old, tally, problems, capsys, monkeypatch):
    """Run one battery case (in this process, or in a child) and count its verdict."""
    capsys.readouterr()
    with monkeypatch.context() as mp:
        if patch:
            patch(mp, t)
        t0 = time.monotonic()
        try:
            with guarded():
                code = main(args)
        except Hung:
            code = None
        except BaseException as exc:  # noqa: BLE001 - the battery counts, then reports
            code = f"{type(exc).__name__}: {str(exc)[:300]}"
        seconds = time.monotonic() - t0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    kind, detail = judge(code, out, err, seconds, expect)
    left = debris(t, before)
    if kind == "clean" and left:
        kind, detail = "debris", f"debris {left}"
    counts = tally["old" if i < n_old else "new"]
    counts[kind] = counts.get(kind, 0) + 1
    if kind != "clean":
        problems.append(f"{name}: {kind}: {detail}")


def test_status_of_a_duplicate_slurm_task_that_found_its_run_locked(tmp_path, monkeypatch):
    """Two SLURM sweeps at once submit a run twice; the task that finds it locked ends
    COMPLETED without a record. status must not call that a failure."""
    suite = _suite(tmp_path / "s.toml", SUITE_OK)
    from harness.suite import load_suite
    s = load_suite(str(suite))
    sdir = schedule.suite_dir(tmp_path / "r", s)
    sdir.mkdir(parents=True)
    log = sdir / "logs" / "5_0" / "5_0_0_log.out"       # where sweep's job logs live
    log.parent.mkdir(parents=True)
    log.write_text(f"harness: run {s.specs[0].run_id} is running elsewhere (being trained by another "
                   f"process); wait for it or stop it\n")
    files.write_json(sdir / "manifest.json", {"submissions": [], "runs": {s.specs[0].run_id: {
        "job_id": "5_0", "executor": "slurm", "log": str(log)}}})
    monkeypatch.setattr(schedule.status, "job_states", lambda jobs, timeout: ({"5_0": {"state": "COMPLETED"}},
                                                                       "sacct", []))
    (row,) = schedule.suite_status(str(suite), results_dir=tmp_path / "r")["rows"]
    assert row.state == "running" and "running elsewhere" in row.detail


# ============================================================================ issue 21b
# Interrupted work heals (a --force swap killed at any point is completed by the next
# command of any kind), a resume is exact whatever the environment (the first session's
# thread count is kept), and killing a local sweep leaves no training process behind.

SWAP_POINTS = ("journal", "move checkpoint.pt", "move history.csv", "move result.json",
               "unlink journal", "rmdir staging")

SWAP_CHILD = r"""
import json, os, signal, sys
cfg = json.loads(sys.argv[1])
point = cfg["point"]
real = {f: getattr(os, f) for f in ("fsync", "replace", "unlink", "rmdir")}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def fsync(fd):   # the journal is written, not yet renamed into place
    if point == "journal" and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".commit.json."):
        die()
    return real["fsync"](fd)

def replace(src, dst, *a, **k):   # before one of the moves out of the staging directory
    if point == "move " + os.path.basename(str(dst)) and "/.staging/" in str(src) \
            and "/.staging/" not in str(dst):
        die()
    return real["replace"](src, dst, *a, **k)

def unlink(path, *a, **k):        # every file moved, the journal still there
    if point == "unlink journal" and os.path.basename(str(path)) == "commit.json":
        die()
    return real["unlink"](path, *a, **k)

def rmdir(path, *a, **k):         # the journal gone, the empty staging directory still there
    if point == "rmdir staging" and os.path.basename(str(path)) == ".staging":
        die()
    return real["rmdir"](path, *a, **k)

os.fsync, os.replace, os.unlink, os.rmdir = fsync, replace, unlink, rmdir
from harness.__main__ import main
sys.exit(main(cfg["argv"]))
"""


def one_run_suite(path: Path, npz: Path) -> Path:
    """A suite of the single run `run_args` makes (one thread), one epoch, so that `run`,
    `sweep`, `status` and `report` all name the same run directory."""
    return _suite(path, f"""
        [suite]
        name = "one"
        dataset = "{npz}"
        seeds = [0]
        [budgets.b]
        epochs = 1
        batch_size = 50
        val_size = 100
        threads = 1
        [[runs]]
        method = "cnn"
        arch = "lenet5"
        """)


def one_run(d: Path) -> bool:
    """Record, history and checkpoint are the files of one run: the seconds of each epoch
    in history.csv and in the checkpoint, and their sum in the record, are the same
    numbers (written from the same floats, so == holds by construction); two runs never
    share them (wall-clock timings)."""
    import csv

    rec = json.loads((d / "result.json").read_text())
    with open(d / "history.csv") as f:
        hist = [float(r["train_s"]) for r in csv.DictReader(f)]
    ckpt = torch.load(d / "checkpoint.pt", weights_only=True)
    return rec["timing"]["train_s"] == ckpt["timing"]["train_s"] and \
        hist == [h["train_s"] for h in ckpt["history"]]


def record_file(d: Path) -> dict | None:
    """result.json as it lies on disk (read without the harness, so without healing)."""
    return json.loads((d / "result.json").read_text()) if (d / "result.json").exists() else None


def swap_pending(d: Path) -> bool:
    """A journal, or a finished record, still waits in the staging directory."""
    staged = d / store.STAGING
    return (staged / store.COMMIT).exists() or (staged / store.RESULT).exists()


@pytest.fixture(scope="module")
def killed_swaps(npz, tmp_path_factory) -> dict:
    """A finished run, then `run --force` of it killed (kill -9) at each point of its swap:
    {point: results directory as the kill left it}, and the old record."""
    base = tmp_path_factory.mktemp("swaps")
    suite = one_run_suite(base / "one.toml", npz)
    old_root = base / "old"
    assert main(["run", "--suite", str(suite), "--results-dir", str(old_root), "--quiet"]) == 0
    from harness.suite import load_suite
    spec = load_suite(str(suite)).specs[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    states, children = {}, {}
    for i, point in enumerate(SWAP_POINTS):       # the children run at once
        root = base / f"p{i}"
        shutil.copytree(old_root, root)
        argv = ["run", "--suite", str(suite), "--results-dir", str(root), "--quiet", "--force"]
        children[point] = subprocess.Popen([sys.executable, "-c", SWAP_CHILD,
                                            json.dumps({"argv": argv, "point": point})],
                                           stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        states[point] = root
    for point, child in children.items():
        err = child.communicate(timeout=300)[1]
        assert child.returncode == -signal.SIGKILL, f"{point}: not killed there: {err[-2000:]}"
    return {"suite": suite, "spec": spec, "states": states,
            "old": record_file(store.run_dir(old_root, spec))}


def test_a_force_swap_killed_at_any_point_heals_on_the_next_command(killed_swaps, tmp_path, capsys):
    """Each of the 6 kill points x each of 6 commands (run, run --force, a local sweep, a
    SLURM sweep's plan, status, report): afterwards the run directory holds one run, the
    forced one (never the old record once its replacement was finished), and no swap is
    left pending."""
    suite, spec = str(killed_swaps["suite"]), killed_swaps["spec"]
    commands = {
        "run": lambda r: ["run", "--suite", suite, "--results-dir", str(r), "--quiet"],
        "run --force": lambda r: ["run", "--suite", suite, "--results-dir", str(r), "--quiet", "--force"],
        "sweep --executor local": lambda r: ["sweep", suite, "--executor", "local", "--results-dir", str(r)],
        "sweep (SLURM plan)": lambda r: ["sweep", suite, "--dry-run", "--results-dir", str(r)],
        "status": lambda r: ["status", suite, "--results-dir", str(r)],
        "report": lambda r: ["report", suite, "--results-dir", str(r), "--out", str(r.parent / "rep"),
                             "--quiet"],
    }
    mixed_after_kill, tally, problems = 0, {"mixed": 0, "unsettled": 0, "old": 0}, []
    for point, state in killed_swaps["states"].items():
        mixed_after_kill += not one_run(store.run_dir(state, spec))
        for name, argv in commands.items():
            root = tmp_path / f"{SWAP_POINTS.index(point)}-{name.split()[0]}{len(name)}" / "r"
            shutil.copytree(state, root)
            d = store.run_dir(root, spec)
            code = main(argv(root))
            capsys.readouterr()
            verdict = {"mixed": not one_run(d), "unsettled": swap_pending(d),
                       "old": record_file(d) == killed_swaps["old"]}
            for k, bad in verdict.items():
                tally[k] += bad
            if code != 0 or any(verdict.values()):
                problems.append(f"kill at {point!r}, then {name}: exit {code}, "
                                f"{[k for k, bad in verdict.items() if bad]}")
    n = len(SWAP_POINTS) * len(commands)
    print(f"\nkilled --force swaps: {len(SWAP_POINTS)} kill points, {mixed_after_kill} left a mixed run "
          f"directory; after the next command ({n} cases): {tally['mixed']} mixed, "
          f"{tally['unsettled']} with the swap still pending, {tally['old']} showing the old record")
    assert mixed_after_kill >= 2          # the kills really hit the middle of the swap
    assert not problems, "\n".join(problems)


def test_a_swap_journal_that_does_not_match_its_files_is_refused(npz, killed_swaps, tmp_path, capsys):
    suite, spec = str(killed_swaps["suite"]), killed_swaps["spec"]

    def refused(root: Path, *extra: str) -> str:
        """`run --suite` goes on past a refused run: one line names why, exit 2 at the end."""
        capsys.readouterr()
        assert main(["run", "--suite", suite, "--results-dir", str(root), "--quiet", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: 1 of 1 runs") and "Traceback" not in "".join(err), err
        (line,) = [ln for ln in err if ln.startswith(f"run {spec.run_id} refused: ")]
        return line

    # a stray journal beside a finished run: --force must not "complete a swap" (nor delete)
    root = tmp_path / "stray" / "r"
    shutil.copytree(killed_swaps["states"][SWAP_POINTS[0]], root)
    d = store.run_dir(root, spec)
    shutil.rmtree(d / store.STAGING)
    (d / store.STAGING).mkdir()
    files.write_json(d / store.STAGING / store.COMMIT, {"files": {"result.json": {
        "size": 3, "sha256": "0" * 64}, "checkpoint.pt": {"size": 1, "sha256": "1" * 64}}})
    line = refused(root, "--force")
    assert "commit.json" in line and "does not match" in line and f"delete {d / store.STAGING}" in line
    assert record_file(d) == killed_swaps["old"] and one_run(d)
    # the old journal format, which names no files by content, is not followed either
    files.write_json(d / store.STAGING / store.COMMIT, {"move": [], "remove": ["checkpoint.pt"]})
    assert "names no staged record" in refused(root, "--force") and one_run(d)
    (row,) = schedule.suite_status(suite, results_dir=root)["rows"]
    assert row.state != "done" and "commit.json" in row.detail
    # a real journal whose staged record was replaced after the kill: nothing more is moved
    root = tmp_path / "changed" / "r"
    shutil.copytree(killed_swaps["states"]["move history.csv"], root)
    d = store.run_dir(root, spec)
    staged = d / store.STAGING / store.RESULT
    staged.write_text(staged.read_text().replace('"complete"', '"diverged"'))
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    assert "result.json is not the file" in refused(root)
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before


def test_a_half_swapped_run_is_never_shown_whole(killed_swaps, tmp_path, monkeypatch):
    """A reader that cannot lock the run (read-only results directory, or another process
    holding it) does not present the old record beside the new history as a finished run."""
    suite, spec = str(killed_swaps["suite"]), killed_swaps["spec"]
    root = tmp_path / "r"
    shutil.copytree(killed_swaps["states"]["move result.json"], root)
    d = store.run_dir(root, spec)
    assert not one_run(d)
    with store.RunDir(d).lock():          # held by "another process" (another descriptor)
        (row,) = schedule.suite_status(suite, results_dir=root)["rows"]
        (plan,) = schedule.sweep(suite, dry_run=True, results_dir=root, out=lambda line: None)["rows"]
    assert row.state != "done" and "running elsewhere" in row.detail
    assert plan.state == "queued" and plan.detail == "running elsewhere"

    def read_only(path):
        raise files.disk_error(path, OSError(errno.EROFS, "Read-only file system"))

    with monkeypatch.context() as mp:
        mp.setattr(store, "open_lock", read_only)
        (row,) = schedule.suite_status(suite, results_dir=root)["rows"]
        assert row.state != "done" and "middle of a --force swap" in row.detail
    assert not one_run(d)                 # untouched so far; the next writable reader heals it
    (row,) = schedule.suite_status(suite, results_dir=root)["rows"]
    assert row.state == "done" and one_run(d) and not swap_pending(d)


RESUME_CHILD = r"""
import json, os, signal, sys
cfg = json.loads(sys.argv[1])
if cfg["kill_after_epoch_1"]:
    real_replace = os.replace
    def replace(src, dst, *a, **k):    # kill -9 once the first checkpoint is in place
        real_replace(src, dst, *a, **k)
        if os.path.basename(str(dst)) == "checkpoint.pt":
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
from harness.__main__ import main
sys.exit(main(cfg["argv"]))
"""


def test_a_resume_under_other_threads_equals_an_uninterrupted_run(npz, tmp_path):
    """Threads auto: killed after epoch 1 under OMP_NUM_THREADS=1, resumed under 2. The
    resumed run keeps its first session's count, so it equals the uninterrupted run under
    1 thread bit for bit. (An exact comparison is legitimate here: same machine, same
    kernels, same thread count, so the same floating-point operations in the same order.)"""
    def run(root: Path, omp: str, kill: bool) -> int:
        argv = ["run", "--dataset", str(npz), "--epochs", "2", "--batch-size", "50", "--set",
                "val_size=100", "--device", "cpu", "--results-dir", str(root), "--quiet"]
        env = {**os.environ, "OMP_NUM_THREADS": omp, "PYTHONPATH": str(REPO)}
        res = subprocess.run([sys.executable, "-c", RESUME_CHILD,
                              json.dumps({"argv": argv, "kill_after_epoch_1": kill})],
                             capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
        assert res.returncode in (0, -signal.SIGKILL), res.stderr[-3000:]
        return res.returncode

    spec = make_spec("cnn", "lenet5", str(npz), {"val_size": "100"}, epochs=2, batch_size=50)
    assert run(tmp_path / "whole", "1", kill=False) == 0
    assert run(tmp_path / "resumed", "1", kill=True) == -signal.SIGKILL
    assert run(tmp_path / "resumed", "2", kill=False) == 0
    whole, resumed = (store.run_dir(tmp_path / n, spec) for n in ("whole", "resumed"))
    rec = store.read_record(resumed)
    assert rec["timing"]["sessions"] == 2
    print(f"\nresumed under OMP_NUM_THREADS=2 after a kill under 1: threads by session "
          f"{rec['contention'].get('threads_by_session')}; equal to the uninterrupted run: "
          f"{same(snapshot(resumed), snapshot(whole))}")
    assert rec["contention"]["threads_by_session"] == [1, 1]
    assert rec["contention"]["threads"] == rec["environment"]["threads"] == 1
    assert same(snapshot(resumed), snapshot(whole))


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def started_at(pid: int) -> str | None:
    """The start time of the live process `pid` (None if gone or a zombie): a pid and its
    start time name one process, never a later one that reuses the pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except (OSError, IndexError):
        return None


def test_killing_a_local_sweep_ends_its_runs_and_the_next_sweep_resumes(npz, tmp_path):
    """A two-run local sweep killed with KILL, TERM and INT in turn (each time once both
    runs have checkpointed a further epoch): within 5 s no process it started survives,
    and a fourth sweep completes both runs from their checkpoints (4 sessions each)."""
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc (Linux) to list the sweep's processes")
    import contextlib

    from harness.suite import load_suite

    epochs = 30
    suite = write_suite(tmp_path / "pair.toml", npz, epochs=epochs)
    results = tmp_path / "r"
    dirs = [store.run_dir(results, s) for s in load_suite(str(suite)).specs]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "harness", "sweep", str(suite), "--executor", "local",
           "--max-parallel", "2", "--results-dir", str(results)]

    def epoch(d: Path) -> int:
        try:
            return torch.load(d / "checkpoint.pt", weights_only=True)["epoch"]
        except Exception:  # noqa: BLE001 - not written yet
            return 0

    # KILL first: its tasks notice within half a second, while many epochs are left
    expected = {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 130}
    survivors, started, codes = {}, {}, {}
    try:
        for sig, code in expected.items():
            before = [epoch(d) for d in dirs]
            with open(tmp_path / f"sweep-{sig.name}.log", "w") as log:
                p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
            deadline = time.monotonic() + 120
            while any(epoch(d) <= b for d, b in zip(dirs, before)) and time.monotonic() < deadline:
                time.sleep(0.05)
            procs = {q: started_at(q) for q in descendants(p.pid)}
            started.update(procs)
            assert p.poll() is None and len(procs) >= 2, (tmp_path / f"sweep-{sig.name}.log").read_text()
            assert all(epoch(d) < epochs for d in dirs), "a run finished before the kill"
            os.kill(p.pid, sig)
            codes[sig.name] = (p.wait(timeout=30), code)
            deadline = time.monotonic() + 5
            while any(started_at(q) == t for q, t in procs.items()) and time.monotonic() < deadline:
                time.sleep(0.1)
            survivors[sig.name] = [q for q, t in procs.items() if started_at(q) == t]
            if survivors[sig.name]:
                break
        else:
            final = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    finally:        # what the old code left running (only those very processes)
        for q, t in started.items():
            if t is not None and started_at(q) == t:
                with contextlib.suppress(OSError):
                    os.kill(q, signal.SIGKILL)
    print("\nprocesses of a local sweep alive 5 s after its kill: "
          + ", ".join(f"{k} {len(v)}" for k, v in survivors.items()))
    assert not any(survivors.values()), survivors
    assert all(got == want for got, want in codes.values()), codes    # exit statuses
    assert final.returncode == 0, final.stdout + final.stderr
    for d in dirs:
        rec = store.read_record(d)
        assert rec["status"] == "complete" and rec["metrics"]["epochs_done"] == epochs
        assert rec["timing"]["sessions"] == 4          # resumed from a checkpoint 3 times


def test_a_thread_count_from_a_checkpoint_is_used_only_when_sane():
    """The checkpoint lies in a shared directory: a planted count (a billion threads, or
    not a count) is ignored, and the run keeps today's count."""
    from harness.contention import Monitor

    for planted in ([10**9], [0], ["2"], [True], 4, []):
        m = Monitor(threads=3, cores=4)
        assert m.restore({"threads_by_session": planted}) == 3 and m.threads_by_session == [3]
    m = Monitor(threads=3, cores=4)
    assert m.restore({"threads_by_session": [1, 1]}) == 1 and m.threads_by_session == [1, 1, 1]
    assert m.summary([])["threads"] == 1


# ----------------------------------------------------------------------------- issue 21 (21a)
# No input hangs, ends in a traceback or is wrongly accepted; status reads only its own
# logs and tells a live process from a recycled pid; report.md and runs.csv are inert;
# SLURM is detected by every program submitit needs. The cases below join the bad-input
# battery above (test_bad_inputs_one_line_exit_2_no_debris), which prints their tally.

HANG_S = 20                # a case still running after this long hung (checked by SIGALRM)
DEEP = "[" * 200_000 + "]" * 200_000      # JSON nested 200,000 levels deep


class Hung(BaseException):
    """Raised by `guarded`'s alarm: the command did not answer within HANG_S."""


@contextlib.contextmanager
def guarded():
    """Run a command so that a broken harness fails the case, not the test process: an
    alarm after HANG_S (it interrupts a blocked open() of a FIFO and any Python loop), and
    an address-space limit 2 GiB above the present size (reading /dev/zero to the end
    ends in a MemoryError, not in swapping the machine). Both are restored afterwards."""
    import resource

    with open("/proc/self/status") as f:
        size = int(f.read().split("VmSize:")[1].split()[0]) * 1024
    limits = resource.getrlimit(resource.RLIMIT_AS)

    def alarm(signum, frame):
        raise Hung()

    previous = signal.signal(signal.SIGALRM, alarm)
    resource.setrlimit(resource.RLIMIT_AS, (size + 2 * 2**30, limits[1]))
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, limits)


def _no_absurd_thread_pool(mp, t) -> None:
    """A harness that accepted the count would ask libgomp for it, which then exits the
    whole test process (`libgomp: Out of memory allocating ...`): the request fails here
    instead, so the case counts as a traceback, not as a dead test run."""
    real = torch.set_num_threads

    def set_num_threads(n):
        if n > 4096:
            raise RuntimeError(f"the harness asked libgomp for {n} threads")
        real(n)
    mp.setattr(torch, "set_num_threads", set_num_threads)


class Warned(str):
    """Expected: exit 0 and one stderr line `warning: ...` holding the text (report lists
    the run as unreadable)."""


class Shown(str):
    """Expected: exit 0, nothing on stderr, the text in stdout (status shows it in a row)."""


def judge(code, out: str, err: str, seconds: float, expect: str) -> tuple[str, str]:
    """('clean', '') or (what went wrong, details) for one battery case."""
    if isinstance(out, bytes):
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
    lines = err.strip().splitlines()
    if code is None:
        return "hang", f"no answer within {HANG_S} s"
    if not isinstance(code, int) or "Traceback (most recent call last)" in err:
        return "traceback", str(code) if not isinstance(code, int) else (lines or ["?"])[-1][:300]
    if code < 0:
        return "crash", f"killed by signal {-code}; stderr {lines[-2:]!r}"
    want = 0 if isinstance(expect, (Warned, Shown)) else 2
    if code != want:
        return ("accepted" if code == 0 else f"exit {code}"), f"stderr {lines[-3:]!r}"
    if isinstance(expect, Shown):
        ok = not lines and expect in out
    else:
        first = "warning: " if isinstance(expect, Warned) else "error: "
        ok = len(lines) == 1 and lines[0].startswith(first) and expect in lines[0]
    if not ok:
        return ("multi-line" if len(lines) > 1 else "unclean"), f"stderr {lines[:4]!r}, stdout {out[-300:]!r}"
    if seconds >= 10:
        return "slow", f"{seconds:.1f} s"
    return "clean", ""


def _q_spec(npz: Path):
    """The spec of `run` as the battery's run commands give it (1 epoch, val_size 100)."""
    return make_spec("cnn", None, str(npz), {"val_size": "100"}, epochs=1)


def _q(npz: Path, t: Path, *extra, results=None) -> list[str]:
    return ["run", "--dataset", str(npz), "--epochs", "1", "--device", "cpu", "--results-dir",
            str(t / "r") if results is None else results, "--data-dir", str(t / "d"), "--quiet",
            "--set", "val_size=100", *extra]


def _in_run_dir(npz: Path, t: Path, name: str, make) -> Path:
    """Put `make(path)` at <run dir of the battery's run>/<name>; returns the path."""
    d = store.run_dir(t / "r", _q_spec(npz))
    d.mkdir(parents=True, exist_ok=True)
    make(d / name)
    return d / name


def _suite_status(t: Path, *, task=None, manifest: str | None = None, attempts=None,
                  record: str | None = None, command: str = "status") -> list[str]:
    """SUITE_OK under t/r with a planted manifest task (or manifest text), attempts file
    (a callable making it) or record; the `status` (or `sweep --dry-run`) command."""
    from harness.suite import load_suite

    suite = _suite(t / "s.toml", SUITE_OK)
    s = load_suite(str(suite))
    sdir = schedule.suite_dir(t / "r", s)
    sdir.mkdir(parents=True)
    d = store.run_dir(t / "r", s.specs[0])
    d.mkdir(parents=True)
    if task is not None:
        task = task(sdir) if callable(task) else task
        files.write_json(sdir / "manifest.json", {"submissions": [], "runs": {s.specs[0].run_id: task}})
    if manifest is not None:
        (sdir / "manifest.json").write_text(manifest)
    if attempts is not None:
        attempts(d / "attempts.jsonl")
    if record is not None:
        (d / "result.json").write_text(record)
    if command == "status":
        return ["status", str(suite), "--results-dir", str(t / "r")]
    return ["sweep", str(suite), "--dry-run", "--results-dir", str(t / "r")]


def _fifo_log(sdir: Path) -> dict:
    log = sdir / "logs" / "5_0" / "5_0_0_log.out"
    log.parent.mkdir(parents=True)
    os.mkfifo(log)
    return {"job_id": "5_0", "executor": "slurm", "log": str(log)}


def _report_with(t: Path, reference, record: str) -> list[str]:
    """A finished run (the reference) and a planted record beside it; `report` of them."""
    shutil.copytree(reference["dir"], t / "r" / "x" / "y" / reference["dir"].name)
    bad = t / "r" / "x" / "y" / "planted-s0"
    bad.mkdir()
    (bad / "result.json").write_text(record)
    return ["report", str(t / "r"), "--out", str(t / "o"), "--quiet"]


def _cifar_with_persistent_id(t: Path) -> Path:
    from harness.data.formats import CIFAR_DIR, CIFAR_FILES

    folder = t / "cifar" / CIFAR_DIR
    folder.mkdir(parents=True)
    for name in CIFAR_FILES:       # protocol 2: a string, then BINPERSID
        (folder / name).write_bytes(b"\x80\x02X\x01\x00\x00\x00aQ.")
    return t / "cifar"


def _srun_missing(mp, t: Path) -> None:
    """PATH holds an sbatch (that would accept anything) but no srun or scontrol."""
    bin_dir = t.parent / f"{t.name}-bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'Submitted batch job 5'\n")
    (bin_dir / "sbatch").chmod(0o755)
    mp.setenv("PATH", str(bin_dir))


def _grid_suite(t: Path, n: int) -> Path:
    """A suite whose one [[runs]] table is an n x n grid (seeds x lr)."""
    return _suite(t / "grid.toml", SUITE_OK.replace('method = "cnn"\n', "method = \"cnn\"\nseeds = [%s]\nlr = [%s]\n" % (
        ", ".join(map(str, range(n))), ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(n)))))


def issue21_inputs(npz, reference):
    """The cases of issue 21 ("Hangs", "Tracebacks", "Accepted bad values", "Also
    multi-line errors"; "21+": two more found beside them), as (name, argv builder(t),
    patch or None, expectation)."""
    complete_only = json.dumps({"status": "complete"})
    strings = json.dumps({"status": "complete", "run_id": "planted-s0", "spec": {
        "method": "cnn", "arch": "lenet5", "dataset": "synthetic", "seed": 0},
        "metrics": {"test_error": "low", "test_acc": "high", "epochs_done": "3"},
        "timing": {"train_s": "fast"}})
    return [
        # hangs
        ("21: checkpoint.pt is a FIFO", lambda t: (_in_run_dir(npz, t, "checkpoint.pt", os.mkfifo), _q(npz, t))[1],
         None, "is a FIFO"),
        ("21+: result.json is a FIFO", lambda t: (_in_run_dir(npz, t, "result.json", os.mkfifo), _q(npz, t))[1],
         None, "is a FIFO"),
        ("21: status, manifest names a FIFO as log", lambda t: _suite_status(t, task=_fifo_log), None,
         "FIFO"),
        ("21: status, manifest names /dev/zero as log", lambda t: _suite_status(t, task={
            "job_id": "5_0", "executor": "slurm", "log": "/dev/zero"}), None, "a device"),
        ("21: status, attempts.jsonl is /dev/zero", lambda t: _suite_status(
            t, attempts=lambda p: p.symlink_to("/dev/zero")), None, "attempts file"),
        ("21+: status, attempts.jsonl is a FIFO", lambda t: _suite_status(t, attempts=os.mkfifo), None,
         "attempts file"),
        ("21: sweep --dry-run of a 1,000,000-run grid", lambda t: [
            "sweep", str(_grid_suite(t, 1000)), "--dry-run", "--results-dir", str(t / "r")], None,
         "1,000,000 runs"),
        # tracebacks
        ("21: --results-dir with a 256-character component", lambda t: _q(npz, t, results=str(t / ("a" * 256))),
         None, "too long"),
        ("21: --results-dir under /proc/1/", lambda t: _q(npz, t, results="/proc/1/results-21"), None,
         "/proc/1/results-21"),
        ("21: status, manifest job id is an int", lambda t: _suite_status(t, task={
            "job_id": 5, "executor": "slurm"}), None, "job_id"),
        ("21: status, manifest job id is a list", lambda t: _suite_status(t, task={
            "job_id": ["5", "6"], "executor": "slurm"}), None, "job_id"),
        ("21: status, 200,000-deep manifest", lambda t: _suite_status(t, manifest=DEEP), None, "nested"),
        ("21: sweep --dry-run, 200,000-deep manifest", lambda t: _suite_status(t, manifest=DEEP, command="dry-run"),
         None, "nested"),
        ("21: sweep --dry-run, 200,000-deep record", lambda t: _suite_status(t, record=DEEP, command="dry-run"),
         None, "nested"),
        ("21: status, 200,000-deep record", lambda t: _suite_status(t, record=DEEP), None, Shown("nested")),
        ("21: report, 200,000-deep record", lambda t: _report_with(t, reference, DEEP), None, Warned("nested")),
        ("21: report, record holding only a status", lambda t: _report_with(t, reference, complete_only), None,
         Warned("lacks")),
        ("21: report, record with string metrics", lambda t: _report_with(t, reference, strings), None,
         Warned("metrics.test_error")),
        ("21+: suite TOML nested 100,000 deep", lambda t: ["sweep", str(_file(
            t / "n.toml", b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n")), "--dry-run"], None, "nested"),
        ("21: --threads 99999 under a memory limit", lambda t: _q(npz, t, "--threads", "99999"),
         _no_absurd_thread_pool, "--threads"),
        # accepted bad values
        ("21: --device cpu:7", lambda t: _q(npz, t, "--device", "cpu:7"), None, "cpu:7"),
        ("21: --devices ,", lambda t: ["sweep", str(_suite(t / "s.toml", SUITE_OK)), "--executor", "local",
                                       "--devices", ",", "--dry-run", "--results-dir", str(t / "r")], None,
         "--devices"),
        ("21: suite threads = 1e9", lambda t: ["sweep", str(_suite(t / "s.toml", SUITE_OK + "threads = 1e9\n")),
                                               "--dry-run", "--results-dir", str(t / "r")], None, "--threads"),
        ("21: suite epochs = 1e11", lambda t: ["sweep", str(_suite(t / "s.toml", SUITE_OK + "epochs = 1e11\n")),
                                               "--dry-run", "--results-dir", str(t / "r")], None, "--epochs"),
        ("21: --threads 1000000000", lambda t: _q(npz, t, "--threads", "1000000000"), _no_absurd_thread_pool,
         "--threads"),
        # multi-line errors
        ("21: CIFAR batch with a persistent-id opcode", lambda t: [
            "run", "--dataset", "cifar10", "--data-dir", str(_cifar_with_persistent_id(t)), "--epochs", "1",
            "--device", "cpu", "--results-dir", str(t / "r"), "--quiet"], None, "persistent id"),
        ("21: run on a finished record without metrics", lambda t: (_in_run_dir(
            npz, t, "result.json", lambda p: p.write_text(complete_only)), _q(npz, t))[1], None, "--force"),
        # found beside them: options open above, bounded by the model they make
        ("21+: --set kernel=99999 (10^15 parameters)", lambda t: _q(
            npz, t, "--method", "spectral-pooling", "--set", "kernel=99999"), None, "parameters"),
        ("21+: dct-select --set block=1000000000", lambda t: _q(
            npz, t, "--method", "dct-select", "--set", "block=1000000000"), None, "block"),
        # SLURM detected by every program submitit needs
        ("21: sweep where sbatch is but srun is not", lambda t: [
            "sweep", str(_suite(t / "s.toml", SUITE_OK)), "--results-dir", str(t / "r"), "--max-array-size",
            "5"], _srun_missing, "srun not found"),
    ]


def test_run_suite_on_a_record_without_metrics_names_the_file(tmp_path, capsys):
    """Not `failed: KeyError: 'test_error'`: the refusal names the record and the fix."""
    from harness.suite import load_suite

    suite = _suite(tmp_path / "s.toml", SUITE_OK)
    d = store.run_dir(tmp_path / "r", load_suite(str(suite)).specs[0])
    d.mkdir(parents=True)
    (d / "result.json").write_text('{"status": "complete"}')
    assert main(["run", "--suite", str(suite), "--results-dir", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "KeyError" not in err and "Traceback" not in err and "failed:" not in err, err
    refused = next(line for line in err.splitlines() if "refused" in line)
    assert str(d / "result.json") in refused and "--force" in refused
    assert err.strip().splitlines()[-1].startswith("error: 1 of 1 runs")


def test_status_reads_only_its_own_logs_and_checks_the_process(tmp_path, capsys, monkeypatch):
    """A manifest naming a file outside the suite folder (someone's secrets) as a log: not
    read. An attempts line naming pid 1 (alive, but not the process that started the run),
    or a pid whose start time differs: not running. The controls: a log inside the suite
    folder is read, and an attempts line of this very process reads as running."""
    import socket

    from harness.suite import load_suite

    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm"))   # no sacct/squeue: the files answer
    suite = _suite(tmp_path / "s.toml", SUITE_OK.replace('name = "t"', 'name = "t"\nseeds = [0, 1, 2, 3, 4]'))
    specs = load_suite(str(suite)).specs
    root = tmp_path / "r"
    sdir = schedule.suite_dir(root, load_suite(str(suite)))
    secret = tmp_path / "secret.env"
    secret.write_text("Traceback (most recent call last):\n  x\nSECRET=hunter2\n")
    inside = sdir / "logs" / "7_3" / "7_3_0_log.out"
    inside.parent.mkdir(parents=True)
    inside.write_text("Traceback (most recent call last):\n  x\nValueError: the real reason\n")
    host = socket.gethostname()
    # this process, as an attempts line names it, read from /proc here (field 22: start time)
    me = {"pid": os.getpid(), "pid_start": Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1]
          .split()[19], "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip()}
    pid1 = {"event": "start", "t": 1.0, "host": host, "pid": 1}
    recycled = {**pid1, "pid_start": "1", "boot_id": me["boot_id"]}    # pid 1, another start time
    tasks = {0: {"job_id": "7_0", "executor": "slurm", "log": str(secret)},
             1: {"job_id": "1", "executor": "local", "log": None},
             2: {"job_id": "1", "executor": "local", "log": None},
             3: {"job_id": "7_3", "executor": "slurm", "log": str(inside)},
             4: {"job_id": str(os.getpid()), "executor": "local", "log": None}}
    attempts = {1: pid1, 2: recycled, 4: {"event": "start", "t": 1.0, "host": host, **me}}
    for i, s in enumerate(specs):
        store.run_dir(root, s).mkdir(parents=True)
        if i in attempts:
            (store.run_dir(root, s) / "attempts.jsonl").write_text(json.dumps(attempts[i]) + "\n")
    files.write_json(sdir / "manifest.json", {"submissions": [], "runs": {
        specs[i].run_id: t for i, t in tasks.items()}})
    assert main(["status", str(suite), "--results-dir", str(root)]) == 0
    out = capsys.readouterr().out
    rows = schedule.suite_status(str(suite), results_dir=root)["rows"]
    assert "hunter2" not in out and all("hunter2" not in r.detail for r in rows), out
    assert rows[0].log == str(secret) and "outside the suite folder: not read" in rows[0].detail
    assert [r.state for r in rows[1:3]] == ["unknown", "unknown"], [(r.state, r.detail) for r in rows]
    assert rows[3].detail == "ValueError: the real reason"         # inside: read
    assert rows[4].state == "running"                                # this very process
    from harness.schedule.job import this_process               # what a job's start line holds
    assert this_process() == me


def test_report_md_and_runs_csv_are_inert(npz, reference, tmp_path):
    """Markup and spreadsheet formulas from record fields come out as text."""
    import csv

    root = tmp_path / "r"
    d = root / "x" / "y" / reference["dir"].name
    shutil.copytree(reference["dir"], d)
    rec = json.loads((d / "result.json").read_text())
    rec["environment"]["cpu"] = "<img src=x onerror=alert(1)>"
    rec["spec"]["budget"] = '=HYPERLINK("http://evil.example","click")'
    (d / "result.json").write_text(json.dumps(rec))
    failed = root / "x" / "y" / "failed-s1"
    failed.mkdir()
    (failed / "result.json").write_text(json.dumps({
        "status": "failed", "run_id": "failed-s1", "reason": "[click](javascript:alert(1)) <script>x</script>",
        "spec": {"method": "@SUM(1+1)", "arch": "lenet5", "dataset": "-2+3", "seed": 1, "budget": "-2"}}))
    assert main(["report", str(root), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    import re

    for markup in ("<img", "<script"):
        assert markup not in md, markup
    text = "\n".join(ln for ln in md.splitlines() if not ln.startswith("![Setting"))  # our figures
    assert not re.search(r"(?<!\\)\]\(", text), "a link or image survived"    # only `\](`, escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in md          # shown, as text
    htm = (tmp_path / "o" / "report.html").read_text()
    assert "<img src=x" not in htm and "<script>" not in htm
    with open(tmp_path / "o" / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cells = [v for row in rows for v in row.values()]
    live = [v for v in cells if v[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(v)]
    assert not live, live
    assert "'=HYPERLINK(\"http://evil.example\",\"click\")" in cells and "'@SUM(1+1)" in cells
    assert "'-2+3" in cells and "-2" in cells                     # a number stays a number


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
