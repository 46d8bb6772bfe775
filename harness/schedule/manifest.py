"""Where a sweep keeps its books: the suite directory, the manifest and the job folder.

    <results>/_suites/<suite>-<budget>/
        manifest.json        one entry per submission: time, command, working directory,
                             executor and its parameters, array ids, code version (git SHA,
                             dirty flag; `submissions/NNNN.diff` holds the diff), and for
                             each task job id <-> run id, run directory and log; `runs`
                             maps each run id to its latest job
        logs/<job id>/       submitit's pickles, sbatch script and the task's log (0700)

The manifest is rewritten under the suite directory's lock (`harness.store.locked`,
waiting), so two sweeps of one suite at once keep it whole.

Job files: submitit's pickles are code (unpickling one runs what it names), so they live
in a folder only the submitting user can change: `logs/` in the suite directory, mode
0700, or `$SPECTRAL_BENCH_JOBS/<suite>-<hash>/`. `job_folder` refuses a folder that
anyone else could replace (a directory on its path, from /, that another user owns, or
that is group/world-writable without the sticky bit).
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness import files
from harness.env import REPO, git_diff, git_state
from harness.errors import UserError
from harness.store import locked, slug

SUITES_DIR = "_suites"
MANIFEST = "manifest.json"
JOBS_ENV = "SPECTRAL_BENCH_JOBS"   # a private folder for job files instead of <suite dir>/logs
TASK_TEXT = ("job_id", "executor", "log", "folder", "reason", "outcome", "run_dir")   # text in a task


def suite_dir(root: Path, suite) -> Path:
    return Path(root) / SUITES_DIR / f"{slug(suite.name)}-{slug(suite.budget or 'default')}"


def read_manifest(directory: Path) -> dict:
    """The suite's manifest ({"submissions": [], "runs": {}} when none); one line if unreadable."""
    path = Path(directory) / MANIFEST
    fix = "move it aside (run records are not affected; the next sweep starts a new manifest)"
    try:
        manifest = files.read_json(path, "suite manifest", fix)
    except (FileNotFoundError, NotADirectoryError):
        return {"submissions": [], "runs": {}}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("submissions"), list) \
            or not isinstance(manifest.get("runs"), dict) \
            or not all(isinstance(t, dict) for t in manifest["runs"].values()):
        raise UserError(f"suite manifest {path} is not a manifest (needs 'submissions' and 'runs'); {fix}")
    for run_id, task in manifest["runs"].items():    # what status and sweep read as text
        bad = [k for k in TASK_TEXT if task.get(k) is not None and not isinstance(task[k], str)]
        if bad:
            raise UserError(f"suite manifest {path} is not a manifest: the {bad[0]} of run "
                            f"{run_id[:40]!r} is a {type(task[bad[0]]).__name__}, not text; {fix}")
    return manifest


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


def job_folder_path(sdir: Path) -> Path:
    """Where `job_folder` keeps this suite's job files (nothing is created)."""
    base = os.environ.get(JOBS_ENV)
    if base:
        key = hashlib.sha256(str(Path(sdir).resolve()).encode()).hexdigest()[:8]
        return Path(base).expanduser() / f"{Path(sdir).name}-{key}"
    return Path(sdir) / "logs"


def job_folder(sdir: Path) -> Path:
    """A folder for submitit's files (pickles, sbatch scripts, job logs) that only you can change.

    `<suite dir>/logs` (0700), or with $SPECTRAL_BENCH_JOBS set, a folder for this suite
    below it. A folder on a path someone else can change is refused with the fix.
    """
    folder = job_folder_path(sdir)
    files.make_dirs(folder.parent)
    if folder.is_symlink():
        raise UserError(f"job folder {folder} is a symbolic link; remove it (rm {folder}) and run again")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise (files.disk_error(folder, exc) or exc) from None
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


def code_version() -> tuple[dict, str]:
    """({sha, dirty}, diff text: `git diff HEAD` plus the untracked files' names)."""
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
    with locked(sdir, wait=True):
        manifest = read_manifest(sdir)
        number = len(manifest["submissions"]) + 1
        diff_file = None
        if diff:
            diff_file = f"submissions/{number:04d}.diff"
            files.atomic_write(sdir / diff_file, lambda f: f.write(diff.encode()))
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
        files.write_json(sdir / MANIFEST, manifest)
    return entry


def update_task(sdir: Path, run_id: str, **changes) -> None:
    with locked(sdir, wait=True):
        manifest = read_manifest(sdir)
        if run_id in manifest["runs"]:
            manifest["runs"][run_id].update(changes)
            files.write_json(sdir / MANIFEST, manifest)
