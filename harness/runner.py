"""The single-run path: spec -> data -> model -> ops -> train -> record.

    execute(spec)                                           (CLI `run`, local and SLURM jobs)
      RunDir.of(results root, spec)          harness.store: the run folder, locked
      data = harness.data.load(...)          normalized splits, in memory
      model = methods.build(spec, ...)       after seeding, under the precision policy
      ops = harness.ops.count_ops(model)     forward + backward MACs, recorded
      harness.train.train(model, data, ...)  -> history, timings, checkpoints
      RunDir.write(record, history)          the record last: its presence means "done"

The CLI, the local executor and SLURM jobs all call `execute`, so there is one way a
run happens (a spec is made from user input by `harness.suite.make_spec`). A finished
run (status complete or diverged) is returned as it is unless `force` is set; an
interrupted run resumes from its checkpoint.

`--force` never deletes a finished record before its replacement exists: the new run
trains in the staging directory `<run dir>/.staging/` and, once its record is written
there, `RunDir.finish_swap` moves checkpoint, history and record into the run directory
(the record last, so its presence still means "done"). The moves are journaled, so a
kill during the swap is completed by the next command that touches the run. An
interrupted forced run resumes from the staging checkpoint when the same `--force`
command is repeated.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from datetime import datetime, timezone

import methods
from harness import batchnorm
from harness import data as datasets
from harness import store
from harness.contention import default_threads, pinned_threads
from harness.device import activate, resolve_device
from harness.env import environment
from harness import files, livelog
from harness.errors import UserError
from harness.fingerprint import fingerprint
from harness.ops import count_ops, count_params
from harness.spec import RunSpec
from harness.store import RunDir, RunLocked, RunRecord
from harness.text import notice, plural
from harness.train import seed_everything, train

__all__ = ["execute", "summary_line", "RunLocked"]


def count_ops_safely(model, input_shape) -> dict:
    """Op counts for the record; a counting failure is recorded, not fatal to training."""
    try:
        return count_ops(model, tuple(input_shape))
    except Exception as exc:  # noqa: BLE001 - recorded in the result, shown by reports
        return {"error": f"{type(exc).__name__}: {exc}"}


def summary_line(record: dict) -> str:
    r = RunRecord.from_json(record)
    m, t = r.metrics, r.timing
    if r.is_complete:
        return (f"{r.spec['method']}/{r.spec['arch']} on {r.spec['dataset']}: "
                f"test error {100 * m['test_error']:.2f}% (acc {100 * m['test_acc']:.2f}%) after "
                f"{plural(m['epochs_done'], 'epoch')}; train {t['train_s']:.1f}s "
                f"({t['train_s_per_epoch']:.1f}s/epoch, {t['throughput_img_s']:.0f} img/s)"
                + subset_note(r) + unreliable_note(r) + batchnorm_note(r))
    return f"status {r.status}: {r.reason}"


def subset_note(r: RunRecord) -> str:
    return (f"; --subset: {r.dataset.get('n_train')} train, {r.dataset.get('n_test')} test images"
            if r.spec.get("subset") else "")


def unreliable_note(r: RunRecord) -> str:
    return f"; timing unreliable: {'; '.join(r.unreliable_reasons)}" if r.unreliable else ""


def batchnorm_note(r: RunRecord) -> str:
    return "; BatchNorm statistics not settled (see the warning)" if r.batchnorm_unsettled else ""


def execute(spec: RunSpec, *, data_dir=None, results_dir=None, device: str | None = "auto",
            force: bool = False, progress: bool = True, stop_after: int | None = None,
            should_stop=None, on_start=None, threads: int | None = None, on_epoch=None,
            log: str | None = None) -> dict | None:
    """Run `spec` to completion (or resume it) and return its record.

    Returns None when the call stopped early (stop_after/should_stop), leaving a
    checkpoint to resume from. `on_start()` is called once the run is locked and will
    train (not for a finished run, nor one that runs elsewhere); `on_epoch(row)` after
    every epoch with its history row. Raises RunLocked when another process trains the
    run. The run uses spec.threads CPU threads, or for auto (0) `threads` (a local
    sweep's share of the cores), else the cores this process may use. `log="tensorboard"`
    writes live curves to <run dir>/tensorboard/ (harness.livelog; not part of the spec).
    """
    livelog.check(log)
    with pinned_threads(spec.threads or threads or default_threads()):
        return _execute(spec, data_dir=data_dir, results_dir=results_dir, device=device, force=force,
                        progress=progress, stop_after=stop_after, should_stop=should_stop,
                        on_start=on_start, on_epoch=on_epoch, log=log)


def _execute(spec, *, data_dir, results_dir, device, force, progress, stop_after, should_stop,
             on_start, on_epoch, log) -> dict | None:
    root = store.results_root(results_dir)
    rd = RunDir.of(root, spec)
    store.check_no_symlinks(root, rd.path)
    if not force and rd.is_finished():
        print(f"already done: {rd.path} (pass --force to run again)", file=sys.stderr)
        return rd.read()
    dev = resolve_device(device)          # refused before any directory is created
    if spec.graph == "on" and dev.type != "cuda":
        raise UserError(f"graph=on: CUDA graphs need a CUDA device; this run is on {dev.type}; "
                        f"use --set graph=auto or off")
    with rd.lock() as created:            # also removes a killed writer's temporary files
        try:
            return _execute_locked(spec, rd, data_dir=data_dir, dev=dev, force=force,
                                   progress=progress, stop_after=stop_after,
                                   should_stop=should_stop, on_start=on_start,
                                   on_epoch=on_epoch, log=log)
        except BaseException:
            rd.clear(created)             # a refused run leaves no directory behind
            raise


def _execute_locked(spec, rd: RunDir, *, data_dir, dev, force, progress, stop_after,
                    should_stop, on_start, on_epoch, log) -> dict | None:
    staging = rd.staging.path
    if staging.is_symlink() or (os.path.lexists(staging) and not staging.is_dir()):
        raise UserError(f"{staging} is not a directory; remove it and run again")
    swapped = rd.finish_swap()
    if swapped is not None:
        print(f"completed the interrupted swap of a --force run: {rd.path}", file=sys.stderr)
        return swapped
    if force and (staging.exists() or any((rd.path / n).exists() for n in store.RUN_FILES)):
        work = rd.staging      # the old record stays until the new one is complete
        files.make_dirs(staging)
        files.remove_orphans(staging)
    elif rd.is_finished():
        record = rd.read()
        print(f"already done: {rd.path} (pass --force to run again)", file=sys.stderr)
        return record
    else:
        work = rd
    if on_start is not None:
        on_start()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    data = datasets.load(spec.dataset, data_dir, val_size=spec.val_size, subset=spec.subset or None)
    data_load_s = time.perf_counter() - t0
    if spec.subset:  # the subset also shrinks val and test: never leave that implicit
        notice(f"--subset {spec.subset}: training on {len(data.y_train):,} images, validating "
               f"on {len(data.y_val):,} and testing on {len(data.y_test):,} (N/5); the numbers are not "
               f"comparable with full-data runs")
    if spec.batch_size > len(data.y_train):
        raise UserError(f"--batch-size {spec.batch_size} is larger than the {len(data.y_train)} "
                        f"training images; use --batch-size {len(data.y_train)} or less "
                        f"(or a larger --subset)")
    precision = activate(dev, spec.precision, spec.cudnn_benchmark)   # before the model is built
    seed_everything(spec.seed)
    model = methods.build(spec, data.input_shape, data.num_classes)
    info = methods.get(spec.method)
    record = {
        "schema_version": store.SCHEMA_VERSION, "run_id": spec.run_id, "spec": spec.to_dict(),
        "dataset": data.describe(), "started": started,
        "method_info": {"description": info.description, "reconstruction": info.reconstruction,
                        **(model.describe() if hasattr(model, "describe") else {})},
        "params": count_params(model),
        "ops": count_ops_safely(model, data.input_shape),
        "environment": {**environment(dev), "precision": precision, "code": fingerprint(spec.method)},
    }
    observers = [f for f in (on_epoch, livelog.TensorBoardLog(rd.path) if log else None) if f]
    try:
        res = train(model, data, spec, dev, work.path, progress=progress,
                    stop_after=stop_after, should_stop=should_stop,
                    on_epoch=(lambda row: [f(row) for f in observers]) if observers else None)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:
        record.update(status=store.STATUS_FAILED, reason=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(),
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        work.write(record)            # staged for --force: the old record stays
        raise
    finally:
        for f in observers:
            if hasattr(f, "close"):
                f.close()
    if res.status == "interrupted":
        return None
    # a resumed run goes on with its first session's threads, not always today's auto count
    record["environment"]["threads"] = res.contention.get("threads", record["environment"]["threads"])
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
        memory=res.memory,
        contention=res.contention,
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if res.status == "diverged":
        record.update(reason=f"non-finite training loss in epoch {res.diverged_epoch}",
                      diverged_epoch=res.diverged_epoch)
    # evaluation used the running statistics as they stand now: say so if they cannot have
    # settled (harness.batchnorm); a note in the record and on stderr, the numbers unchanged
    unsettled = batchnorm.unsettled(model)
    if unsettled is not None:
        steps_per_epoch = max(1, unsettled["steps"] // max(1, epochs_done))
        unsettled["warning"] = batchnorm.warning_text(unsettled, steps_per_epoch)
        record["batchnorm"] = {"unsettled": True, **unsettled}
        if progress:
            print(f"warning: {unsettled['warning']}", file=sys.stderr)
    work.write(record, history=hist)      # the record last: its presence means "done"
    if work is not rd:
        rd.finish_swap()
    return record
