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
  no `%j` folder, no temporary files).

Kills use a child process that SIGKILLs itself at the chosen point (the same as an
outside `kill -9` there, but exactly at the point). The points are drawn from a seeded
RNG ($SPECTRAL_BENCH_KILL_SEED, default 12) and printed. Everything runs on a 400-image
.npz cut from the synthetic set, one CPU thread, so that reruns are bit-identical.
"""

from __future__ import annotations

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
        assert [a["event"] for a in att] == ["start", "end"] and att[1]["outcome"] == "complete"
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
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
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
    cases = bad_inputs(npz, reference)
    tried, clean, tracebacks, accepted, problems = len(cases), 0, 0, 0, []
    for i, (name, argv, patch, expect) in enumerate(cases):
        t = tmp_path / f"c{i:02d}"
        t.mkdir()
        args = argv(t)
        before = {str(p.relative_to(t)) for p in t.rglob("*")}
        capsys.readouterr()
        with monkeypatch.context() as mp:
            if patch:
                patch(mp, t)
            try:
                code = main(args)
            except BaseException as exc:  # noqa: BLE001 - the battery counts, then reports
                code = f"{type(exc).__name__}: {exc}"
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        if not isinstance(code, int):
            tracebacks += 1
            problems.append(f"{name}: traceback {code}")
            continue
        if code == 0:
            accepted += 1
            problems.append(f"{name}: accepted (exit 0)")
            continue
        ok = code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0]
        left = debris(t, before)
        if ok and not left:
            clean += 1
        else:
            problems.append(f"{name}: exit {code}, stderr {lines!r}, debris {left}")
    print(f"\nbad inputs: {tried} tried, {clean} clean one-line errors (exit 2, no debris), "
          f"{tracebacks} tracebacks, {accepted} accepted")
    assert tried >= 40
    assert not problems, "\n".join(problems)


def test_status_of_a_duplicate_slurm_task_that_found_its_run_locked(tmp_path, monkeypatch):
    """Two SLURM sweeps at once submit a run twice; the task that finds it locked ends
    COMPLETED without a record. status must not call that a failure."""
    suite = _suite(tmp_path / "s.toml", SUITE_OK)
    from harness.suite import load_suite
    s = load_suite(str(suite))
    sdir = schedule.suite_dir(tmp_path / "r", s)
    sdir.mkdir(parents=True)
    log = tmp_path / "5_0_0_log.out"
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
