"""The task every executor runs (`RunJob`), its attempts, and what a failed job left.

`RunJob` is a small picklable callable (paths and a spec dict, never tensors or models)
that runs the single-run path `harness.runner.execute` in a worker thread. The thread
keeps the main thread free for submitit's USR2 handler (preemption, or `signal_delay_s`
before the time limit), which calls `checkpoint()`: it asks the training loop to stop at
the next epoch boundary, waits for the checkpoint (at most `grace_s`) and returns a fresh
RunJob for the same spec, which submitit requeues; the restarted task resumes from the
checkpoint with its accumulated time. A run another process trains (its lock is held) is
"running elsewhere": reported, not a failure. With `rerun_stale`, a finished run whose
code has changed since (or has no fingerprint, harness.fingerprint) is run again with
`force`: decided when the task starts, so a requeued task resumes the forced run and a
task that finds the run already current does nothing.

A task of a local sweep ends with the sweep (`RunJob._end_with_sweep`), however the sweep
ends: no training process outlives it.

Each task start and end is a line in the run's `attempts.jsonl` (job id, host, restart
count, time, outcome; a start also names its process: pid, the process's start time and
the machine's boot id, so that `status` can tell that very process from a later one that
reuses the pid: `same_process_alive`), and so is each finished epoch (epoch, epochs,
validation accuracy, time: a local sweep's progress and ETA, and `status`). `failure_reason` finds the one line that says why
a job failed: the record's reason, else the job's own account in its attempts, else the
last exception line of its text log (never unpickling anything). Attempts and logs are
read only as regular files, and only their last bytes (harness.files).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import submitit

from harness import files, store
from harness.errors import UserError
from harness.spec import RunSpec
from harness.store import RunDir, RunLocked, RunRecord
from harness.text import plural

RUNNING_ELSEWHERE = "running elsewhere"   # a job's status when another process trains its run


def _job_ids() -> dict[str, str]:
    out = {}
    try:
        env = submitit.JobEnvironment()
        out["job_id"] = str(env.job_id)
    except Exception:  # noqa: BLE001 - not inside a submitit job
        pass
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        if key in os.environ:
            out[key.lower()] = os.environ[key]
    return out


def append_attempt(run_directory: Path, entry: dict) -> None:
    """One JSON line in <run dir>/attempts.jsonl (only this run's job writes there)."""
    files.make_dirs(run_directory)
    path = RunDir(run_directory).attempts
    try:   # never through a planted link: that would append to someone else's file
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link; remove it (rm {path}) and run again") from None
        raise (files.disk_error(path, exc) or exc) from None
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(files.strict(entry), sort_keys=True, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


ATTEMPTS_TAIL = 2**20    # bytes of attempts.jsonl read: thousands of attempts, never unbounded
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def process_start(pid: int) -> str | None:
    """A token for the live process `pid`: its start time (/proc/<pid>/stat field 22, clock
    ticks since boot), so that a process that reuses the pid later is not taken for it.
    None when no such process lives (a zombie has ended). Without /proc (not Linux): the
    pid, while a signal can reach it."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            # the name before ")" may hold spaces; fields[0] is field 3 (the state)
            fields = f.read(4096).rsplit(b")", 1)[1].split()
        return None if fields[0] in (b"Z", b"X") else fields[19].decode()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None
    except (OSError, IndexError, ValueError):
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except OSError:
        pass
    return str(pid)


def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def this_process() -> dict:
    """This process as an attempt line records it: pid, start time and boot id."""
    return {"pid": os.getpid(), "pid_start": process_start(os.getpid()), "boot_id": _boot_id()}


def same_process_alive(entry: dict) -> bool:
    """Is the process an attempt line names still running: the same pid, started at the
    same time, on this machine since the same boot? A line without a start time or boot id
    (an older harness, another OS, or written by hand) cannot be checked, and counts as ended."""
    pid, start, boot = entry.get("pid"), entry.get("pid_start"), entry.get("boot_id")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or not start or not boot:
        return False
    if entry.get("host") != socket.gethostname() or boot != _boot_id():
        return False
    return process_start(pid) == str(start)


def read_attempts(run_directory: Path) -> list[dict]:
    """The run's attempt lines (its last ATTEMPTS_TAIL bytes); [] when it has none.

    A file in its place that is not a regular file (a FIFO, /dev/zero, a link) is a
    one-line UserError; lines that are not JSON objects (or nest deeper than our lines)
    are skipped."""
    path = RunDir(run_directory).attempts
    try:
        data = files.read_tail(path, "attempts file", ATTEMPTS_TAIL,
                               "remove it (it only lists when the run's jobs started and ended)")
    except OSError:        # none (yet), or unreadable: no attempts to show
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if len(data) == ATTEMPTS_TAIL and lines:
        lines = lines[1:]          # the first line was cut by the tail
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = files.loads_bounded(line, max_depth=4)
            if isinstance(entry, dict):
                out.append(entry)
    return out


class RunJob(submitit.helpers.Checkpointable):
    """The task of every executor: run one spec through `harness.runner.execute`.

    Picklable and small: it holds paths and options; the spec is passed as a plain
    dict, so a queued task does not depend on the pickled form of RunSpec.
    """

    def __init__(self, results_dir: str, data_dir: str | None = None, device: str = "auto",
                 grace_s: float = 90.0, threads: int | None = None,
                 parent: tuple[int, str] | None = None, rerun_stale: bool = False,
                 log: str | None = None):
        self.results_dir = str(results_dir)
        self.data_dir = None if data_dir is None else str(data_dir)
        self.device = device
        self.grace_s = float(grace_s)
        self.threads = threads      # for specs with threads auto; None: the task's own cores
        self.parent = parent        # a local sweep's (pid, process_start): ends with it
        self.rerun_stale = rerun_stale
        self.log = log              # live logging (harness.livelog), e.g. "tensorboard"

    # runtime state (thread, stop flag) never goes into a pickle
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_rt")}

    def __call__(self, spec: dict) -> dict:
        s = RunSpec.from_dict(spec)
        directory = store.run_dir(Path(self.results_dir), s)
        ids = _job_ids()
        stop = threading.Event()
        box: dict[str, Any] = {}

        def on_start():   # the run is locked and will train: this is an attempt
            n = sum(a.get("event") == "start" for a in read_attempts(directory)) + 1
            print(f"harness: run {s.run_id} ({s.method}/{s.arch} on {s.dataset}, seed {s.seed}, "
                  f"{plural(s.epochs, 'epoch')}), attempt {n}, results in {directory}", file=sys.stderr, flush=True)
            append_attempt(directory, {"event": "start", "t": time.time(), "host": socket.gethostname(),
                                       **this_process(), **ids})
            box["started"] = True

        def on_epoch(row: dict):   # progress for the sweep's ETA and for `status`
            append_attempt(directory, {"event": "epoch", "t": time.time(), "epoch": row.get("epoch"),
                                       "epochs": row.get("epochs"), "val_acc": row.get("val_acc"),
                                       **ids})

        def work():
            from harness.runner import execute
            try:
                force = getattr(self, "rerun_stale", False) and is_stale(directory)
                box["record"] = execute(s, data_dir=self.data_dir, results_dir=self.results_dir,
                                        device=self.device, progress=True, should_stop=stop.is_set,
                                        on_start=on_start, threads=getattr(self, "threads", None),
                                        force=force, on_epoch=on_epoch, log=getattr(self, "log", None))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                box["error"], box["traceback"] = exc, traceback.format_exc()

        worker = threading.Thread(target=work, name=f"run-{s.run_id}", daemon=True)
        self._rt_stop, self._rt_worker = stop, worker
        self._rt_requeued = False
        outcome, error = "interrupted", None
        release = self._end_with_sweep(directory, ids, box)
        try:
            worker.start()
            while worker.is_alive():
                worker.join(0.25)   # the main thread stays free to run signal handlers
            if "error" in box:
                exc = box["error"]
                if isinstance(exc, RunLocked):   # not an attempt of ours, not a failure
                    print(f"harness: {exc}", file=sys.stderr, flush=True)
                    return {"run_id": s.run_id, "status": RUNNING_ELSEWHERE, "run_dir": str(directory)}
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"
                print(box["traceback"], file=sys.stderr, flush=True)
                raise exc
            record = box.get("record")
            if record is None:      # stopped at an epoch boundary; checkpoint() requeues
                outcome = "stopped"
                return {"run_id": s.run_id, "status": "interrupted", "run_dir": str(directory)}
            outcome = record["status"]
            return {"run_id": s.run_id, "status": record["status"], "run_dir": str(directory),
                    "test_acc": RunRecord.from_json(record).test_acc}
        finally:
            release()
            if self._rt_requeued:   # submitit's handler exits right after checkpoint() returns
                outcome = "requeued"
            if box.get("started") or error:
                append_attempt(directory, {"event": "end", "t": time.time(), "outcome": outcome,
                                           "error": error, **ids})

    def _end_with_sweep(self, directory: Path, ids: dict, box: dict):
        """A local sweep's task ends with the sweep: at once on SIGTERM (an interrupted
        sweep signals its controllers, which forward it), and within half a second once
        the sweep is gone, however it ended (SIGKILL too). Returns the undo.

        Why a poll: the task is the sweep's grandchild (sweep -> submitit controller ->
        task); PR_SET_PDEATHSIG and os.getppid() see only the controller, which outlives
        a killed sweep. The sweep's pid and start time (a reused pid is not the sweep)
        tell. The next sweep resumes the run from its last checkpoint (a killed writer
        leaves only temporary files, removed then): ending mid-epoch loses that epoch.
        SLURM tasks (no parent) keep submitit's handling of SIGTERM.
        """
        if not getattr(self, "parent", None):
            return lambda: None
        pid, identity = self.parent

        def stop(why: str):
            print(f"harness: {why}; stopping (the next sweep resumes the run from its last "
                  f"checkpoint)", file=sys.stderr, flush=True)
            if box.get("started"):
                append_attempt(directory, {"event": "end", "t": time.time(), "outcome": "interrupted",
                                           "error": None, **ids})
            os._exit(128 + signal.SIGTERM)

        def watch():
            while not finished.wait(0.5):
                if process_start(pid) != identity:
                    stop("the local sweep that started this task has ended")

        finished = threading.Event()
        threading.Thread(target=watch, name="sweep-watch", daemon=True).start()
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: stop("the local sweep was interrupted"))

        def release():
            finished.set()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return release

    def checkpoint(self, spec: dict) -> submitit.helpers.DelayedSubmission:
        """Called by submitit's USR2 handler: stop at the next epoch boundary, then requeue."""
        stop, worker = getattr(self, "_rt_stop", None), getattr(self, "_rt_worker", None)
        if stop is not None and worker is not None and worker.is_alive():
            print(f"checkpoint requested: stopping at the next epoch boundary "
                  f"(waiting at most {self.grace_s:.0f} s)", file=sys.stderr, flush=True)
            stop.set()
            worker.join(self.grace_s)
            if worker.is_alive():
                print("no epoch boundary within the grace period: the requeued task resumes "
                      "from the last saved epoch", file=sys.stderr, flush=True)
            else:
                print("checkpoint written; requeueing", file=sys.stderr, flush=True)
        self._rt_requeued = True
        fresh = RunJob(self.results_dir, self.data_dir, self.device, self.grace_s,
                       getattr(self, "threads", None), getattr(self, "parent", None),
                       getattr(self, "rerun_stale", False), getattr(self, "log", None))
        return submitit.helpers.DelayedSubmission(fresh, spec)


def is_stale(run_directory: Path) -> bool:
    """A finished run whose code is not this checkout's (or unknown): rerun it."""
    from harness import fingerprint

    rec = RunDir(run_directory).record()
    return bool(rec is not None and rec.is_finished
                and fingerprint.check(rec.environment.get("code")).state != fingerprint.CURRENT)


def current_attempt(attempts: list[dict]) -> tuple[dict | None, dict | None]:
    """(the start line of the attempt still open, i.e. not followed by an end line, and
    its latest epoch line), each None when there is none."""
    start, epoch = None, None
    for a in attempts:
        event = a.get("event")
        if event == "start":
            start, epoch = a, None
        elif event == "end":
            start, epoch = None, None
        elif event == "epoch" and start is not None:
            epoch = a
    return start, epoch


def failure_reason(run_directory: Path, exc: BaseException | None = None) -> str:
    """One line: the record's reason, else the job's own account, else the exception."""
    try:
        rec = RunDir(run_directory).record()
    except UserError as exc:
        return str(exc)
    if rec and rec.status == store.STATUS_FAILED and rec.reason:
        return str(rec.reason)
    for a in reversed(read_attempts(run_directory)):
        if a.get("event") == "end" and a.get("error"):
            return str(a["error"])
    if exc is not None:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        return lines[-1].strip() if lines else type(exc).__name__
    return ""


def _log_tail(log: str | None) -> list[str]:
    """The last 64 KiB of a job's text log as lines ([] if there is none).

    Only a regular file is read (a FIFO or device named as the log is a one-line
    UserError); callers pass only logs inside the suite's own folders
    (harness.schedule.status)."""
    if not log:
        return []
    try:
        return files.read_tail(log, "job log").decode("utf-8", "replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    except UserError:
        raise
    except OSError:
        return []


def _log_error(log: str | None) -> str:
    """The exception line of the last traceback in a job's text log ('' if none)."""
    lines = _log_tail(log)
    starts = [i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent call last):")]
    if not starts:
        return ""
    for line in lines[starts[-1] + 1:]:
        if line.strip() and not line[0].isspace():
            return line.strip()[:300]
    return ""
