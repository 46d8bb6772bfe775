"""Files in a shared results directory: atomic writes, strict JSON, and safe opening.

Every file is written to a temporary file in the same directory, flushed to disk and
renamed into place (`atomic_write`), so a crash never leaves a partial file behind; a
killed writer's temporary file (`.<name>.<random>.tmp`) is deleted by `remove_orphans`
when its directory is locked again. Files are created with `0666 & ~umask`, so that
colleagues sharing a results directory can read them, and nothing is made group- or
world-writable. JSON is strict: non-finite floats are written as null (`strict`).
Failures the user fixes (a full disk, a read-only directory, a file where a folder
belongs, a name too long) become one-line `UserError`s (`disk_error`).

Reading: a shared directory may hold anything under a file's name, so files are read
only when they are regular files (`open_regular`: a FIFO, a device such as /dev/zero or
a symbolic link is refused before a byte is read, so nothing blocks or streams forever),
and only up to a size limit (`read_bounded`; logs: their tail, `read_tail`). Reading a
JSON file we wrote (`read_json`) also bounds its nesting (MAX_JSON_DEPTH), so a crafted
file is one line that says how to fix it, never a RecursionError.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from harness.errors import UserError

# Failures of the file system that the user fixes (space, quota, permissions, a file
# where a directory belongs): one line instead of a traceback.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
               errno.EEXIST, errno.EISDIR, errno.ENAMETOOLONG}
MAX_JSON_BYTES = 256 * 2**20   # records are kilobytes; a manifest of a 10,000-run suite some MiB
MAX_JSON_DEPTH = 64            # our files nest a few levels; deeper is not a file we wrote


def disk_error(path, exc: OSError) -> UserError | None:
    """A one-line UserError for an OSError the user can fix, else None (a real bug)."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_ERRNOS:
        return None
    why = exc.strerror or str(exc)
    fix = {errno.ENOSPC: "free space", errno.EDQUOT: "free space (quota exceeded)",
           errno.EROFS: "use a writable --results-dir",
           errno.ENAMETOOLONG: "use a shorter path"}.get(exc.errno, "fix the path or its permissions")
    return UserError(f"cannot write {path}: {why}; {fix}, then repeat the command "
                     f"(an interrupted run resumes from its last checkpoint)")


def make_dirs(path: Path) -> list[Path]:
    """mkdir -p `path`; returns the directories it created (outermost first)."""
    path = Path(path)
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileNotFoundError:   # a parent that refuses folders (/proc/1/...) or vanished
        raise UserError(f"cannot create directory {path}: a folder above it cannot hold "
                        f"directories; use another --results-dir") from None
    except OSError as exc:
        raise (disk_error(path, exc) or exc) from None
    return list(reversed(missing))


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove the directories of `make_dirs` again, innermost first, where still empty."""
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            break   # not empty (someone else's run, or ours with files): keep it and its parents


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call write(f) on a temporary file next to `path`, fsync, then rename over `path`."""
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise (disk_error(path, exc) or exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and disk_error(path, exc):
            raise disk_error(path, exc) from None
        raise


def remove_orphans(directory: Path) -> list[str]:
    """Delete the temporary files a killed writer left in `directory` (`.<name>.*.tmp`).

    Call it only while holding the directory's lock: then no writer is alive there.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for e in entries:
        if e.name.startswith(".") and e.name.endswith(".tmp") and e.is_file(follow_symlinks=False):
            try:
                os.unlink(e.path)
                removed.append(e.name)
            except OSError:
                pass
    return removed


def open_lock(path: Path) -> int:
    """Open (create) a lock file without following a link and without truncating it.

    `open(path, "w")` would follow a planted symbolic link and truncate its target.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link; a lock must be a plain file: "
                            f"remove the link (rm {path}) and run again") from None
        raise (disk_error(path, exc) or exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path} is not a plain file; remove it and run again")
    return fd


def fingerprint(path: Path) -> dict | None:
    """{"size", "sha256"} of a plain file; None if it is absent, a link or not a plain file."""
    try:   # O_NONBLOCK: a FIFO planted in its place must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return {"size": info.st_size, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def strict(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    data = json.dumps(strict(obj), indent=2, sort_keys=True, default=str, allow_nan=False).encode()
    atomic_write(path, lambda f: f.write(data + b"\n"))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    data = buf.getvalue().encode()
    atomic_write(path, lambda f: f.write(data))


def open_regular(path, what: str, fix: str, follow_links: bool = False) -> io.BufferedReader:
    """Open `path` for reading if it is a regular file; else a one-line UserError.

    O_NONBLOCK: opening a FIFO does not wait for a writer, and the fstat that follows
    refuses it (and devices such as /dev/zero) before anything is read. O_NOFOLLOW
    (unless `follow_links`): a link in the file's place is refused, never followed.
    FileNotFoundError and NotADirectoryError pass through: a missing file is the
    caller's business.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{what} {path} is a symbolic link, not a file; {fix}") from None
        raise UserError(f"cannot read {what} {path} ({exc.strerror or exc}); {fix}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UserError(f"{what} {path} is {file_kind(mode)}, not a regular file; {fix}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def file_kind(mode: int) -> str:
    """'a FIFO', 'a device', ... for an st_mode, as the errors name what they found."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a file"


def read_bounded(path, what: str, fix: str, limit: int = MAX_JSON_BYTES,
                 follow_links: bool = False) -> bytes:
    """The bytes of the regular file `path`, refused (one line) above `limit` bytes."""
    with open_regular(path, what, fix, follow_links) as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise UserError(f"cannot read {what} {path} ({exc.strerror or exc}); {fix}") from None
    if len(data) > limit:
        raise UserError(f"{what} {path} is larger than {limit / 2**20:g} MiB, more than the harness "
                        f"writes or reads; {fix}")
    return data


def read_tail(path, what: str, limit: int = 65536, fix: str = "remove it") -> bytes:
    """The last `limit` bytes of the regular file `path` (a log): bounded, whatever its size."""
    with open_regular(path, what, fix) as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - limit))
        return f.read(limit)


def json_depth(obj: Any) -> int:
    """How deeply `obj` nests (a scalar: 0), counted without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def loads_bounded(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads that refuses nesting deeper than `max_depth` with a ValueError.

    The parser itself stops at the interpreter's recursion limit (a RecursionError,
    turned into the ValueError here); the depth check after it keeps everything that
    walks the result later (strict, json.dumps, the readers) far from that limit.
    """
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} levels deep") from None
    if json_depth(obj) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep")
    return obj


def read_json(path: Path, what: str, fix: str) -> Any:
    """Parse a JSON file we wrote; anything unreadable is a one-line UserError with `fix`.

    Only a regular file (not a link, FIFO or device) of at most MAX_JSON_BYTES, nested at
    most MAX_JSON_DEPTH levels, is accepted.
    """
    data = read_bounded(path, what, fix)
    try:
        return loads_bounded(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{what} {path} is unreadable ({msg}); {fix}") from None
