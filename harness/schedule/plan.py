"""The plan of a sweep: which runs of a suite are done, queued or running, or to do.

`make_plan` reads each run's record and, for runs not finished, the manifest's job and
SLURM's view of it (a run whose job is pending or running is "queued" and not submitted
again). A finished run made by code that has changed since, or without a code fingerprint
(harness.fingerprint), says so in its detail; with `rerun_stale` it is "stale": to be
run again (forced, so its old record stays until the new one is complete). `varying_keys` / `describe_spec` name a run by what differs within its suite
(e.g. `cnn/lenet5 lr=0.004`), for the dry run, the manifest and `status`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import fingerprint, store
from harness.schedule.manifest import read_manifest, suite_dir
from harness.schedule.queue import ACTIVE_PENDING, ACTIVE_RUNNING, CMD_TIMEOUT_S, job_states
from harness.schedule.job import RUNNING_ELSEWHERE
from harness.store import RunDir, RunLocked


@dataclass
class PlanRow:
    spec: Any
    run_dir: Path
    state: str              # done | diverged | queued | todo | stale (rerun a finished run)
    job_id: str | None = None
    detail: str = ""


def _unique(specs) -> list:
    seen, out = set(), []
    for s in specs:
        if s.run_id not in seen:
            seen.add(s.run_id)
            out.append(s)
    return out


def provenance_detail(rec) -> str:
    """'' when the record's code is this checkout's, else what changed or why unknown."""
    prov = fingerprint.check(rec.environment.get("code"))
    if prov.state == fingerprint.STALE:
        return f"stale: {', '.join(prov.changed)} changed"
    return f"provenance unknown: {prov.why}" if prov.state == fingerprint.UNKNOWN else ""


def make_plan(suite, root: Path, executor: str, timeout: float = CMD_TIMEOUT_S,
              rerun_stale: bool = False) -> tuple[list[PlanRow], str]:
    """Which runs are finished, queued or running (per the manifest and SLURM), or to do;
    with `rerun_stale`, finished runs whose code is not this checkout's are "stale"."""
    sdir = suite_dir(root, suite)
    manifest = read_manifest(sdir)
    rows = []
    for spec in _unique(suite.specs):
        d = store.run_dir(root, spec)
        try:
            rec = RunDir(d).record()
        except RunLocked:       # another process is swapping in its --force run right now
            rows.append(PlanRow(spec, d, "queued", detail=RUNNING_ELSEWHERE))
            continue
        if rec is not None and rec.is_finished:
            detail = provenance_detail(rec)
            state = "stale" if (rerun_stale and detail) else "done" if rec.is_complete else "diverged"
            rows.append(PlanRow(spec, d, state, detail=detail))
        else:
            rows.append(PlanRow(spec, d, "todo"))
    source = ""
    todo_jobs = {}
    for r in rows:
        task = manifest["runs"].get(r.spec.run_id)
        if r.state == "todo" and task and task.get("executor") == "slurm":
            todo_jobs[r.spec.run_id] = task["job_id"]
    if todo_jobs:
        states, source, notes = job_states(list(todo_jobs.values()), timeout)
        if notes:
            source += f" ({'; '.join(notes)})"
        for r in rows:
            jid = todo_jobs.get(r.spec.run_id)
            st = states.get(jid, {}).get("state") if jid else None
            if st in ACTIVE_RUNNING or st in ACTIVE_PENDING:
                r.state, r.job_id, r.detail = "queued", jid, st.lower()
    return rows, source


def _flat(spec) -> dict:
    d = spec.to_dict()
    d.pop("seed")
    hp = d.pop("hparams") or {}
    return {**d, **{f"hparams.{k}": v for k, v in hp.items()}}


def varying_keys(specs) -> dict[str, list[str]]:
    """Per method: the spec fields (besides method, arch, seed) whose values differ in the suite.

    Training keys count across the whole suite; method options only among the runs of
    the same method (another method's options are not a difference).
    """
    flats = [(s.method, _flat(s)) for s in specs]

    def differs(key, group):
        return len({json.dumps(f.get(key), sort_keys=True, default=str) for f in group}) > 1

    every = [f for _, f in flats]
    train = [k for k in sorted({k for f in every for k in f if not k.startswith("hparams.")} - {"method", "arch"})
             if differs(k, every)]
    out = {}
    for method in {m for m, _ in flats}:
        group = [f for m, f in flats if m == method]
        hp = sorted({k for f in group for k in f if k.startswith("hparams.")})
        out[method] = train + [k for k in hp if differs(k, group)]
    return out


def describe_spec(spec, keys: dict[str, list[str]] | None = None) -> str:
    """'method/arch' plus the fields that vary within the suite, e.g. 'cnn/lenet5 lr=0.004'."""
    flat = _flat(spec)
    extra = " ".join(f"{k.removeprefix('hparams.')}={flat[k]}" for k in (keys or {}).get(spec.method, ())
                     if flat.get(k) is not None)
    return f"{spec.method}/{spec.arch}" + (f" {extra}" if extra else "")
