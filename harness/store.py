"""Results tree: run directories, atomic writes, reading records back.

Layout (one directory per run, derived from the run id):

    <results>/<dataset>/<method>-<arch>/<config hash>-s<seed>/
        result.json   the run record (schema SCHEMA_VERSION), written last
        history.csv   one row per epoch
        checkpoint.pt model, optimizer, scheduler, RNG states, accumulated time

Every file is written to a temporary file in the same directory, flushed to disk and
renamed into place, so a crash never leaves a partial file behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

SCHEMA_VERSION = 1
RESULTS_ENV = "SPECTRAL_BENCH_RESULTS"
DEFAULT_RESULTS = "results"

STATUS_COMPLETE = "complete"
STATUS_DIVERGED = "diverged"
STATUS_FAILED = "failed"
FINISHED = (STATUS_COMPLETE, STATUS_DIVERGED)  # re-running these changes nothing


def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """--results-dir, else $SPECTRAL_BENCH_RESULTS, else ./results."""
    return Path(results_dir or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def slug(text: str) -> str:
    """A file-name-safe rendering of a dataset/method name (an .npz path becomes its stem)."""
    if text.endswith(".npz"):
        text = "npz-" + Path(text).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def run_dir(root: Path, spec) -> Path:
    return Path(root) / slug(spec.dataset) / f"{slug(spec.method)}-{slug(spec.arch)}" / spec.run_id


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call write(f) on a temporary file next to `path`, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared files
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=True).encode()
    atomic_write(path, lambda f: f.write(data + b"\n"))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    data = buf.getvalue().encode()
    atomic_write(path, lambda f: f.write(data))


def read_record(directory: Path) -> dict[str, Any] | None:
    """The run record in `directory`, or None if the run has none (yet)."""
    path = Path(directory) / "result.json"
    if not path.exists():
        return None
    with open(path) as f:
        return json.load(f)


def is_finished(directory: Path) -> bool:
    rec = read_record(directory)
    return rec is not None and rec.get("status") in FINISHED


def iter_records(root: Path):
    """Yield (run directory, record) for every result.json under `root`."""
    for path in sorted(Path(root).rglob("result.json")):
        with open(path) as f:
            yield path.parent, json.load(f)
