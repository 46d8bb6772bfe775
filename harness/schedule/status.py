"""`status`: where each run of a suite stands, from three sources.

    manifest (which job ran which run)  +  SLURM's job states (harness.schedule.queue)
        +  the run records and attempts (harness.store)  ->  one row per run:
    done | diverged | running | pending | queued | failed | cancelled | unknown | not submitted

`queued` is a run waiting for a slot in a local sweep that is still running; `pending` one
that SLURM holds.

A record that claims completion without metrics says so; a record that cannot be read
is shown in its row (the other runs still get theirs); a job's error comes from its
record, its attempts or the last exception line of its text log, never from a pickle.

What it reads, it trusts no further than the suite's own folders: a log the manifest
names is read only inside the suite directory (or its $SPECTRAL_BENCH_JOBS folder), as
a regular file and only its tail; a local run is "running" only while the process its
attempt line names is alive and is that very process (pid, start time, boot id).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path

from harness import files, store
from harness.errors import UserError
from harness.schedule.job import (RUNNING_ELSEWHERE, _log_error, _log_tail, current_attempt,
                                  failure_reason, read_attempts, same_process_alive)
from harness.schedule.manifest import MANIFEST, job_folder_path, read_manifest, suite_dir
from harness.schedule.plan import _unique, describe_spec, varying_keys
from harness.schedule.queue import ACTIVE_PENDING, ACTIVE_RUNNING, CMD_TIMEOUT_S, FAILED_STATES, job_states
from harness.store import RunDir
from harness.suite import load_suite
from harness.text import plural


@dataclass
class StatusRow:
    run_id: str
    spec: str
    seed: int
    state: str          # done | diverged | running | pending | queued | failed | cancelled | not submitted | unknown
    job_id: str | None = None
    slurm_state: str | None = None
    detail: str = ""
    log: str | None = None
    run_dir: str = ""

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


STATE_ORDER = ("done", "diverged", "running", "pending", "queued", "failed", "cancelled", "unknown",
               "not submitted")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def suite_log(sdir: Path, log: str | None) -> str | None:
    """The manifest's log path if it lies inside the suite's own folders, else None.

    A manifest in a shared directory could name any file (someone's secrets) as a log;
    only the suite directory and this suite's job folder are ours to read. A log that is
    not a regular file (a FIFO, a device, a link) is refused wherever it is.
    """
    if not log:
        return None
    try:
        mode = os.lstat(log).st_mode
    except ValueError:      # a NUL in the name: no file has it
        return None
    except OSError:
        mode = None         # no log (yet): nothing to read
    if mode is not None and not stat.S_ISREG(mode):
        raise UserError(f"suite manifest {Path(sdir) / MANIFEST} names {log} as a job log, but it is "
                        f"{files.file_kind(mode)}, not a regular file; move the manifest aside "
                        f"(run records are not affected)")
    parent = os.path.realpath(os.path.dirname(os.path.abspath(log)))
    for root in (sdir, job_folder_path(sdir)):
        root = os.path.realpath(root)
        if parent == root or parent.startswith(root + os.sep):
            return os.path.join(parent, os.path.basename(log))
    return None


def waiting_in_local_sweep(manifest: dict, run_id: str) -> int | None:
    """The pid of the local sweep that holds `run_id` in its queue and still runs, else None.
    A local sweep starts its runs a few at a time; the others wait in its queue
    (`queued` in its submission), and are "not submitted" again once that sweep has ended."""
    for sub in reversed(manifest["submissions"]):
        params = sub.get("parameters") if isinstance(sub, dict) else None
        if not isinstance(params, dict) or sub.get("executor") != "local":
            continue
        queued, proc = params.get("queued"), params.get("sweep_process")
        if isinstance(queued, list) and run_id in queued and isinstance(proc, dict) \
                and same_process_alive(proc):
            return proc.get("pid")
    return None


def suite_status(suite_path: str, *, budget: str | None = None, results_dir=None,
                 timeout: float = CMD_TIMEOUT_S) -> dict:
    """Combine the manifest, SLURM's job states and the run records."""
    suite = load_suite(suite_path, budget)
    root = store.results_root(results_dir)
    sdir = suite_dir(root, suite)
    manifest = read_manifest(sdir)
    specs = _unique(suite.specs)
    slurm_jobs = [manifest["runs"][s.run_id]["job_id"] for s in specs
                  if manifest["runs"].get(s.run_id, {}).get("executor") == "slurm"]
    states, source, notes = job_states(slurm_jobs, timeout) if slurm_jobs else ({}, "", [])
    rows = []
    keys = varying_keys(suite.specs)
    for s in specs:
        d = store.run_dir(root, s)
        task = manifest["runs"].get(s.run_id)
        row = StatusRow(run_id=s.run_id, spec=describe_spec(s, keys), seed=s.seed, state="unknown",
                        run_dir=str(d))
        try:
            rec = RunDir(d).record()
        except UserError as exc:   # shown in its row; the other runs still get a status
            row.detail = str(exc)
            rows.append(row)
            continue
        log = None
        if task:
            row.job_id, row.log = task.get("job_id"), task.get("log")
            log = suite_log(sdir, row.log)
        info = states.get(row.job_id, {}) if task and task.get("executor") == "slurm" else {}
        row.slurm_state = info.get("state") or None
        attempts = read_attempts(d)
        if rec is not None and rec.is_finished:
            row.state = "done" if rec.is_complete else "diverged"
            m, t = rec.metrics, rec.timing
            if rec.is_complete:
                acc, train_s, sessions = rec.test_acc, t.get("train_s"), t.get("sessions")
                parts = [f"test acc {100 * acc:.2f}%" if _number(acc) else "no test accuracy in the record",
                         f"{m.get('epochs_done')}/{rec.spec.get('epochs')} epochs"]
                if _number(train_s):
                    parts.append(f"train {train_s:.1f}s")
                if _number(sessions) and sessions > 1:
                    parts.append(f"{sessions} sessions")
                row.detail = ", ".join(parts)
            else:
                row.detail = str(rec.reason)
        elif task is None:
            sweep = waiting_in_local_sweep(manifest, s.run_id)
            if sweep:
                row.state, row.detail = "queued", f"waiting for a slot in the local sweep (pid {sweep})"
            else:
                row.state = "not submitted"
        elif task.get("executor") == "local":
            start, epoch = current_attempt(attempts)
            if start and same_process_alive(start):
                row.state = "running"
                if epoch and epoch.get("epoch") is not None:
                    row.detail = f"epoch {epoch['epoch']}/{epoch.get('epochs', '?')} done"
            elif task.get("outcome") == "failed" or rec is not None:
                row.state, row.detail = "failed", task.get("reason") or failure_reason(d) \
                    or _log_error(log)
            else:
                row.state, row.detail = "unknown", "local job ended without a result (interrupted?)"
        else:
            st = row.slurm_state
            if st in ACTIVE_RUNNING:
                row.state = "running"
                row.detail = st.lower() if st != "RUNNING" else ""
                starts = [a for a in attempts if a.get("event") == "start"]
                if len(starts) > 1:
                    row.detail = (row.detail + " " if row.detail else "") + f"attempt {len(starts)}"
                epoch = current_attempt(attempts)[1]
                if epoch and epoch.get("epoch") is not None:
                    row.detail = (row.detail + ", " if row.detail else "") + \
                        f"epoch {epoch['epoch']}/{epoch.get('epochs', '?')} done"
            elif st in ACTIVE_PENDING:
                row.state = "pending"
                row.detail = " ".join(x for x in (st.lower() if st != "PENDING" else "", info.get("reason", ""))
                                      if x)
            elif st == "CANCELLED":
                row.state, row.detail = "cancelled", "cancelled" + (
                    f" ({info['reason']})" if info.get("reason") else "")
            elif st == "COMPLETED" and rec is None and any(RUNNING_ELSEWHERE in ln for ln in _log_tail(log)):
                # a duplicate task (two sweeps submitted the run): another job trains it
                row.state, row.detail = "running", f"{RUNNING_ELSEWHERE}: job {row.job_id} found it locked"
            elif st in FAILED_STATES or st == "COMPLETED" or rec is not None:
                why = failure_reason(d) or _log_error(log)
                if not why:
                    why = (f"SLURM state {st}" + (f", exit code {info['exit_code']}" if info.get("exit_code")
                                                  else "")) if st else "no result"
                    if st == "COMPLETED":
                        why = "job completed without writing a result record"
                elif st and st != "COMPLETED":
                    why = f"{st}: {why}"
                row.state, row.detail = "failed", why
            else:
                why = failure_reason(d) or _log_error(log)
                if why:
                    row.state, row.detail = "failed", why
                else:
                    row.state = "unknown"
                    row.detail = (f"job {row.job_id} not known to SLURM ({source or 'no query'}); "
                                  "re-run sweep to resubmit")
        if row.log and log is None and row.state in ("failed", "cancelled", "unknown"):
            row.detail += ("; " if row.detail else "") + "its log is outside the suite folder: not read"
        rows.append(row)
    counts = {k: sum(r.state == k for r in rows) for k in STATE_ORDER}
    return {"suite": suite.name, "budget": suite.budget, "suite_dir": str(sdir), "rows": rows,
            "counts": counts, "source": source, "notes": notes,
            "submissions": len(manifest["submissions"])}


def format_status(report: dict) -> str:
    rows = report["rows"]
    counts = report["counts"]
    lines = [f"suite {report['suite']} (budget {report['budget'] or '-'}): {plural(len(rows), 'run')}: "
             + ", ".join(f"{counts[k]} {k}" for k in STATE_ORDER if counts[k] or k in ("done", "failed"))]
    if report["source"]:
        lines.append(f"job states from {report['source']}"
                     + (f" ({'; '.join(report['notes'])})" if report["notes"] else ""))
    width = max([len("run"), *(len(r.spec) for r in rows)])
    jwidth = max([len("job"), *(len(r.job_id or "-") for r in rows)])
    lines.append(f"  {'run id':<16} {'run':<{width}} {'seed':>4}  {'state':<13} {'job':<{jwidth}}  detail")
    for r in rows:
        lines.append(f"  {r.run_id:<16} {r.spec:<{width}} {r.seed:>4}  {r.state:<13} {r.job_id or '-':<{jwidth}}  "
                     f"{r.detail}")
    problems = [r for r in rows if r.state in ("failed", "cancelled", "unknown")]
    if problems:
        lines.append("problems:")
        for r in problems:
            lines.append(f"  {r.run_id} ({r.state}): {r.detail or '-'}")
            lines.append(f"      log: {r.log or '-'}")
    return "\n".join(lines)
