"""The results tree: the run folder (`RunDir`); the record it holds is read by
`harness.record.RunRecord`.

This module owns the files of a run; their names are spelled here and nowhere else.
Layout (one directory per run, derived from the run id):

    <results>/<dataset>/<method>-<arch>/<config hash>-s<seed>/     RunDir
        result.json     the run record (schema SCHEMA_VERSION), written last
        history.csv     one row per epoch
        checkpoint.pt   model, optimizer, scheduler, RNG states, accumulated time
        attempts.jsonl  for runs started by `sweep`: one line per task start and end
        .lock           held while a process trains the run (`RunDir.lock`)
        .staging/       a --force run trains here until it replaces the old record
    <results>/_suites/<suite>-<budget>/    sweep manifests and job logs (harness.schedule)
    <results>/_measure/<name>.csv          standalone measurements (measure/), read by reports
    <results>/_analysis/<name>.csv         analyses of finished runs (reports.speedup)

Writing: every file is written atomically and records are strict JSON (harness.files);
a killed writer's temporary file is removed when the directory is locked again.

Reading: `RunDir.read()` gives the record as written (a dict, validated to have a
status; only a regular file, of bounded size and nesting: harness.files.read_json);
`RunRecord.from_json` reads it for the readers (reports, status, the summary line, the
self-check), every field but the status optional, so records of older versions stay
readable. A record that claims completion without the numbers the harness always writes
(`RunRecord.missing`) does not count as finished: `RunDir.is_finished` refuses it in one
line naming the file.

`--force` swap: the new run trains in `.staging/`; `RunDir.finish_swap` then moves
checkpoint, history and record into the run directory, the record last, following a
journal (`.staging/commit.json`) that names each staged file by size and SHA-256. A kill
in the middle leaves the old record beside the new history: `RunDir.read` (every reader
and writer of a run goes through it) first completes such a swap (`RunDir.heal`), so no
command shows or resumes a run that mixes two. A journal that does not match its files
(a stray one, or staged files changed since) is refused, never followed.

Locks: `locked(directory)` is the one lock helper: `.lock` opened without following a
link and without truncation, flock'ed, checked to be the file still in place. A run
(`RunDir.lock`) is never waited for: another holder means "running elsewhere"
(`RunLocked`). A suite directory's manifest lock waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
from pathlib import Path
from typing import Any

from harness.errors import UserError
# the record as readers see it, and the run statuses (harness.record), named here too
from harness.record import (FINISHED, STATUS_COMPLETE, STATUS_DIVERGED, STATUS_FAILED,  # noqa: F401
                            RunRecord, is_number)
from harness.files import (disk_error, fingerprint, make_dirs, open_lock, read_json,
                           remove_empty_dirs, remove_orphans, write_csv, write_json)

SCHEMA_VERSION = 1
RESULTS_ENV = "SPECTRAL_BENCH_RESULTS"
DEFAULT_RESULTS = "results"


# The files of a run directory.
RESULT = "result.json"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.pt"
ATTEMPTS = "attempts.jsonl"
LOCK = ".lock"
STAGING = ".staging"          # where a --force run trains until it replaces the old record
COMMIT = "commit.json"        # the swap's journal inside STAGING
RUN_FILES = (CHECKPOINT, HISTORY, RESULT)   # swap order: the record last
# Beside the runs (hidden from the runs by their leading underscore and their contents)
MEASURE_DIR = "_measure"
ANALYSIS_DIR = "_analysis"


def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """--results-dir, else $SPECTRAL_BENCH_RESULTS, else ./results (validated, not created)."""
    if results_dir is not None and not str(results_dir).strip():
        raise UserError("--results-dir is empty; pass a directory (or leave it out for ./results)")
    root = Path(results_dir or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)
    if root.exists() and not root.is_dir():
        raise UserError(f"results directory {root} is not a directory; pass a directory with --results-dir")
    return root


def slug(text: str) -> str:
    """A file-name-safe rendering of a dataset/method name (an .npz path becomes its stem)."""
    if text.endswith(".npz"):
        text = "npz-" + Path(text).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def run_dir(root: Path, spec) -> Path:
    return Path(root) / slug(spec.dataset) / f"{slug(spec.method)}-{slug(spec.arch)}" / spec.run_id


def measurement_csv(root: Path, name: str) -> Path:
    """Where the standalone measurement `name` (measure/) writes its CSV, and reports read it."""
    return Path(root) / MEASURE_DIR / f"{name}.csv"


def check_no_symlinks(root: Path, directory: Path) -> None:
    """Refuse a run directory (or a folder between it and the results root) that is a link.

    A link there would redirect the run's writes (and --force's replacements) to files
    somewhere else. The results root itself may be a link; that is the user's choice.
    """
    root, directory = Path(root), Path(directory)
    try:
        rel = directory.relative_to(root)
    except ValueError:
        rel = Path(directory.name)
        root = directory.parent
    p = root
    for part in rel.parts:
        p = p / part
        if p.is_symlink():
            raise UserError(f"{p} is a symbolic link; run directories must be real directories: "
                            f"remove the link (rm {p}) and run again")
        if os.path.lexists(p) and not p.is_dir():
            raise UserError(f"{p} is not a directory; move it aside and run again")


# --------------------------------------------------------------------------- locks

class RunLocked(UserError):
    """The run is being trained by another process: 'running elsewhere', not a failure."""


@contextlib.contextmanager
def locked(directory: Path, *, wait: bool = False, busy: str = ""):
    """Hold the exclusive lock `<directory>/.lock` (the directory is created if needed).

    `.lock` is opened with O_NOFOLLOW and without truncation (a planted link is refused,
    never followed), and after flock it must still be the file in place (a holder that
    removed it as we took it leaves us the new one). `wait=False` raises
    RunLocked(`busy`) when another process holds it; `wait=True` waits for it and goes on
    without a lock where the file system refuses locks (some network file systems).
    Temporary files of a killed writer are removed once the lock is held. Yields the
    directories created for it, so a caller refused later can remove them again.
    """
    directory = Path(directory)
    created = make_dirs(directory)
    path = directory / LOCK
    for _ in range(10):
        try:
            fd = open_lock(path)
        except UserError:
            remove_empty_dirs(created)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(busy or f"{directory} is locked by another process") from None
        except OSError:
            if not wait:
                os.close(fd)
                raise
            break       # no locks on this file system: go on without
        mine = os.fstat(fd)
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            break
        os.close(fd)        # the holder removed the lock file as we took it: take the new one
    else:
        raise RunLocked(f"{directory}: its lock file keeps changing; another process is "
                        f"working on it, try again later")
    try:
        remove_orphans(directory)
        yield created
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------- the run folder

class RunDir:
    """One run's directory: its files, its lock, reading and writing its record."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def of(cls, root: Path, spec) -> "RunDir":
        return cls(run_dir(root, spec))

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def staging(self) -> "RunDir":
        return RunDir(self.path / STAGING)

    @property
    def result(self) -> Path:
        return self.path / RESULT

    @property
    def history(self) -> Path:
        return self.path / HISTORY

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def attempts(self) -> Path:
        return self.path / ATTEMPTS

    # -- the record
    def read(self) -> dict[str, Any] | None:
        """The run record as written, or None if the run has none (yet).

        An interrupted --force swap is completed first (`heal`). A record that is not a
        JSON object with a status is a UserError naming the file.
        """
        self.heal()
        return self._read()

    def _read(self) -> dict[str, Any] | None:
        path = self.result
        fix = "delete it (or pass --force) to run again"
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise UserError(f"run record {path} is a symbolic link; remove it to run again")
            rec = read_json(path, "run record", fix)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not isinstance(rec, dict) or not isinstance(rec.get("status"), str):
            raise UserError(f"run record {path} is not a run record (no status); {fix}")
        return rec

    def record(self) -> RunRecord | None:
        rec = self.read()
        return None if rec is None else RunRecord.from_json(rec)

    def is_finished(self) -> bool:
        """A finished record is here. One that claims completion without its numbers is
        refused (one line naming the file): it would be reported as a result."""
        rec = self.read()
        if rec is None or rec.get("status") not in FINISHED:
            return False
        missing = RunRecord.from_json(rec).missing()
        if missing:
            raise UserError(f"run record {self.result} says complete but lacks {', '.join(missing)}; "
                            f"delete it, or pass --force to train the run again")
        return True

    def write(self, record: dict, history: list[dict] | None = None) -> None:
        """Write the history (if given), then the record: its presence means "done"."""
        if history is not None:
            write_csv(self.history, history)
        write_json(self.result, record)

    # -- the lock
    @contextlib.contextmanager
    def lock(self):
        """Hold the run's lock, so two processes never train one run (`locked`, no wait).

        Raises RunLocked when another process trains it. Yields the directories created
        for it (see `clear`).
        """
        if self.path.is_symlink():
            raise UserError(f"{self.path} is a symbolic link; run directories must be real "
                            f"directories: remove the link (rm {self.path}) and run again")
        busy = (f"run {self.path} is running elsewhere (being trained by another process); "
                f"wait for it or stop it")
        with locked(self.path, busy=busy) as created:
            yield created

    def clear(self, created: list[Path]) -> None:
        """After a refused run: remove the directory again if it holds nothing but the lock
        (and an empty staging folder). Call it while holding the lock."""
        directory = self.path
        try:
            names = set(os.listdir(directory))
        except OSError:
            return
        if names - {LOCK, STAGING}:
            return
        if STAGING in names:
            try:
                os.rmdir(directory / STAGING)   # only when empty: a staged checkpoint is kept
            except OSError:
                return
        try:
            (directory / LOCK).unlink()
            os.rmdir(directory)
        except OSError:
            return
        remove_empty_dirs([d for d in created if d != directory])

    # -- the --force swap
    def _swap_pending(self) -> bool:
        """A --force run has finished in staging (its journal or finished record is there)."""
        staging = self.path / STAGING
        if staging.is_symlink() or not staging.is_dir():
            return False
        if os.path.lexists(staging / COMMIT):
            return True
        with contextlib.suppress(UserError):     # a broken staged record: finish_swap refuses it
            rec = RunDir(staging)._read()
            return rec is not None and rec.get("status") in FINISHED
        return False

    def heal(self) -> None:
        """Complete an interrupted --force swap (called by `read`, so by every command).

        The lock is not waited for: its holder trains (the old files are whole) or swaps
        ("running elsewhere"). Without write access a swap under way cannot be finished:
        the run is refused, never shown half old, half new."""
        if not self._swap_pending():
            return
        journal = self.path / STAGING / COMMIT
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self.lock())
            except RunLocked:
                if os.path.lexists(journal):
                    raise RunLocked(f"run {self.path} is running elsewhere (another process is "
                                    f"swapping in a --force run); try again in a moment") from None
                return
            except (UserError, OSError):
                if os.path.lexists(journal):
                    raise UserError(f"run {self.path} is in the middle of a --force swap that this "
                                    f"process cannot lock the run to finish (no write access?); run "
                                    f"any command on it with write access to complete it") from None
                return      # the swap has not begun: the run directory holds the old run whole
            try:
                self.finish_swap()
            except OSError as exc:      # e.g. read-only: the journal stays, the next command retries
                raise (disk_error(self.path, exc) or exc) from None

    def finish_swap(self) -> dict | None:
        """Move a finished --force run from the staging directory into the run directory.

        Call it holding the run's lock. Returns the new record when a swap was (or had
        been half) done, else None. First a journal names the staged files by size and
        SHA-256 (the run's files the new run lacks, e.g. no checkpoint after divergence in
        epoch 1, are removed). After a kill it is followed again only if each file it names
        is still the staged one or already moved; else it is refused (UserError)."""
        staging = self.path / STAGING
        if staging.is_symlink() or not staging.is_dir():
            return None
        journal = staging / COMMIT
        if os.path.lexists(journal):
            files = self._check_journal(journal)
        else:
            rec = RunDir(staging)._read()
            if rec is None or rec.get("status") not in FINISHED:
                return None
            files = {n: fingerprint(staging / n) for n in RUN_FILES if os.path.lexists(staging / n)}
            if None in files.values():
                raise UserError(f"{staging} holds a link or special file; delete {staging} to "
                                f"discard the --force run, then run again")
            write_json(journal, {"files": files})
        for name in RUN_FILES:
            if name not in files:
                (self.path / name).unlink(missing_ok=True)
        for name in RUN_FILES:          # the record last: its presence still means "done"
            if name in files and os.path.lexists(staging / name):
                os.replace(staging / name, self.path / name)
        journal.unlink(missing_ok=True)
        remove_orphans(staging)
        with contextlib.suppress(OSError):
            os.rmdir(staging)
        return self._read()

    def _check_journal(self, journal: Path) -> dict:
        """The journal's files, if each is still the staged one or already moved, else UserError."""
        staging = journal.parent
        fix = f"it is not followed: delete {staging} to discard the --force run, then run again"
        if fingerprint(journal) is None:         # a link or a FIFO is never followed
            raise UserError(f"swap journal {journal} is not a plain file; {fix}")
        plan = read_json(journal, "swap journal", fix)
        files = plan.get("files") if isinstance(plan, dict) else None
        if not (isinstance(files, dict) and RESULT in files and set(files) <= set(RUN_FILES)):
            raise UserError(f"swap journal {journal} names no staged record by size and SHA-256; {fix}")
        for name, want in files.items():   # staged (still to move), else moved before the kill
            where = staging if os.path.lexists(staging / name) else self.path
            if fingerprint(where / name) != want:
                raise UserError(f"swap journal {journal} does not match its files ({name} is not "
                                f"the file it was written for); {fix}")
        return files


def read_record(directory: Path) -> dict[str, Any] | None:
    """The run record in `directory` as written (see `RunDir.read`)."""
    return RunDir(directory).read()


def is_finished(directory: Path) -> bool:
    return RunDir(directory).is_finished()


def iter_records(root: Path):
    """Yield (run directory, record) for every readable result.json under `root`.

    Staging directories of --force runs (hidden names) are not runs of their own.
    """
    for path in sorted(Path(root).rglob(RESULT)):
        if any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
            continue
        try:
            rec = read_record(path.parent)
        except UserError:
            continue
        if rec is not None:
            yield path.parent, rec
