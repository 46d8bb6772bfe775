"""Submitting a sweep to SLURM: one job array per suite, through submitit.

`submit_slurm` submits the runs to do as one array (`executor.map_array`), split into
chunks when there are more than the cluster's MaxArraySize (read from `scontrol show
config`; the limit is on the array index, so each chunk restarts at 0), records the
submission in the manifest and returns; the tasks run `RunJob`. If sbatch refuses an
array, its reason becomes one line, and what submitit wrote for it is removed. The
submitting shell's `SLURM_*` variables (an enclosing allocation) are hidden from sbatch.
The tasks import the code of this checkout (`PYTHONPATH`), the code the manifest names.
A machine without every SLURM program submitit needs (`SLURM_PROGRAMS`) is told so in
one line naming the missing one, before anything is written.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from pathlib import Path

import submitit

from harness import store
from harness.env import REPO
from harness.errors import UserError
from harness.schedule.job import RunJob
from harness.schedule.manifest import MANIFEST, job_folder, record_submission, suite_dir
from harness.schedule.options import SlurmOptions, executor_parameters, parameters_record
from harness.schedule.plan import PlanRow, describe_spec, varying_keys
from harness.schedule.queue import read_max_array_size


# What submitit 1.5 needs where `sweep` submits: sbatch submits the array; SlurmExecutor
# refuses to start without srun ("Could not detect srun"), which its job script runs the
# task under; scontrol requeues a preempted or timed-out task (and tells MaxArraySize).
# (scancel only cancels, sacct only reports states: `status` falls back to squeue and the
# result files without them.)
SLURM_PROGRAMS = ("sbatch", "srun", "scontrol")


def check_slurm_client() -> None:
    """One line naming the first SLURM program this machine lacks (see SLURM_PROGRAMS)."""
    missing = [p for p in SLURM_PROGRAMS if shutil.which(p) is None]
    if len(missing) == len(SLURM_PROGRAMS):
        raise UserError(f"{', '.join(missing)} not found: this machine is not a SLURM client; "
                        f"use --executor local")
    if missing:
        raise UserError(f"{missing[0]} not found on PATH, but sweep --executor slurm needs "
                        f"{', '.join(SLURM_PROGRAMS)} (submitit runs each task under srun and "
                        f"requeues with scontrol); put SLURM's client commands on PATH, or use "
                        f"--executor local")


def chunked(items: list, size: int) -> list[list]:
    """Split for MaxArraySize: the limit is on the array *index*, so each chunk restarts at 0."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [items[i:i + size] for i in range(0, len(items), size)]


@contextlib.contextmanager
def _clean_slurm_env():
    """Hide an enclosing allocation's SLURM_* variables from sbatch and from the jobs."""
    saved = {k: v for k, v in os.environ.items()
             if (k.startswith("SLURM_") or k.startswith("SBATCH_")) and k not in ("SLURM_CONF",)}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)


def slurm_executor(folder: Path, opts: SlurmOptions, name: str) -> submitit.AutoExecutor:
    # cluster pinned: AutoExecutor would guess from `srun` on PATH
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=opts.max_num_timeout)
    setup = [f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",   # the code the manifest names
             "export PYTHONUNBUFFERED=1"]
    ex.update_parameters(**executor_parameters(opts, name, setup))
    return ex


def submit_slurm(suite, rows: list[PlanRow], root: Path, opts: SlurmOptions, data_dir=None,
                 device: str = "auto", out=print, rerun_stale: bool = False,
                 log: str | None = None) -> dict:
    """Submit `rows` as one array (chunked over MaxArraySize); write the manifest. With
    `rerun_stale`, a task reruns (forced) a finished run whose code has changed since."""
    check_slurm_client()
    if opts.max_array_size:
        max_size, size_source = opts.max_array_size, "max_array_size option"
    else:
        max_size, size_source = read_max_array_size()
    sdir = suite_dir(root, suite)
    folder = job_folder(sdir) / "%j"
    job = RunJob(str(Path(root).resolve()), None if data_dir is None else str(Path(data_dir).resolve()),
                 device, opts.grace_s, rerun_stale=rerun_stale, log=log)
    ex = slurm_executor(folder, opts, f"harness-{store.slug(suite.name)}")
    tasks, arrays = [], []
    keys = varying_keys(suite.specs)
    chunks = chunked(rows, max_size)
    for chunk in chunks:
        err = io.StringIO()
        before = set(os.listdir(folder.parent))
        try:
            with _clean_slurm_env(), contextlib.redirect_stderr(err):
                jobs = ex.map_array(job, [r.spec.to_dict() for r in chunk])
        except Exception as exc:  # noqa: BLE001 - sbatch's message, on one line
            _remove_submission_leftovers(folder.parent, before)
            text = str(exc).strip() or err.getvalue().strip()
            msg = "; ".join(ln.strip().removeprefix("sbatch: error: ") for ln in text.splitlines() if ln.strip())
            done = f" ({len(tasks)} runs in {len(arrays)} earlier arrays were submitted)" if tasks else \
                ", nothing submitted"
            if tasks:
                record_submission(sdir, suite, "slurm", tasks, parameters_record(opts, max_size), arrays,
                                  folder)
            raise UserError(f"sbatch refused the array: {msg}{done}") from None
        arrays.append(jobs[0].job_id.split("_")[0])
        for r, j in zip(chunk, jobs):
            tasks.append({"job_id": j.job_id, "run_id": r.spec.run_id, "run_dir": str(r.run_dir.resolve()),
                          "log": str(j.paths.stdout), "spec": describe_spec(r.spec, keys), "seed": r.spec.seed})
    entry = record_submission(sdir, suite, "slurm", tasks, parameters_record(opts, max_size), arrays, folder)
    n = len(tasks)
    out(f"submitted {n} run{'s' if n != 1 else ''} as {len(arrays)} array{'s' if len(arrays) != 1 else ''} "
        f"({', '.join(arrays)}), at most {min(opts.array_parallelism, max_size)} at once per array"
        + (f"; split at MaxArraySize {max_size} ({size_source})" if len(arrays) > 1 else ""))
    for t in tasks:
        out(f"  {t['job_id']:<14} {t['run_id']}  {t['spec']} seed {t['seed']}")
    out(f"manifest: {sdir / MANIFEST}")
    out(f"logs:     {sdir / 'logs'}/<job id>/")
    return entry


def _remove_submission_leftovers(folder: Path, before: set[str]) -> None:
    """Delete what submitit wrote for a refused sbatch: its pickles and script (new names only)."""
    pattern = re.compile(r"(\.submission_file_[0-9a-f]{32}\.sh|[0-9a-f]{32}\.pkl)")
    for name in set(os.listdir(folder)) - before:
        if pattern.fullmatch(name):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
