"""The single-run path: spec -> data -> model -> ops -> train -> record.

The CLI, the local executor and SLURM jobs all call `execute`, so there is one way a
run happens. A finished run (status complete or diverged) is returned as it is unless
`force` is set; an interrupted run resumes from its checkpoint.

`--force` never deletes a finished record before its replacement exists: the new run
trains in the staging directory `<run dir>/.staging/` and, once its record is written
there, `finish_swap` moves checkpoint, history and record into the run directory (the
record last, so its presence still means "done"). The moves are journaled
(`.staging/commit.json`), so a kill during the swap is completed by the next command
that touches the run. An interrupted forced run resumes from the staging checkpoint
when the same `--force` command is repeated.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
import traceback
from datetime import datetime, timezone

import methods
from harness import data as datasets
from harness import store
from harness.env import environment
from harness.errors import UserError
from harness.ops import count_ops, count_params
from harness.spec import TRAIN_KEYS, RunSpec
from harness.contention import default_threads, pinned_threads
from harness.device import activate, resolve_device
from harness.train import seed_everything, train


STAGING = ".staging"          # where a --force run trains until it replaces the old record
COMMIT = "commit.json"        # the swap's journal inside STAGING
RUN_FILES = ("checkpoint.pt", "history.csv", "result.json")   # swap order: the record last


class RunLocked(UserError):
    """The run is being trained by another process: 'running elsewhere', not a failure."""


def make_spec(method: str, arch: str | None, dataset: str, overrides: dict[str, str] | None = None,
              **train_args) -> RunSpec:
    """Resolve defaults (architecture, method options) into a complete RunSpec.

    `overrides` are `--set key=value` strings: training keys (TRAIN_KEYS) go to the
    spec, everything else to the method's validated options.
    """
    from harness.spec import parse_value

    methods.get(method)
    datasets.check_name(dataset)
    if datasets.is_npz(dataset):  # the same file gives the same run id from any directory
        dataset = str(Path(dataset).expanduser().resolve())
    shape, num_classes = datasets.dataset_shape(dataset)
    arch = methods.resolve_arch(method, arch, shape)
    overrides = dict(overrides or {})
    defaults = RunSpec(method=method, arch=arch, dataset=dataset)
    for key in [k for k in overrides if k in TRAIN_KEYS]:
        try:
            train_args[key] = parse_value(overrides.pop(key), getattr(defaults, key))
        except ValueError as exc:
            raise UserError(f"bad value for --set {key}: {exc}") from None
    hparams = methods.resolve_hparams(method, arch, overrides)
    train_args = {k: v for k, v in train_args.items() if v is not None}
    spec = RunSpec(method=method, arch=arch, dataset=dataset, hparams=hparams, **train_args)
    methods.check_options(method, arch, hparams, shape, num_classes)
    return spec


def count_ops_safely(model, input_shape, arch: str | None = None) -> dict:
    """Op counts for the record; a counting failure is recorded, not fatal to training."""
    try:
        return count_ops(model, tuple(input_shape), arch=arch)
    except Exception as exc:  # noqa: BLE001 - recorded in the result, shown by reports
        return {"error": f"{type(exc).__name__}: {exc}"}


def summary_line(record: dict) -> str:
    m = record.get("metrics", {})
    t = record.get("timing", {})
    if record["status"] == store.STATUS_COMPLETE:
        return (f"{record['spec']['method']}/{record['spec']['arch']} on {record['spec']['dataset']}: "
                f"test error {100 * m['test_error']:.2f}% (acc {100 * m['test_acc']:.2f}%) after "
                f"{m['epochs_done']} epochs; train {t['train_s']:.1f}s "
                f"({t['train_s_per_epoch']:.1f}s/epoch, {t['throughput_img_s']:.0f} img/s)"
                + subset_note(record) + unreliable_note(record))
    return f"status {record['status']}: {record.get('reason', '')}"


def subset_note(record: dict) -> str:
    d = record.get("dataset") or {}
    return (f"; --subset: {d.get('n_train')} train, {d.get('n_test')} test images"
            if record["spec"].get("subset") else "")


def unreliable_note(record: dict) -> str:
    c = record.get("contention") or {}
    return f"; timing unreliable: {'; '.join(c.get('reasons', []))}" if c.get("unreliable") else ""


@contextmanager
def run_lock(directory: Path):
    """Hold an exclusive lock on a run directory, so two processes never train one run.

    `.lock` is opened with O_NOFOLLOW and without truncation (a planted link is refused,
    never followed). Yields the directories created for it, so that a run refused before
    it wrote anything can remove them again. Raises RunLocked when another process holds it.
    """
    directory = Path(directory)
    if directory.is_symlink():
        raise UserError(f"{directory} is a symbolic link; run directories must be real "
                        f"directories: remove the link (rm {directory}) and run again")
    created = store.make_dirs(directory)
    lock = directory / ".lock"
    for _ in range(10):
        try:
            fd = store.open_lock(lock)
        except UserError:
            store.remove_empty_dirs(created)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(f"run {directory} is running elsewhere (being trained by another "
                            f"process); wait for it or stop it") from None
        mine = os.fstat(fd)
        try:
            now = os.lstat(lock)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            break
        os.close(fd)        # the holder removed the lock file as we took it: take the new one
    else:
        raise RunLocked(f"run {directory}: its lock file keeps changing; another process is "
                        f"working on it, try again later")
    try:
        yield created
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _remove_if_untouched(directory: Path, created: list[Path]) -> None:
    """After a refused run: remove its directory again if it holds nothing but the lock.

    Called while holding the lock, so no other process trains this run.
    """
    try:
        names = set(os.listdir(directory))
    except OSError:
        return
    if names - {".lock", STAGING}:
        return
    staging = directory / STAGING
    if STAGING in names:
        try:
            os.rmdir(staging)       # only when empty: a staged checkpoint is kept for resuming
        except OSError:
            return
    with_lock = directory / ".lock"
    try:
        with_lock.unlink()
        os.rmdir(directory)
    except OSError:
        return
    store.remove_empty_dirs([d for d in created if d != directory])


def finish_swap(directory: Path) -> dict | None:
    """Move a finished --force run from the staging directory into the run directory.

    Returns the new record when a swap was (or had been half) done, else None. The
    journal makes repeating the moves after a kill safe: files the new run does not have
    (e.g. no checkpoint when it diverged in epoch 1) are removed from the run directory,
    decided once, before the first move.
    """
    staging = Path(directory) / STAGING
    if staging.is_symlink() or not staging.is_dir():
        return None
    journal = staging / COMMIT
    if journal.exists():
        plan = store.read_json(journal, "swap journal", f"delete {staging} to discard the --force run")
        if not isinstance(plan, dict):
            raise UserError(f"swap journal {journal} is not a journal; delete {staging} to discard "
                            f"the --force run")
        # only our own file names: the journal lies in a shared directory
        plan = {k: [n for n in plan.get(k) or () if n in RUN_FILES] for k in ("move", "remove")}
    else:
        rec = store.read_record(staging)
        if rec is None or rec.get("status") not in store.FINISHED:
            return None
        plan = {"move": [n for n in RUN_FILES if (staging / n).exists()],
                "remove": [n for n in RUN_FILES if not (staging / n).exists()]}
        store.write_json(journal, plan)
    for name in plan["remove"]:
        (Path(directory) / name).unlink(missing_ok=True)
    for name in plan["move"]:
        if (staging / name).exists():
            os.replace(staging / name, Path(directory) / name)
    journal.unlink(missing_ok=True)
    store.remove_orphans(staging)
    try:
        os.rmdir(staging)
    except OSError:
        pass
    return store.read_record(directory)


def execute(spec: RunSpec, *, data_dir=None, results_dir=None, device: str | None = "auto",
            force: bool = False, progress: bool = True, stop_after: int | None = None,
            should_stop=None, on_start=None, threads: int | None = None) -> dict | None:
    """Run `spec` to completion (or resume it) and return its record.

    Returns None when the call stopped early (stop_after/should_stop), leaving a
    checkpoint to resume from. `on_start()` is called once the run is locked and will
    train (not for a finished run, nor one that runs elsewhere). Raises RunLocked when
    another process trains the run. The run uses spec.threads CPU threads, or for auto
    (0) `threads` (a local sweep's share of the cores), else the cores this process may use.
    """
    with pinned_threads(spec.threads or threads or default_threads()):
        return _execute(spec, data_dir=data_dir, results_dir=results_dir, device=device, force=force,
                        progress=progress, stop_after=stop_after, should_stop=should_stop,
                        on_start=on_start)


def _execute(spec, *, data_dir, results_dir, device, force, progress, stop_after, should_stop,
             on_start) -> dict | None:
    root = store.results_root(results_dir)
    directory = store.run_dir(root, spec)
    store.check_no_symlinks(root, directory)
    if not force and store.is_finished(directory):
        print(f"already done: {directory} (pass --force to run again)", file=sys.stderr)
        return store.read_record(directory)
    dev = resolve_device(device)          # refused before any directory is created
    if spec.graph == "on" and dev.type != "cuda":
        raise UserError(f"graph=on: CUDA graphs need a CUDA device; this run is on {dev.type}; "
                        f"use --set graph=auto or off")
    with run_lock(directory) as created:
        try:
            return _execute_locked(spec, directory, data_dir=data_dir, dev=dev, force=force,
                                   progress=progress, stop_after=stop_after,
                                   should_stop=should_stop, on_start=on_start)
        except BaseException:
            _remove_if_untouched(directory, created)
            raise


def _execute_locked(spec, directory, *, data_dir, dev, force, progress, stop_after,
                    should_stop, on_start) -> dict | None:
    store.remove_orphans(directory)        # temporary files of a killed writer
    staging = directory / STAGING
    if staging.is_symlink() or (os.path.lexists(staging) and not staging.is_dir()):
        raise UserError(f"{staging} is not a directory; remove it and run again")
    swapped = finish_swap(directory)
    if swapped is not None:
        print(f"completed the interrupted swap of a --force run: {directory}", file=sys.stderr)
        return swapped
    if force and (staging.exists() or any((directory / n).exists() for n in RUN_FILES)):
        work = staging         # the old record stays until the new one is complete
        store.make_dirs(staging)
        store.remove_orphans(staging)
    elif store.is_finished(directory):
        record = store.read_record(directory)
        print(f"already done: {directory} (pass --force to run again)", file=sys.stderr)
        return record
    else:
        work = directory
    if on_start is not None:
        on_start()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    data = datasets.load(spec.dataset, data_dir, val_size=spec.val_size, subset=spec.subset or None)
    data_load_s = time.perf_counter() - t0
    if spec.subset:  # the subset also shrinks val and test: never leave that implicit
        print(f"notice: --subset {spec.subset}: training on {len(data.y_train):,} images, validating "
              f"on {len(data.y_val):,} and testing on {len(data.y_test):,} (N/5); the numbers are not "
              f"comparable with full-data runs", file=sys.stderr)
    if spec.batch_size > len(data.y_train):
        raise UserError(f"--batch-size {spec.batch_size} is larger than the {len(data.y_train)} "
                        f"training images; use --batch-size {len(data.y_train)} or less "
                        f"(or a larger --subset)")
    precision = activate(dev, spec.precision)   # before the model is built and counted
    seed_everything(spec.seed)
    model = methods.build(spec, data.input_shape, data.num_classes)
    info = methods.get(spec.method)
    record = {
        "schema_version": store.SCHEMA_VERSION, "run_id": spec.run_id, "spec": spec.to_dict(),
        "dataset": data.describe(), "started": started,
        "method_info": {"description": info.description, "reconstruction": info.reconstruction,
                        **(model.describe() if hasattr(model, "describe") else {})},
        "params": count_params(model),
        "ops": count_ops_safely(model, data.input_shape, spec.arch),
        "environment": {**environment(dev), "precision": precision},
    }
    try:
        res = train(model, data, spec, dev, work, progress=progress,
                    stop_after=stop_after, should_stop=should_stop)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:
        record.update(status=store.STATUS_FAILED, reason=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(),
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        store.write_json(work / "result.json", record)   # staged for --force: the old record stays
        raise
    if res.status == "interrupted":
        return None
    hist = res.history
    epochs_done = len(hist)
    timing = dict(res.timing, data_load_s=data_load_s)
    timing["train_s_per_epoch"] = timing["train_s"] / max(1, epochs_done)
    timing["throughput_img_s"] = epochs_done * len(data.y_train) / max(timing["train_s"], 1e-9)
    last = hist[-1] if hist else {}
    record.update(
        status=store.STATUS_COMPLETE if res.status == "complete" else store.STATUS_DIVERGED,
        metrics={"epochs_done": epochs_done, **res.test,
                 **{k: last.get(k) for k in ("train_loss", "train_acc", "val_loss", "val_acc")}},
        timing=timing,
        memory={"peak_mb": res.peak_memory_mb, "kind": res.memory_kind},
        contention=res.contention,
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if res.status == "diverged":
        record.update(reason=f"non-finite training loss in epoch {res.diverged_epoch}",
                      diverged_epoch=res.diverged_epoch)
    store.write_csv(work / "history.csv", hist)
    store.write_json(work / "result.json", record)   # last: its presence means "done"
    if work != directory:
        finish_swap(directory)
    return record
