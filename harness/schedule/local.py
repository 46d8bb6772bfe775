"""The local executor: a suite on this machine, a few runs at a time.

submitit's LocalExecutor starts every job at once, so `run_local` submits one job per free
slot and waits: never more than `max_parallel` runs at once (default: one per device).
Each slot is bound to one device; a job bound to `cuda:N` sees only that GPU
(`slot_device`), where it trains on `cuda:0`. The runs share this machine's cores:
each gets its part (`harness.contention.default_threads`). A failed run is recorded
(manifest, attempts, its log) and the suite goes on; a run another process trains is
"running elsewhere", skipped, not failed.

Interrupted, the sweep takes its runs with it: on SIGINT or SIGTERM it stops its tasks
and waits for them; killed (SIGKILL), it leaves each task to notice on its own that the
sweep is gone (`RunJob._end_with_sweep`). The next sweep resumes the runs from their
checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import submitit

from harness import files, store
from harness.contention import available_cores, default_threads
from harness.device import physical_gpu, resolve_device
from harness.env import REPO
from harness.errors import UserError
from harness.schedule.job import (RUNNING_ELSEWHERE, RunJob, failure_reason, process_start,
                                  this_process)
from harness.schedule.manifest import (MANIFEST, job_folder, read_manifest, record_submission,
                                      suite_dir, update_task)
from harness.schedule.plan import _unique, describe_spec, varying_keys
from harness.schedule.progress import Progress
from harness.store import locked
from harness.text import plural


def default_devices() -> list[str]:
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def slot_device(dev: str) -> tuple[str | None, str]:
    """(the GPU the job may see, device name the job trains on) for a local slot's device.

    `cuda:N` is this process's N-th visible GPU: the job sees only that one, named as in
    this process's CUDA_VISIBLE_DEVICES (`harness.device.physical_gpu`), where it is
    `cuda:0`. A CPU slot sees no GPU (None).
    """
    if dev.startswith("cuda:"):
        return physical_gpu(int(dev.split(":")[1])), "cuda:0"
    return None, dev


def slot_executor(folder: Path, gpu: str | None, timeout_min: int):
    """A submitit LocalExecutor whose jobs see only `gpu` (None: no GPU).

    submitit writes CUDA_VISIBLE_DEVICES from integer indices only (and empty for none); a
    UUID cannot pass there, so the task's command (`task_python`) sets it, after submitit's.
    """
    executor = submitit.LocalExecutor(folder=folder, python=task_python(gpu))
    executor.update_parameters(timeout_min=timeout_min, stderr_to_stdout=True,
                               gpus_per_node=0, visible_gpus=())
    return executor


def run_local(suite, specs: list, root: Path, *, max_parallel: int | None = None,
              devices: list[str] | None = None, data_dir=None, poll_s: float = 0.2,
              timeout_min: int = 7 * 24 * 60, out=print, rerun_stale: bool = False,
              live_log: str | None = None) -> dict:
    """Run `specs` in subprocesses, never more than `max_parallel` at once.

    Each slot is bound to one device (`devices[slot % len(devices)]`, CUDA_VISIBLE_DEVICES
    set to it). A failed run is recorded (manifest, attempts, its log) and the suite goes
    on. With `rerun_stale` a finished run whose code has changed since is rerun (forced).
    Returns {"done": [...], "failed": [(run_id, reason, log)], ...}.
    """
    devices, max_parallel = local_slots(devices, max_parallel)
    # the runs share this machine's cores: each gets its part (specs with threads auto)
    threads = default_threads(max_parallel)
    gpus = [d for d in devices if d.startswith("cuda")]
    if gpus and max_parallel > len(devices):
        out(f"warning: {max_parallel} runs at once on {plural(len(devices), 'device')}: runs overlap on a "
            f"GPU, so their timings are not comparable")
    elif max_parallel > available_cores():
        out(f"warning: {max_parallel} runs at once on {available_cores()} cores: runs compete for "
            f"cores, so their timings are not comparable (each record says so)")
    else:
        out(f"{plural(max_parallel, 'run')} at once, {plural(threads, 'CPU thread')} each (threads auto)")
    sdir = suite_dir(root, suite)
    folder = job_folder(sdir) / "%j"
    executors: dict[str | None, Any] = {}     # one per GPU a job may see (None: no GPU)
    parent = (os.getpid(), process_start(os.getpid()))     # the tasks end when we do
    pending = list(_unique(specs))
    keys = varying_keys(suite.specs)
    total = len(pending)
    free_slots = list(range(max_parallel))
    running: dict[int, tuple[Any, Any]] = {}   # slot -> (job, spec)
    result: dict[str, list] = {"done": [], "diverged": [], "failed": [], "elsewhere": []}
    started = 0
    # the runs waiting for a slot, and this sweep's process: `status` calls them queued
    # while this process lives, "not submitted" once it has ended
    record_submission(sdir, suite, "local", [], {"max_parallel": max_parallel, "devices": devices,
                                               "threads_per_run": threads,
                                               "queued": [s.run_id for s in pending],
                                               "sweep_process": {**this_process(),
                                                                 "host": socket.gethostname()}},
                      [], folder)
    progress = Progress(root, pending, out, describe=lambda spec: describe_spec(spec, keys))
    previous = sigterm_interrupts()
    try:
        while pending or running:
            while pending and free_slots:
                slot = free_slots.pop(0)
                spec = pending.pop(0)
                dev = devices[slot % len(devices)]
                gpu, job_device = slot_device(dev)
                if gpu not in executors:
                    executors[gpu] = slot_executor(folder, gpu, timeout_min)
                job = executors[gpu].submit(RunJob(str(Path(root).resolve()),
                                             None if data_dir is None else str(Path(data_dir).resolve()),
                                             job_device, threads=threads, parent=parent,
                                             rerun_stale=rerun_stale, log=live_log),
                                      spec.to_dict())
                running[slot] = (job, spec)
                started += 1
                d = store.run_dir(root, spec)
                with locked(sdir, wait=True):
                    manifest = read_manifest(sdir)
                    task = {"job_id": job.job_id, "run_id": spec.run_id, "run_dir": str(d.resolve()),
                            "log": str(job.paths.stdout), "spec": describe_spec(spec, keys), "seed": spec.seed,
                            "device": dev, "physical_gpu": gpu}
                    manifest["submissions"][-1]["tasks"].append(task)
                    manifest["runs"][spec.run_id] = {**task, "executor": "local", "folder": str(folder),
                                                     "submission": manifest["submissions"][-1]["number"]}
                    files.write_json(sdir / MANIFEST, manifest)
                on = dev if gpu is None else f"{dev} (GPU {gpu})"
                out(f"[{started}/{total}] start {spec.run_id} {describe_spec(spec, keys)} seed {spec.seed} "
                    f"on {on} (job {job.job_id})")
            time.sleep(poll_s)
            progress.poll([spec for _, spec in running.values()])
            for slot, (job, spec) in list(running.items()):
                if not job.done():
                    continue
                progress.finished(spec)        # its last epochs, then nothing left of it
                del running[slot]
                free_slots.append(slot)
                free_slots.sort()
                log = str(job.paths.stdout)
                try:
                    res = job.result()
                except Exception as exc:  # noqa: BLE001 - a failed run, recorded; the suite goes on
                    reason = failure_reason(store.run_dir(root, spec), exc)
                    result["failed"].append((spec.run_id, reason, log))
                    update_task(sdir, spec.run_id, outcome="failed", reason=reason)
                    out(f"FAILED {spec.run_id}: {reason} (log: {log})")
                    continue
                status = res.get("status") if isinstance(res, dict) else None
                if status == RUNNING_ELSEWHERE:   # another sweep trains it: skipped, not failed
                    result["elsewhere"].append(spec.run_id)
                    update_task(sdir, spec.run_id, outcome=RUNNING_ELSEWHERE)
                    out(f"{RUNNING_ELSEWHERE} {spec.run_id}: another process trains it; skipped")
                    continue
                key = "done" if status == store.STATUS_COMPLETE else (
                    "diverged" if status == store.STATUS_DIVERGED else "failed")
                if key == "failed":
                    reason = f"run ended with status {status}"
                    result["failed"].append((spec.run_id, reason, log))
                    update_task(sdir, spec.run_id, outcome="failed", reason=reason)
                    out(f"FAILED {spec.run_id}: {reason} (log: {log})")
                else:
                    result[key].append(spec.run_id)
                    update_task(sdir, spec.run_id, outcome=status)
                    acc = res.get("test_acc")
                    out(f"{key} {spec.run_id}" + (f": test acc {100 * acc:.2f}%" if acc is not None else ""))
    except KeyboardInterrupt:      # Ctrl-C or SIGTERM: stop our runs too, then exit
        for job, _ in running.values():
            # SIGTERM to submitit's controller (a Popen: never a reused pid), which forwards
            # it to its task, which stops at once; job.cancel() would send SIGINT, leaving a
            # traceback of the controller on our terminal
            with contextlib.suppress(OSError):
                if getattr(job, "_process", None) is not None:
                    job._process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(not job.done() for job, _ in running.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for _, spec in running.values():
            with contextlib.suppress(Exception):
                update_task(sdir, spec.run_id, outcome="interrupted")
        out(f"interrupted: {plural(len(running), 'run')} stopped; the next sweep resumes "
            f"{'it from its checkpoint' if len(running) == 1 else 'them from their checkpoints'}")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(OSError):
            os.rmdir(folder)    # submitit's local controller creates the literal '%j' folder
    return result


class Terminated(KeyboardInterrupt):
    """SIGTERM to a local sweep: it ends as on Ctrl-C (its runs stopped), with status 143."""
    exit_status = 128 + signal.SIGTERM


def sigterm_interrupts():
    """Make SIGTERM raise Terminated, as SIGINT raises KeyboardInterrupt; returns the
    previous handler to restore (None off the main thread, where no handler can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminated(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminated)


def task_python(gpu: str | None = None) -> str:
    """The tasks' interpreter, with this checkout first on PYTHONPATH (the code the manifest
    names) and only `gpu` visible (none for None). Set by `env` in the task's command
    rather than by a shell line around the controller, so that the controller is our own
    child and job.cancel() reaches it."""
    path = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return shlex.join(["env", f"PYTHONPATH={path}", f"CUDA_VISIBLE_DEVICES={gpu or ''}",
                       sys.executable])


def local_slots(devices: list[str] | None, max_parallel: int | None) -> tuple[list[str], int]:
    """Validated devices and concurrency of the local executor (default: one run per device)."""
    devices = list(devices or default_devices())
    for d in devices:
        if not re.fullmatch(r"cpu|cuda:\d+", d):
            raise UserError(f"--devices: unknown device {d!r}; use cpu or cuda:N, comma separated "
                            f"(e.g. --devices cuda:0,cuda:1)")
        if d.startswith("cuda:"):
            resolve_device(d)   # CUDA present and the index exists: one line now, not N failed jobs
    if max_parallel is not None and (isinstance(max_parallel, bool) or max_parallel < 1):
        raise UserError(f"--max-parallel must be >= 1, got {max_parallel}")
    return devices, max_parallel or len(devices)
