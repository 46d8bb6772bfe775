"""Suite scheduling: SLURM job arrays through submitit, a local pool, manifest and status.

A sweep turns a suite into RunSpecs (harness.spec.load_suite), leaves out the runs that
are finished or already queued, and hands the rest to an executor. Every task runs the
single-run path `harness.runner.execute` through `RunJob`, a small picklable callable
(paths and a spec dict, never tensors or models).

SLURM (`sweep --executor slurm`): one array per suite (`executor.map_array`), split into
chunks when the suite has more runs than the cluster's MaxArraySize (read from
`scontrol show config`; chunks restart at index 0). The command submits, writes the
manifest and exits. Parameters come from the suite's `[slurm]` table, overridden by
the command line (see SLURM_KEYS).

Preemption: `RunJob` is a submitit Checkpointable. Training runs in a worker thread, so
that when SLURM sends USR2 (preemption, or `signal_delay_s` before the time limit),
submitit's signal handler (which runs in the main thread) can call `checkpoint()`,
which asks the training loop to stop at the next epoch boundary (`should_stop`), waits
for it to write its checkpoint (at most `grace_s`), and returns a fresh RunJob for the
same spec. submitit then requeues the task; the restarted task resumes from the
checkpoint with its accumulated time. A finished run is a no-op.

Local (`sweep --executor local`): submitit's LocalExecutor starts every job at once,
so this module submits one job per free slot and waits: never more than
`max_parallel` runs at once (default: one per device). A failed run is recorded and
the suite goes on.

Manifest: `<results>/_suites/<suite>-<budget>/manifest.json` maps job ids to run ids
per submission, with the submission time, command, SLURM parameters and the code
version (git SHA, dirty flag; the dirty diff next to it).

Job files: submitit's pickles are code (unpickling one runs what it names), so they
live in a folder only the submitting user can change: `logs/` in the suite directory,
mode 0700, or `$SPECTRAL_BENCH_JOBS/<suite>-<hash>/`. `job_folder` refuses a folder
that anyone else could replace (a directory on its path, from /, that another user
owns, or that is group/world-writable without the sticky bit). The task logs are there
too; `status` reads them as text and never unpickles anything.

Status: manifest + SLURM job states + run records. Job states come from `sacct`; when
sacct is absent, fails (no accounting) or times out, from `squeue --states=all`; when
that fails too, from the result files and the job logs. Every SLURM command has a timeout.

Concurrent sweeps of one suite: a run that another process trains (its run lock is
held) is reported as "running elsewhere" and skipped; it is not a failure.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import submitit

from harness import store
from harness.contention import available_cores, default_threads
from harness.device import resolve_device
from harness.errors import UserError

REPO = Path(__file__).resolve().parent.parent
SUITES_DIR = "_suites"
MANIFEST = "manifest.json"
ATTEMPTS = "attempts.jsonl"     # per run directory: one line per job start and end
JOBS_ENV = "SPECTRAL_BENCH_JOBS"   # a private folder for job files instead of <suite dir>/logs
RUNNING_ELSEWHERE = "running elsewhere"   # a job's status when another process trains its run
CMD_TIMEOUT_S = 15.0            # every sacct/squeue/scontrol call
DEFAULT_MAX_ARRAY_SIZE = 1001   # SLURM's default, used when scontrol cannot tell

# ----------------------------------------------------------------------------- options

# [slurm] table key -> (type, description); the CLI flag is --key-with-dashes unless noted
SLURM_KEYS: dict[str, tuple[type | tuple, str]] = {
    "partition": (str, "partition (sbatch --partition)"),
    "account": (str, "account to charge (--account)"),
    "qos": (str, "quality of service (--qos)"),
    "constraint": (str, "node features (--constraint)"),
    "gpus_per_node": (int, "GPUs per node (--gpus-per-node)"),
    "gres": (str, "generic resources instead of gpus_per_node, e.g. gpu:1 (--gres)"),
    "cpus_per_task": (int, "CPUs per task (--cpus-per-task)"),
    "mem": (str, "memory per node in sbatch syntax, e.g. 16G or 4000M (--mem)"),
    "time": ((int, str), "time limit: minutes, or [D-]HH:MM[:SS] (--time)"),
    "array_parallelism": (int, "at most this many tasks of an array run at once (%N)"),
    "max_array_size": (int, "split arrays larger than this (default: MaxArraySize from scontrol)"),
    "max_num_timeout": (int, "requeues after a time-out (preemptions are not counted)"),
    "signal_delay_s": (int, "USR2 this many seconds before the time limit (--signal)"),
    "job_name": (str, "job name (--job-name)"),
    "setup": (list, "shell lines run before the task starts"),
    "sbatch": (dict, "further sbatch options, e.g. {exclude = \"node1\", mail-type = \"END\"}"),
}


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int | None = None
    gres: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: int = 240                 # minutes
    array_parallelism: int = 256    # submitit's default
    max_array_size: int | None = None
    max_num_timeout: int = 3
    signal_delay_s: int = 120
    job_name: str | None = None
    setup: tuple[str, ...] = ()
    sbatch: tuple[tuple[str, str], ...] = ()

    @property
    def grace_s(self) -> float:
        """How long checkpoint() waits for an epoch boundary after USR2."""
        return float(max(10, self.signal_delay_s - 30))


def parse_time(value, where: str) -> int:
    """Minutes from an int or an sbatch time string (M, H:MM:SS, D-HH[:MM[:SS]])."""
    if isinstance(value, bool):
        raise UserError(f"{where}: expected minutes or [D-]HH:MM:SS, got {value!r}")
    if isinstance(value, int):
        minutes = value
    else:
        text = str(value).strip()
        m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if not m:
            raise UserError(f"{where}: expected minutes or [D-]HH:MM:SS, got {value!r}")
        days, a, b, c = m.groups()
        if days is not None:          # D-HH[:MM[:SS]]
            minutes = int(days) * 1440 + int(a) * 60 + int(b or 0) + (1 if c and int(c) else 0)
        elif b is None:               # M
            minutes = int(a)
        elif c is None:               # MM:SS
            minutes = int(a) + (1 if int(b) else 0)
        else:                         # HH:MM:SS
            minutes = int(a) * 60 + int(b) + (1 if int(c) else 0)
    if minutes < 1:
        raise UserError(f"{where}: the time limit must be at least 1 minute, got {value!r}")
    return minutes


def _check_mem(value, where: str) -> str:
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", text, re.IGNORECASE):
        raise UserError(f"{where}: expected memory like 16G or 4000M, got {value!r}")
    return text.upper()


def slurm_options(table: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                  where: str = "slurm") -> SlurmOptions:
    """Validate a `[slurm]` table, apply command-line overrides (None = not given)."""
    merged: dict[str, Any] = {}
    for source, prefix in ((table or {}, where), (overrides or {}, "command line")):
        for key, value in source.items():
            if value is None or (key in ("setup", "sbatch") and not value and prefix != where):
                continue
            if key not in SLURM_KEYS:
                raise UserError(f"{prefix}: unknown SLURM option {key!r}; valid: {', '.join(SLURM_KEYS)}")
            loc = f"{prefix}.{key}" if prefix == where else f"--{key.replace('_', '-')}"
            kind = SLURM_KEYS[key][0]
            if key == "time":
                value = parse_time(value, loc)
            elif key == "mem":
                value = _check_mem(value, loc)
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise UserError(f"{loc}: expected an integer, got {value!r}")
                low = 1 if key in ("cpus_per_task", "array_parallelism", "max_array_size") else 0
                if key == "signal_delay_s":
                    low = 10
                if value < low:
                    raise UserError(f"{loc}: must be >= {low}, got {value}")
            elif kind is str:
                if not isinstance(value, str) or not value.strip():
                    raise UserError(f"{loc}: expected a non-empty string, got {value!r}")
            elif key == "setup":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                    raise UserError(f"{loc}: expected a list of shell lines, got {value!r}")
                value = tuple(merged.get("setup", ())) + tuple(value)
            elif key == "sbatch":
                if not isinstance(value, dict):
                    raise UserError(f"{loc}: expected a table of sbatch options, got {value!r}")
                extra = dict(merged.get("sbatch", ()))
                for k, v in value.items():
                    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", str(k)) or isinstance(v, (dict, list)):
                        raise UserError(f"{loc}: bad sbatch option {k!r} = {v!r}; use name = value")
                    extra[str(k).replace("_", "-")] = v
                value = tuple(sorted(extra.items()))
            merged[key] = value
    return SlurmOptions(**merged)


def read_suite_tables(path: str) -> dict[str, Any]:
    """The raw `[slurm]` table of a suite file ({} when absent); load_suite checked the rest."""
    import tomllib

    with open(path, "rb") as f:
        doc = tomllib.load(f)
    table = doc.get("slurm", {})
    if not isinstance(table, dict):
        raise UserError(f"{path}: slurm must be a table ([slurm]), got {type(table).__name__}")
    return table


def parse_assignments(items: Iterable[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise UserError(f"{flag} expects NAME=VALUE, got {item!r}; e.g. {flag} exclude=node1")
        out[key] = value.strip()
    return out


# ----------------------------------------------------------------------------- the job

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
    store.make_dirs(run_directory)
    path = run_directory / ATTEMPTS
    try:   # never through a planted link: that would append to someone else's file
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link; remove it (rm {path}) and run again") from None
        raise (store.disk_error(path, exc) or exc) from None
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(store.strict(entry), sort_keys=True, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_attempts(run_directory: Path) -> list[dict]:
    path = Path(run_directory) / ATTEMPTS
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                out.append(entry)
    return out


class RunJob(submitit.helpers.Checkpointable):
    """The task of every executor: run one spec through `harness.runner.execute`.

    Picklable and small: it holds paths and options; the spec is passed as a plain
    dict, so a queued task does not depend on the pickled form of RunSpec.
    """

    def __init__(self, results_dir: str, data_dir: str | None = None, device: str = "auto",
                 grace_s: float = 90.0, threads: int | None = None):
        self.results_dir = str(results_dir)
        self.data_dir = None if data_dir is None else str(data_dir)
        self.device = device
        self.grace_s = float(grace_s)
        self.threads = threads      # for specs with threads auto; None: the task's own cores

    # runtime state (thread, stop flag) never goes into a pickle
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_rt")}

    def __call__(self, spec: dict) -> dict:
        from harness.spec import RunSpec

        s = RunSpec.from_dict(spec)
        directory = store.run_dir(Path(self.results_dir), s)
        ids = _job_ids()
        stop = threading.Event()
        box: dict[str, Any] = {}

        def on_start():   # the run is locked and will train: this is an attempt
            n = sum(a.get("event") == "start" for a in read_attempts(directory)) + 1
            print(f"harness: run {s.run_id} ({s.method}/{s.arch} on {s.dataset}, seed {s.seed}, "
                  f"{s.epochs} epochs), attempt {n}, results in {directory}", file=sys.stderr, flush=True)
            append_attempt(directory, {"event": "start", "t": time.time(), "host": socket.gethostname(),
                                       "pid": os.getpid(), **ids})
            box["started"] = True

        def work():
            from harness.runner import execute
            try:
                box["record"] = execute(s, data_dir=self.data_dir, results_dir=self.results_dir,
                                        device=self.device, progress=True, should_stop=stop.is_set,
                                        on_start=on_start, threads=getattr(self, "threads", None))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                box["error"], box["traceback"] = exc, traceback.format_exc()

        worker = threading.Thread(target=work, name=f"run-{s.run_id}", daemon=True)
        self._rt_stop, self._rt_worker = stop, worker
        self._rt_requeued = False
        outcome, error = "interrupted", None
        try:
            worker.start()
            while worker.is_alive():
                worker.join(0.25)   # the main thread stays free to run signal handlers
            if "error" in box:
                exc = box["error"]
                from harness.runner import RunLocked
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
                    "test_acc": record.get("metrics", {}).get("test_acc")}
        finally:
            if self._rt_requeued:   # submitit's handler exits right after checkpoint() returns
                outcome = "requeued"
            if box.get("started") or error:
                append_attempt(directory, {"event": "end", "t": time.time(), "outcome": outcome,
                                           "error": error, **ids})

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
                       getattr(self, "threads", None))
        return submitit.helpers.DelayedSubmission(fresh, spec)


# ----------------------------------------------------------------------------- manifest

def suite_dir(root: Path, suite) -> Path:
    return Path(root) / SUITES_DIR / f"{store.slug(suite.name)}-{store.slug(suite.budget or 'default')}"


def read_manifest(directory: Path) -> dict:
    """The suite's manifest ({"submissions": [], "runs": {}} when none); one line if unreadable."""
    path = Path(directory) / MANIFEST
    fix = "move it aside (run records are not affected; the next sweep starts a new manifest)"
    try:
        manifest = store.read_json(path, "suite manifest", fix)
    except (FileNotFoundError, NotADirectoryError):
        return {"submissions": [], "runs": {}}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("submissions"), list) \
            or not isinstance(manifest.get("runs"), dict) \
            or not all(isinstance(t, dict) for t in manifest["runs"].values()):
        raise UserError(f"suite manifest {path} is not a manifest (needs 'submissions' and 'runs'); {fix}")
    return manifest


@contextlib.contextmanager
def _locked(directory: Path):
    """An advisory lock on the suite directory (two sweeps of one suite at once).

    Also removes the temporary files of a manifest write that was killed (no writer is
    alive while we hold the lock).
    """
    import fcntl

    store.make_dirs(directory)
    fd = store.open_lock(directory / ".lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass    # some network filesystems refuse locks; go on without
        store.remove_orphans(directory)
        yield
    finally:
        os.close(fd)


def unsafe_directory(path: Path, _depth: int = 0) -> Path | None:
    """The first directory on `path` (from /) that a user other than you (or root) can change.

    Such a directory lets that user rename the folder below it away and put their own
    in its place. Safe: owned by you or root, and not group/world-writable unless sticky
    (like /tmp). The folder itself must be yours and private (0700). Links are followed,
    and the directories holding them are checked too. POSIX ACLs are not considered.
    """
    uid = os.getuid()
    p = Path(os.path.abspath(path))
    cur = Path(p.anchor)
    parts = p.parts[1:]
    for i, part in enumerate(parts):
        st = os.stat(cur)
        if st.st_uid not in (uid, 0) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            return cur
        nxt = cur / part
        if nxt.is_symlink():
            if _depth > 20:
                return nxt
            return unsafe_directory(Path(os.path.realpath(nxt)).joinpath(*parts[i + 1:]), _depth + 1)
        cur = nxt
    st = os.lstat(cur)
    if st.st_uid != uid or st.st_mode & 0o077 or not stat.S_ISDIR(st.st_mode):
        return cur
    return None


def job_folder(sdir: Path) -> Path:
    """A folder for submitit's files (pickles, sbatch scripts, job logs) that only you can change.

    `<suite dir>/logs` (0700), or with $SPECTRAL_BENCH_JOBS set, a folder for this suite
    below it. A folder on a path someone else can change is refused with the fix.
    """
    base = os.environ.get(JOBS_ENV)
    if base:
        key = hashlib.sha256(str(Path(sdir).resolve()).encode()).hexdigest()[:8]
        folder = Path(base).expanduser() / f"{Path(sdir).name}-{key}"
    else:
        folder = Path(sdir) / "logs"
    store.make_dirs(folder.parent)
    if folder.is_symlink():
        raise UserError(f"job folder {folder} is a symbolic link; remove it (rm {folder}) and run again")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise (store.disk_error(folder, exc) or exc) from None
    st = os.lstat(folder)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(folder, 0o700)     # made by an earlier version with the umask's mode
    bad = unsafe_directory(folder)
    if bad is not None:
        who = "belongs to another user or is not a private directory" if bad == folder else \
            "can be changed by other users"
        raise UserError(f"job folder {folder} is not private: {bad} {who}, so submitit's pickles "
                        f"(which run code when loaded) could be replaced; set {JOBS_ENV} to a "
                        f"directory only you can write (on a file system the nodes see)")
    return folder


def _log_tail(log: str | None) -> list[str]:
    """The last 64 KiB of a job's text log as lines ([] if unreadable)."""
    if not log:
        return []
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            return f.read().decode("utf-8", "replace").splitlines()
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


def code_version() -> tuple[dict, str]:
    """({sha, dirty}, diff text: `git diff HEAD` plus the untracked files' names)."""
    from harness.env import git_diff, git_state

    state = git_state()
    diff = git_diff() if state.get("dirty") else ""
    try:
        untracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "--others", "--exclude-standard"],
                                   capture_output=True, text=True, timeout=10, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        untracked = []
    if untracked:
        state = dict(state, dirty=True)
        diff += "".join(f"# untracked: {name}\n" for name in untracked)
    return state, diff


def record_submission(sdir: Path, suite, executor: str, tasks: list[dict], parameters: dict,
                      arrays: list[str], folder: Path) -> dict:
    """Append a submission to the manifest (under the suite lock) and return it."""
    state, diff = code_version()
    now = datetime.now(timezone.utc)
    with _locked(sdir):
        manifest = read_manifest(sdir)
        number = len(manifest["submissions"]) + 1
        diff_file = None
        if diff:
            diff_file = f"submissions/{number:04d}.diff"
            store.atomic_write(sdir / diff_file, lambda f: f.write(diff.encode()))
        entry = {"number": number, "time": now.isoformat(timespec="seconds"), "unix_time": now.timestamp(),
                 "executor": executor, "arrays": arrays, "folder": str(folder),
                 "command": sys.argv, "cwd": os.getcwd(), "host": socket.gethostname(),
                 "git": {**state, "diff_file": diff_file}, "parameters": parameters, "tasks": tasks}
        manifest.update(suite={"name": suite.name, "path": str(Path(suite.path).resolve()),
                               "budget": suite.budget})
        manifest["submissions"].append(entry)
        for t in tasks:
            manifest["runs"][t["run_id"]] = {**t, "submission": number, "executor": executor,
                                             "folder": str(folder)}
        store.write_json(sdir / MANIFEST, manifest)
    return entry


def update_task(sdir: Path, run_id: str, **changes) -> None:
    with _locked(sdir):
        manifest = read_manifest(sdir)
        if run_id in manifest["runs"]:
            manifest["runs"][run_id].update(changes)
            store.write_json(sdir / MANIFEST, manifest)


# ----------------------------------------------------------------------------- SLURM queries

def _run(cmd: list[str], timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a SLURM client command; on timeout kill its whole process group, then raise."""
    import signal

    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def read_max_array_size(timeout: float = CMD_TIMEOUT_S) -> tuple[int, str]:
    """(MaxArraySize, where it came from) from `scontrol show config`."""
    try:
        out = _run(["scontrol", "show", "config"], timeout)
    except FileNotFoundError:
        raise UserError("scontrol not found: this machine is not a SLURM client; "
                        "use --executor local") from None
    except subprocess.TimeoutExpired:
        return DEFAULT_MAX_ARRAY_SIZE, f"scontrol timed out after {timeout:.0f} s; assumed"
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not m:
        msg = (out.stderr.strip().splitlines() or ["no MaxArraySize in its output"])[-1]
        return DEFAULT_MAX_ARRAY_SIZE, f"scontrol show config failed ({msg}); assumed"
    return int(m.group(1)), "scontrol show config"


def chunked(items: list, size: int) -> list[list]:
    """Split for MaxArraySize: the limit is on the array *index*, so each chunk restarts at 0."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [items[i:i + size] for i in range(0, len(items), size)]


def _expand_ids(job_id: str) -> list[str]:
    """'12_[1-3,5%2]' -> ['12_1', '12_2', '12_3', '12_5']; '12_4' -> ['12_4']; '12' -> ['12']."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    base, spec = m.group(1), m.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += [f"{base}_{i}" for i in range(int(a), int(b) + 1)]
        elif part:
            out.append(f"{base}_{part}")
    return out


def parse_sacct(text: str) -> dict[str, dict]:
    """`sacct -X -P -n -o JobID,State,ExitCode,Reason` lines -> {job id: {state, exit_code, reason}}."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        jid, state = parts[0], parts[1].split()[0] if parts[1].split() else ""
        info = {"state": state, "exit_code": parts[2] if len(parts) > 2 else "",
                "reason": parts[3] if len(parts) > 3 and parts[3] not in ("None", "") else ""}
        for j in _expand_ids(jid):
            out[j] = info     # later lines (the most recent attempt) win
    return out


def parse_squeue(text: str) -> dict[str, dict]:
    """`squeue -h -r -o %i|%T|%r` lines -> {job id: {state, reason}}."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        reason = parts[2] if len(parts) > 2 and parts[2] not in ("None", "") else ""
        for j in _expand_ids(parts[0]):
            out[j] = {"state": parts[1].split()[0] if parts[1].split() else "", "exit_code": "",
                      "reason": reason}
    return out


def job_states(job_ids: list[str], timeout: float = CMD_TIMEOUT_S) -> tuple[dict[str, dict], str, list[str]]:
    """States of SLURM job ids: (states, source, notes). Never raises, never hangs."""
    notes: list[str] = []
    if not job_ids:
        return {}, "none", notes
    bases = sorted({j.split("_")[0] for j in job_ids}, key=lambda b: (len(b), b))
    states: dict[str, dict] = {}
    try:
        for i in range(0, len(bases), 200):
            res = _run(["sacct", "-X", "--parsable2", "--noheader", "-o", "JobID,State,ExitCode,Reason",
                        "-j", ",".join(bases[i:i + 200])], timeout)
            if res.returncode != 0:
                raise RuntimeError((res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1])
            states.update(parse_sacct(res.stdout))
    except FileNotFoundError:
        notes.append("sacct not found")
    except subprocess.TimeoutExpired:
        notes.append(f"sacct timed out after {timeout:.0f} s")
    except RuntimeError as exc:
        notes.append(f"sacct failed: {exc}")
    else:
        missing = [j for j in job_ids if j not in states]
        if not missing:
            return states, "sacct", notes
        # e.g. a database lagging behind the controller: ask squeue about the rest
        sq, _, sq_notes = _squeue_states(bases, timeout)
        for j in missing:
            if j in sq:
                states[j] = sq[j]
        return states, "sacct+squeue", notes + sq_notes
    states, source, sq_notes = _squeue_states(bases, timeout)
    return states, source, notes + sq_notes


def _squeue_states(bases: list[str], timeout: float) -> tuple[dict[str, dict], str, list[str]]:
    fmt = "%i|%T|%r"
    try:
        user = getpass.getuser()
        res = _run(["squeue", "--states=all", "-h", "-r", "-u", user, "-o", fmt], timeout)
        if res.returncode != 0:
            msg = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
            return {}, "result files", [f"squeue failed: {msg}"]
    except FileNotFoundError:
        return {}, "result files", ["squeue not found"]
    except subprocess.TimeoutExpired:
        return {}, "result files", [f"squeue timed out after {timeout:.0f} s"]
    wanted = set(bases)
    states = {j: v for j, v in parse_squeue(res.stdout).items() if j.split("_")[0] in wanted}
    return states, "squeue", []


ACTIVE_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING",
                  "SUSPENDED", "STOPPED"}
ACTIVE_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
FAILED_STATES = {"FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "PREEMPTED"}


# ----------------------------------------------------------------------------- planning

@dataclass
class PlanRow:
    spec: Any
    run_dir: Path
    state: str              # done | diverged | queued | todo
    job_id: str | None = None
    detail: str = ""


def _unique(specs) -> list:
    seen, out = set(), []
    for s in specs:
        if s.run_id not in seen:
            seen.add(s.run_id)
            out.append(s)
    return out


def make_plan(suite, root: Path, executor: str, timeout: float = CMD_TIMEOUT_S) -> tuple[list[PlanRow], str]:
    """Which runs are finished, queued or running (per the manifest and SLURM), or to do."""
    sdir = suite_dir(root, suite)
    manifest = read_manifest(sdir)
    rows = []
    for spec in _unique(suite.specs):
        d = store.run_dir(root, spec)
        rec = store.read_record(d)
        if rec is not None and rec.get("status") in store.FINISHED:
            rows.append(PlanRow(spec, d, "done" if rec["status"] == store.STATUS_COMPLETE else "diverged"))
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


# ----------------------------------------------------------------------------- SLURM sweep

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
             "export PYTHONUNBUFFERED=1", *opts.setup]
    params: dict[str, Any] = dict(timeout_min=opts.time, name=opts.job_name or name,
                                  stderr_to_stdout=True, slurm_array_parallelism=opts.array_parallelism,
                                  slurm_signal_delay_s=opts.signal_delay_s, slurm_setup=setup)
    for key in ("partition", "account", "qos", "constraint", "gres", "mem"):
        if getattr(opts, key) is not None:
            params[f"slurm_{key}"] = getattr(opts, key)
    if opts.gpus_per_node is not None:
        params["gpus_per_node"] = opts.gpus_per_node
    if opts.cpus_per_task is not None:
        params["cpus_per_task"] = opts.cpus_per_task
    if opts.sbatch:
        params["slurm_additional_parameters"] = dict(opts.sbatch)
    ex.update_parameters(**params)
    return ex


def sbatch_summary(opts: SlurmOptions) -> str:
    parts = [f"--time={opts.time}"]
    for key in ("partition", "account", "qos", "constraint", "gpus_per_node", "gres", "cpus_per_task", "mem"):
        v = getattr(opts, key)
        if v is not None:
            parts.append(f"--{key.replace('_', '-')}={v}")
    parts += [f"--{k}={v}" for k, v in opts.sbatch]
    parts.append(f"--signal=USR2@{opts.signal_delay_s}")
    return " ".join(parts)


def submit_slurm(suite, rows: list[PlanRow], root: Path, opts: SlurmOptions, data_dir=None,
                 device: str = "auto", out=print) -> dict:
    """Submit `rows` as one array (chunked over MaxArraySize); write the manifest."""
    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: this machine is not a SLURM client; use --executor local")
    if opts.max_array_size:
        max_size, size_source = opts.max_array_size, "max_array_size option"
    else:
        max_size, size_source = read_max_array_size()
    sdir = suite_dir(root, suite)
    folder = job_folder(sdir) / "%j"
    job = RunJob(str(Path(root).resolve()), None if data_dir is None else str(Path(data_dir).resolve()),
                 device, opts.grace_s)
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
                record_submission(sdir, suite, "slurm", tasks, _params_record(opts, max_size), arrays,
                                  folder)
            raise UserError(f"sbatch refused the array: {msg}{done}") from None
        arrays.append(jobs[0].job_id.split("_")[0])
        for r, j in zip(chunk, jobs):
            tasks.append({"job_id": j.job_id, "run_id": r.spec.run_id, "run_dir": str(r.run_dir.resolve()),
                          "log": str(j.paths.stdout), "spec": describe_spec(r.spec, keys), "seed": r.spec.seed})
    entry = record_submission(sdir, suite, "slurm", tasks, _params_record(opts, max_size), arrays, folder)
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


def _params_record(opts: SlurmOptions, max_size: int) -> dict:
    d = {f.name: getattr(opts, f.name) for f in fields(opts)}
    d["sbatch"] = dict(opts.sbatch)
    d["setup"] = list(opts.setup)
    d["max_array_size_used"] = max_size
    return d


# ----------------------------------------------------------------------------- local executor

def default_devices() -> list[str]:
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def slot_device(dev: str) -> tuple[tuple[int, ...], str]:
    """(GPUs the job may see, device name the job trains on) for a local slot's device.

    A job bound to `cuda:N` sees only GPU N (CUDA_VISIBLE_DEVICES), where it is `cuda:0`.
    """
    if dev.startswith("cuda:"):
        return (int(dev.split(":")[1]),), "cuda:0"
    return (), dev


def run_local(suite, specs: list, root: Path, *, max_parallel: int | None = None,
              devices: list[str] | None = None, data_dir=None, poll_s: float = 0.2,
              timeout_min: int = 7 * 24 * 60, out=print) -> dict:
    """Run `specs` in subprocesses, never more than `max_parallel` at once.

    Each slot is bound to one device (`devices[slot % len(devices)]`, CUDA_VISIBLE_DEVICES
    set to it). A failed run is recorded (manifest, attempts, its log) and the suite goes
    on. Returns {"done": [...], "failed": [(run_id, reason, log)], ...}.
    """
    devices, max_parallel = local_slots(devices, max_parallel)
    # the runs share this machine's cores: each gets its part (specs with threads auto)
    threads = default_threads(max_parallel)
    gpus = [d for d in devices if d.startswith("cuda")]
    if gpus and max_parallel > len(devices):
        out(f"warning: {max_parallel} runs at once on {len(devices)} device(s): runs overlap on a "
            f"GPU, so their timings are not comparable")
    elif max_parallel > available_cores():
        out(f"warning: {max_parallel} runs at once on {available_cores()} cores: runs compete for "
            f"cores, so their timings are not comparable (each record says so)")
    else:
        out(f"{max_parallel} run(s) at once, {threads} CPU thread(s) each (threads auto)")
    sdir = suite_dir(root, suite)
    folder = job_folder(sdir) / "%j"
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=timeout_min, stderr_to_stdout=True,
                               setup=[f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}"])
    pending = list(_unique(specs))
    keys = varying_keys(suite.specs)
    total = len(pending)
    free_slots = list(range(max_parallel))
    running: dict[int, tuple[Any, Any]] = {}   # slot -> (job, spec)
    result: dict[str, list] = {"done": [], "diverged": [], "failed": [], "elsewhere": []}
    started = 0
    record_submission(sdir, suite, "local", [], {"max_parallel": max_parallel, "devices": devices,
                                               "threads_per_run": threads}, [],
                      folder)
    try:
        while pending or running:
            while pending and free_slots:
                slot = free_slots.pop(0)
                spec = pending.pop(0)
                dev = devices[slot % len(devices)]
                visible, job_device = slot_device(dev)
                executor.update_parameters(gpus_per_node=len(visible), visible_gpus=visible)
                job = executor.submit(RunJob(str(Path(root).resolve()),
                                             None if data_dir is None else str(Path(data_dir).resolve()),
                                             job_device, threads=threads), spec.to_dict())
                running[slot] = (job, spec)
                started += 1
                d = store.run_dir(root, spec)
                with _locked(sdir):
                    manifest = read_manifest(sdir)
                    task = {"job_id": job.job_id, "run_id": spec.run_id, "run_dir": str(d.resolve()),
                            "log": str(job.paths.stdout), "spec": describe_spec(spec, keys), "seed": spec.seed,
                            "device": dev}
                    manifest["submissions"][-1]["tasks"].append(task)
                    manifest["runs"][spec.run_id] = {**task, "executor": "local", "folder": str(folder),
                                                     "submission": manifest["submissions"][-1]["number"]}
                    store.write_json(sdir / MANIFEST, manifest)
                out(f"[{started}/{total}] start {spec.run_id} {describe_spec(spec, keys)} seed {spec.seed} "
                    f"on {dev} (job {job.job_id})")
            time.sleep(poll_s)
            for slot, (job, spec) in list(running.items()):
                if not job.done():
                    continue
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
    except KeyboardInterrupt:
        for job, _ in running.values():
            with contextlib.suppress(Exception):
                job.cancel()
        raise
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(folder)    # submitit's local controller creates the literal '%j' folder
    return result


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


def failure_reason(run_directory: Path, exc: BaseException | None = None) -> str:
    """One line: the record's reason, else the job's own account, else the exception."""
    try:
        rec = store.read_record(run_directory)
    except UserError as exc:
        return str(exc)
    if rec and rec.get("status") == store.STATUS_FAILED and rec.get("reason"):
        return str(rec["reason"])
    for a in reversed(read_attempts(run_directory)):
        if a.get("event") == "end" and a.get("error"):
            return str(a["error"])
    if exc is not None:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        return lines[-1].strip() if lines else type(exc).__name__
    return ""


# ----------------------------------------------------------------------------- sweep

def sweep(suite_path: str, *, budget: str | None = None, executor: str = "slurm", results_dir=None,
          data_dir=None, device: str = "auto", slurm: dict | None = None, max_parallel: int | None = None,
          devices: list[str] | None = None, dry_run: bool = False, out: Callable[[str], None] = print) -> dict:
    """Plan a suite and submit (slurm) or run (local) what is not finished or queued."""
    from harness.spec import load_suite

    if executor not in ("slurm", "local"):
        raise UserError(f"unknown executor {executor!r}; use slurm or local")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device or "auto"):
        # checked by name only: the submitting host (a login node) may have no GPU
        raise UserError(f"--device: unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if executor == "local":
        devices, max_parallel = local_slots(devices, max_parallel)
    suite = load_suite(suite_path, budget)
    opts = slurm_options(read_suite_tables(suite_path), slurm, where=f"{suite_path}: slurm")
    root = store.results_root(results_dir)
    rows, source = make_plan(suite, root, executor)
    counts = {k: sum(r.state == k for r in rows) for k in ("done", "diverged", "queued", "todo")}
    out(f"suite {suite.name} (budget {suite.budget or '-'}): {len(rows)} run{'s' if len(rows) != 1 else ''}; "
        f"{counts['done'] + counts['diverged']} already done"
        + (f" ({counts['diverged']} diverged)" if counts["diverged"] else "")
        + f", {counts['queued']} queued or running, {counts['todo']} to "
        + ("submit" if executor == "slurm" else "run"))
    todo = [r for r in rows if r.state == "todo"]
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
            state = r.state + (f" (job {r.job_id}, {r.detail})" if r.job_id else "")
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
        summary["submission"] = submit_slurm(suite, todo, root, opts, data_dir, device, out)
        out(f"follow with: python -m harness status {suite_path}"
            + (f" --budget {suite.budget}" if budget else "")
            + (f" --results-dir {results_dir}" if results_dir else ""))
    else:
        res = run_local(suite, [r.spec for r in todo], root, max_parallel=max_parallel, devices=devices,
                        data_dir=data_dir, out=out)
        summary["local"] = res
        out(f"local: {len(res['done'])} done, {len(res['diverged'])} diverged, {len(res['failed'])} failed"
            + (f", {len(res['elsewhere'])} {RUNNING_ELSEWHERE} (skipped)" if res["elsewhere"] else ""))
        for run_id, reason, log in res["failed"]:
            out(f"  failed {run_id}: {reason}  (log: {log})")
    return summary


# ----------------------------------------------------------------------------- status

@dataclass
class StatusRow:
    run_id: str
    spec: str
    seed: int
    state: str          # done | diverged | running | pending | failed | cancelled | not submitted | unknown
    job_id: str | None = None
    slurm_state: str | None = None
    detail: str = ""
    log: str | None = None
    run_dir: str = ""

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


STATE_ORDER = ("done", "diverged", "running", "pending", "failed", "cancelled", "unknown", "not submitted")


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pid_alive(pid: str | None) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def suite_status(suite_path: str, *, budget: str | None = None, results_dir=None,
                 timeout: float = CMD_TIMEOUT_S) -> dict:
    """Combine the manifest, SLURM's job states and the run records."""
    from harness.spec import load_suite

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
            rec = store.read_record(d)
        except UserError as exc:   # shown in its row; the other runs still get a status
            row.detail = str(exc)
            rows.append(row)
            continue
        if task:
            row.job_id, row.log = task.get("job_id"), task.get("log")
        info = states.get(row.job_id, {}) if task and task.get("executor") == "slurm" else {}
        row.slurm_state = info.get("state") or None
        attempts = read_attempts(d)
        if rec is not None and rec.get("status") in store.FINISHED:
            row.state = "done" if rec["status"] == store.STATUS_COMPLETE else "diverged"
            m, t = _dict(rec.get("metrics")), _dict(rec.get("timing"))
            if rec["status"] == store.STATUS_COMPLETE:
                acc, train_s, sessions = m.get("test_acc"), t.get("train_s"), t.get("sessions")
                parts = [f"test acc {100 * acc:.2f}%" if _number(acc) else "no test accuracy in the record",
                         f"{m.get('epochs_done')}/{_dict(rec.get('spec')).get('epochs')} epochs"]
                if _number(train_s):
                    parts.append(f"train {train_s:.1f}s")
                if _number(sessions) and sessions > 1:
                    parts.append(f"{sessions} sessions")
                row.detail = ", ".join(parts)
            else:
                row.detail = str(rec.get("reason", ""))
        elif task is None:
            row.state = "not submitted"
        elif task.get("executor") == "local":
            last = attempts[-1] if attempts else None
            here = last is not None and last.get("host") == socket.gethostname()
            if last and last.get("event") == "start" and (_pid_alive(task.get("job_id"))
                                                          or (here and _pid_alive(last.get("pid")))):
                row.state = "running"
            elif task.get("outcome") == "failed" or rec is not None:
                row.state, row.detail = "failed", task.get("reason") or failure_reason(d) \
                    or _log_error(row.log)
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
            elif st in ACTIVE_PENDING:
                row.state = "pending"
                row.detail = " ".join(x for x in (st.lower() if st != "PENDING" else "", info.get("reason", ""))
                                      if x)
            elif st == "CANCELLED":
                row.state, row.detail = "cancelled", "cancelled" + (
                    f" ({info['reason']})" if info.get("reason") else "")
            elif st == "COMPLETED" and rec is None and any(RUNNING_ELSEWHERE in ln for ln in _log_tail(row.log)):
                # a duplicate task (two sweeps submitted the run): another job trains it
                row.state, row.detail = "running", f"{RUNNING_ELSEWHERE}: job {row.job_id} found it locked"
            elif st in FAILED_STATES or st == "COMPLETED" or rec is not None:
                why = failure_reason(d) or _log_error(row.log)
                if not why:
                    why = (f"SLURM state {st}" + (f", exit code {info['exit_code']}" if info.get("exit_code")
                                                  else "")) if st else "no result"
                    if st == "COMPLETED":
                        why = "job completed without writing a result record"
                elif st and st != "COMPLETED":
                    why = f"{st}: {why}"
                row.state, row.detail = "failed", why
            else:
                why = failure_reason(d) or _log_error(row.log)
                if why:
                    row.state, row.detail = "failed", why
                else:
                    row.state = "unknown"
                    row.detail = (f"job {row.job_id} not known to SLURM ({source or 'no query'}); "
                                  "re-run sweep to resubmit")
        rows.append(row)
    counts = {k: sum(r.state == k for r in rows) for k in STATE_ORDER}
    return {"suite": suite.name, "budget": suite.budget, "suite_dir": str(sdir), "rows": rows,
            "counts": counts, "source": source, "notes": notes,
            "submissions": len(manifest["submissions"])}


def format_status(report: dict) -> str:
    rows = report["rows"]
    counts = report["counts"]
    lines = [f"suite {report['suite']} (budget {report['budget'] or '-'}): {len(rows)} "
             f"run{'s' if len(rows) != 1 else ''}: "
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
