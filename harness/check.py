"""Self-check: is this machine and install sound? (`python -m harness check`)

On the chosen device it runs, on the embedded synthetic data (no files needed):
- one short epoch of every registered method at its default architecture, and at
  `vgg-small` where the method has it (on `synthetic-cifar`, 3x32x32);
- a two-run local sweep (`sweep --executor local`, real subprocesses);
- a resume: a run stopped after one epoch, then run again to the end.
Each record is validated (status, timing fields, memory figures, device, precision, op
counts, and on a GPU that the step ran as a CUDA graph: every registered step is
capturable, so an eager fallback is a failure) and printed as one table row. Any
failure makes the command exit 1.
It writes into a temporary results directory (removed afterwards), or into
--results-dir, where the records stay for inspection.
"""

from __future__ import annotations

import math
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

import methods
from harness import store
from harness.device import describe, resolve_device
from harness.graph import WARMUP_STEPS
from harness.step import CAPTURABLE_OPTIMIZERS
from harness.store import RunRecord

SUBSET = 300          # training images per check run (val and test get SUBSET // 5)
# steps of an epoch on a GPU: the eager warm-up steps, the capture, one replay
BATCH = SUBSET // (WARMUP_STEPS + 2)
TIMING_KEYS = ("train_s", "data_s", "eval_s", "warmup_s", "checkpoint_s", "wall_s")


@dataclass
class Row:
    check: str
    run: str
    ok: bool
    seconds: float
    detail: str


def record_problems(rec: dict | None, device: torch.device, *, epochs: int = 1,
                    sessions: int | None = None) -> list[str]:
    """What is wrong with a run record that should be complete (empty when sound)."""
    if rec is None:
        return ["no record"]
    r = RunRecord.from_json(rec)
    problems = []
    if not r.is_complete:
        return [f"status {r.status}: {r.reason}"]
    timing, env = r.timing, r.environment
    for key in TIMING_KEYS:
        value = timing.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            problems.append(f"timing.{key}={value!r}")
    if not timing.get("train_s", 0) > 0:
        problems.append("train_s is 0")
    if sessions is not None and timing.get("sessions") != sessions:
        problems.append(f"sessions {timing.get('sessions')} != {sessions}")
    if r.metrics.get("epochs_done") != epochs:
        problems.append(f"epochs_done {r.metrics.get('epochs_done')} != {epochs}")
    acc = r.test_acc
    if not isinstance(acc, float) or not 0 <= acc <= 1:
        problems.append(f"test_acc={acc!r}")
    problems += memory_problems(r.memory, device, timing.get("step_mode"))
    problems += graph_problems(r, device)
    if env.get("device") != str(device):
        problems.append(f"recorded device {env.get('device')!r} != {str(device)!r}")
    if device.type == "cuda" and not env.get("gpu"):
        problems.append("no GPU model recorded")
    precision = env.get("precision") or {}
    if precision.get("policy") != r.spec.get("precision") or \
            precision.get("cudnn_benchmark") != r.spec.get("cudnn_benchmark", False):
        problems.append(f"precision {precision}")
    if "error" in r.ops:
        problems.append(f"ops: {r.ops['error']}")
    return problems


def memory_problems(memory: dict, device: torch.device, step_mode: str | None) -> list[str]:
    """The record's memory figures (harness.device.PeakMemory.record) for this device."""
    kind = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"
    keys = ("peak_mb", "data_mb") + (("train_peak_mb", "eval_peak_mb") if device.type == "cuda"
                                     else ())
    if memory.get("kind") != kind or not all(_positive(memory.get(k)) for k in keys):
        return [f"memory {memory}"]
    if device.type == "cuda":
        pool = memory.get("graph_pool_mb")
        if step_mode == "graph" and not _positive(pool):
            return [f"graph mode without a graph pool: memory {memory}"]
        if memory["train_peak_mb"] < memory["data_mb"]:
            return [f"training peak below the data on the device: memory {memory}"]
    return []


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def graph_problems(r: RunRecord, device: torch.device) -> list[str]:
    """On a GPU a run whose step is capturable (graph auto or on, an optimizer with a
    capturable step) must have run as a CUDA graph: an eager fallback is a failure."""
    spec, timing = r.spec, r.timing
    if device.type != "cuda" or spec.get("graph", "auto") == "off" \
            or spec.get("optimizer", "rmsprop") not in CAPTURABLE_OPTIMIZERS:
        return []
    if timing.get("step_mode") != "graph":
        return [f"step ran {timing.get('step_mode')}, not as a CUDA graph: "
                f"{timing.get('step_mode_reason') or 'no reason recorded'}"]
    return []


def method_runs() -> list[tuple[str, str | None, str]]:
    """(method, arch, dataset): each method at its default and at vgg-small where it has it."""
    runs = []
    for name in methods.names():
        runs.append((name, None, "synthetic"))
        if "vgg-small" in methods.get(name).archs:
            runs.append((name, "vgg-small", "synthetic-cifar"))
    return runs


def timed(check: str, run: str, body: Callable[[], list[str]]) -> Row:
    t0 = time.perf_counter()
    try:
        problems = body()
    except Exception as exc:  # noqa: BLE001 - a failed check is a row, not a crash
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        problems = [f"{type(exc).__name__}: {exc}".splitlines()[0] + where]
    return Row(check, run, not problems, time.perf_counter() - t0, "; ".join(problems) or "ok")


def run_checks(device: torch.device, root: Path, out: Callable[[str], None] = print) -> list[Row]:
    from harness.runner import execute
    from harness.schedule import sweep
    from harness.suite import make_spec

    rows: list[Row] = []

    def emit(row: Row) -> None:
        rows.append(row)
        out(f"{'PASS' if row.ok else 'FAIL'}  {row.check:<8} {row.run:<34} {row.seconds:6.1f}s  {row.detail}")

    common = dict(results_dir=root / "epochs", device=str(device), progress=False)
    for method, arch, dataset in method_runs():
        label = f"{method}/{arch or 'default'}"

        def one(method=method, arch=arch, dataset=dataset):
            spec = make_spec(method, arch, dataset, epochs=1, subset=SUBSET, batch_size=BATCH)
            return record_problems(execute(spec, **common), device)
        emit(timed("epoch", label, one))

    def two_run_sweep():
        sweep_root = root / "sweep"   # its own tree: the epoch checks ran the same cnn spec
        sweep_root.mkdir(parents=True, exist_ok=True)
        suite = sweep_root / "check-sweep.toml"
        suite.write_text('[suite]\nname = "check-sweep"\ndataset = "synthetic"\nseeds = [0, 1]\n'
                         f'[[runs]]\nmethod = "cnn"\nepochs = 1\nsubset = {SUBSET}\n'
                         f'batch_size = {BATCH}\n')
        lines: list[str] = []
        summary = sweep(str(suite), executor="local", results_dir=sweep_root, devices=[str(device)],
                        out=lines.append)
        local = summary.get("local", {})
        problems = [f"failed {rid}: {why}" for rid, why, _ in local.get("failed", [])]
        if len(local.get("done", [])) != 2:
            problems.append(f"{len(local.get('done', []))} of 2 runs done")
        # inside a sweep job the GPU is restricted to the job, where it is cuda:0
        job_device = torch.device("cuda", 0) if device.type == "cuda" else device
        for spec in summary["suite"].specs:
            problems += record_problems(store.read_record(store.run_dir(sweep_root, spec)), job_device)
        return problems
    emit(timed("sweep", "cnn seeds 0,1 (local executor)", two_run_sweep))

    def resume():
        spec = make_spec("cnn", None, "synthetic", epochs=2, subset=SUBSET, batch_size=BATCH)
        where = dict(common, results_dir=root / "resume")
        if execute(spec, stop_after=1, **where) is not None:
            return ["the stopped run did not stop after epoch 1"]
        return record_problems(execute(spec, **where), device, epochs=2, sessions=2)
    emit(timed("resume", "cnn stop after 1 of 2 epochs", resume))
    return rows


def main(device_name: str = "auto", results_dir: str | None = None,
         out: Callable[[str], None] = print) -> int:
    """Run every check; returns the exit status (0 all passed, 1 any failure)."""
    device = resolve_device(device_name)
    out(f"spectral-bench self-check on {describe(device)}: torch {torch.__version__}, "
        f"CUDA {torch.version.cuda or 'none'}, {torch.get_num_threads()} CPU threads")
    with tempfile.TemporaryDirectory(prefix="harness-check-") as tmp:
        root = Path(results_dir) if results_dir else Path(tmp)
        t0 = time.perf_counter()
        rows = run_checks(device, root, out)
        failed = sum(not r.ok for r in rows)
        out(f"{len(rows) - failed} of {len(rows)} checks passed in {time.perf_counter() - t0:.0f} s"
            + (f"; records in {root}" if results_dir else ""))
    return 1 if failed else 0
