"""Suite scheduling: SLURM job arrays through submitit, a local pool, manifest and status.

    sweep(suite)                                             (CLI `sweep`)
      harness.suite.load_suite -> RunSpecs and the raw [slurm] table
      options.slurm_options    -> SlurmOptions ([slurm] table, then the command line)
      plan.make_plan           -> done | diverged | queued | todo per run (records + manifest
                                  + queue.job_states)
      slurm.submit_slurm       -> one job array per suite, each task a job.RunJob    (exits)
      local.run_local          -> a few runs at a time on this machine               (waits)
      manifest                 -> <results>/_suites/<suite>-<budget>/manifest.json
    suite_status(suite)        -> status.StatusRow per run                        (CLI `status`)

Modules, one concern each: `options` (the one table of SLURM options), `job` (the task
and its attempts), `manifest`, `slurm` (submission), `queue` (sacct/squeue/scontrol with
timeouts), `local` (the local pool), `plan`, `status`.

A sweep leaves out the runs that are finished or already queued and hands the rest to
an executor; with `rerun_stale` it also reruns, forced, the finished runs made by code that
has changed since or without a code fingerprint (harness.fingerprint). Every task, local or on SLURM, runs the single-run path
`harness.runner.execute` through `RunJob`: no logic differs between the two paths.
Concurrent sweeps of one suite share the work: a run that another process trains (its
run lock is held) is "running elsewhere", skipped, not failed.
"""

from __future__ import annotations

import re
import shutil
from typing import Any, Callable

from harness import livelog, store
from harness.errors import UserError
from harness.schedule.job import (RUNNING_ELSEWHERE, RunJob, append_attempt, failure_reason,
                                  read_attempts)
from harness.schedule.local import default_devices, local_slots, run_local, slot_device
from harness.schedule.manifest import (JOBS_ENV, MANIFEST, SUITES_DIR, job_folder, read_manifest,
                                       record_submission, suite_dir, unsafe_directory, update_task)
from harness.schedule.options import SlurmOptions, parse_time, sbatch_summary, slurm_options
from harness.schedule.plan import PlanRow, describe_spec, make_plan, varying_keys
from harness.schedule.queue import (DEFAULT_MAX_ARRAY_SIZE, _expand_ids, job_states, parse_sacct,
                                    parse_squeue, read_max_array_size)
from harness.schedule.slurm import chunked, submit_slurm
from harness.schedule.status import StatusRow, format_status, suite_status
from harness.suite import load_suite

__all__ = ["sweep", "suite_status", "format_status", "StatusRow", "RunJob", "RUNNING_ELSEWHERE",
           "append_attempt", "read_attempts", "failure_reason", "default_devices", "local_slots",
           "run_local", "slot_device", "JOBS_ENV", "MANIFEST", "SUITES_DIR", "job_folder",
           "read_manifest", "record_submission", "suite_dir", "unsafe_directory", "update_task",
           "SlurmOptions", "parse_time", "sbatch_summary", "slurm_options", "PlanRow",
           "describe_spec", "make_plan", "varying_keys", "DEFAULT_MAX_ARRAY_SIZE", "_expand_ids",
           "job_states", "parse_sacct", "parse_squeue", "read_max_array_size", "chunked",
           "submit_slurm"]


def sweep(suite_path: str, *, budget: str | None = None, executor: str = "slurm", results_dir=None,
          data_dir=None, device: str = "auto", slurm: dict | None = None, max_parallel: int | None = None,
          devices: list[str] | None = None, dry_run: bool = False, rerun_stale: bool = False,
          out: Callable[[str], None] = print, log: str | None = None) -> dict:
    """Plan a suite and submit (slurm) or run (local) what is not finished or queued (and,
    with `rerun_stale`, the finished runs whose code has changed since)."""
    if executor not in ("slurm", "local"):
        raise UserError(f"unknown executor {executor!r}; use slurm or local")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device or "auto"):
        # checked by name only: the submitting host (a login node) may have no GPU
        raise UserError(f"--device: unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if executor == "local":
        devices, max_parallel = local_slots(devices, max_parallel)
    livelog.check(log)
    suite = load_suite(suite_path, budget)          # the file is read once, [slurm] included
    if not isinstance(suite.slurm, dict):
        raise UserError(f"{suite_path}: slurm must be a table ([slurm]), got {type(suite.slurm).__name__}")
    opts = slurm_options(suite.slurm, slurm, where=f"{suite_path}: slurm")
    root = store.results_root(results_dir)
    rows, source = make_plan(suite, root, executor, rerun_stale=rerun_stale)
    counts = {k: sum(r.state == k for r in rows) for k in ("done", "diverged", "queued", "todo", "stale")}
    out(f"suite {suite.name} (budget {suite.budget or '-'}): {len(rows)} run{'s' if len(rows) != 1 else ''}; "
        f"{counts['done'] + counts['diverged']} already done"
        + (f" ({counts['diverged']} diverged)" if counts["diverged"] else "")
        + f", {counts['queued']} queued or running, {counts['todo']} to "
        + ("submit" if executor == "slurm" else "run")
        + (f", {counts['stale']} stale to rerun" if rerun_stale else ""))
    todo = [r for r in rows if r.state in ("todo", "stale")]
    summary: dict[str, Any] = {"suite": suite, "rows": rows, "todo": len(todo), "options": opts,
                               "suite_dir": suite_dir(root, suite)}
    if dry_run:
        if executor == "slurm":
            if opts.max_array_size:
                max_size, size_source = opts.max_array_size, "max_array_size option"
            elif shutil.which("scontrol"):
                max_size, size_source = read_max_array_size()
            else:
                max_size, size_source = DEFAULT_MAX_ARRAY_SIZE, "scontrol not found; assumed"
            n_arrays = len(chunked(todo, max_size)) if todo else 0
            out(f"executor slurm: {n_arrays} array{'s' if n_arrays != 1 else ''} "
                f"(MaxArraySize {max_size}, {size_source}), at most {opts.array_parallelism} tasks at once; "
                f"sbatch {sbatch_summary(opts)}")
        else:
            devs = devices or default_devices()
            out(f"executor local: at most {max_parallel or len(devs)} at once on {', '.join(devs)}")
        keys = varying_keys(suite.specs)
        width = max([len("run"), *(len(describe_spec(r.spec, keys)) for r in rows)])
        dwidth = max([len("dataset"), *(len(r.spec.dataset) for r in rows)])
        out(f"  {'run id':<16} {'run':<{width}} {'dataset':<{dwidth}} {'seed':>4} {'epochs':>6}  state")
        for r in rows:
            s = r.spec
            state = r.state + (f" (job {r.job_id}, {r.detail})" if r.job_id else
                               f" ({r.detail})" if r.detail else "")
            out(f"  {s.run_id:<16} {describe_spec(s, keys):<{width}} {s.dataset:<{dwidth}} {s.seed:>4} "
                f"{s.epochs:>6}  {state}")
        if source:
            out(f"job states from {source}")
        out("dry run: nothing submitted")
        return summary
    if not todo:
        out("nothing to " + ("submit" if executor == "slurm" else "run"))
        return summary
    if executor == "slurm":
        summary["submission"] = submit_slurm(suite, todo, root, opts, data_dir, device, out,
                                             rerun_stale=rerun_stale, log=log)
        out(f"follow with: python -m harness status {suite_path}"
            + (f" --budget {suite.budget}" if budget else "")
            + (f" --results-dir {results_dir}" if results_dir else ""))
    else:
        res = run_local(suite, [r.spec for r in todo], root, max_parallel=max_parallel, devices=devices,
                        data_dir=data_dir, out=out, rerun_stale=rerun_stale, live_log=log)
        summary["local"] = res
        out(f"local: {len(res['done'])} done, {len(res['diverged'])} diverged, {len(res['failed'])} failed"
            + (f", {len(res['elsewhere'])} {RUNNING_ELSEWHERE} (skipped)" if res["elsewhere"] else ""))
        for run_id, reason, log in res["failed"]:
            out(f"  failed {run_id}: {reason}  (log: {log})")
    return summary
