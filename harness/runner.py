"""The single-run path: spec -> data -> model -> ops -> train -> record.

The CLI, the local executor and SLURM jobs all call `execute`, so there is one way a
run happens. A finished run (status complete or diverged) is returned as it is unless
`force` is set; an interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

import fcntl
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
from harness.train import seed_everything, resolve_device, train


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
    shape, _ = datasets.dataset_shape(dataset)
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
    return RunSpec(method=method, arch=arch, dataset=dataset, hparams=hparams, **train_args)


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
                f"({t['train_s_per_epoch']:.1f}s/epoch, {t['throughput_img_s']:.0f} img/s)")
    return f"status {record['status']}: {record.get('reason', '')}"


@contextmanager
def run_lock(directory: Path):
    """Hold an exclusive lock on a run directory, so two processes never train one run."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"run {directory} is being trained by another process; "
                            f"wait for it or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def execute(spec: RunSpec, *, data_dir=None, results_dir=None, device: str | None = "auto",
            force: bool = False, progress: bool = True, stop_after: int | None = None,
            should_stop=None) -> dict | None:
    """Run `spec` to completion (or resume it) and return its record.

    Returns None when the call stopped early (stop_after/should_stop), leaving a
    checkpoint to resume from.
    """
    directory = store.run_dir(store.results_root(results_dir), spec)
    if not force and store.is_finished(directory):
        print(f"already done: {directory} (pass --force to run again)", file=sys.stderr)
        return store.read_record(directory)
    with run_lock(directory):
        return _execute_locked(spec, directory, data_dir=data_dir, device=device, force=force,
                               progress=progress, stop_after=stop_after, should_stop=should_stop)


def _execute_locked(spec, directory, *, data_dir, device, force, progress, stop_after,
                    should_stop) -> dict | None:
    if force:
        for name in ("result.json", "history.csv", "checkpoint.pt"):
            (directory / name).unlink(missing_ok=True)
    elif store.is_finished(directory):
        record = store.read_record(directory)
        print(f"already done: {directory} (pass --force to run again)", file=sys.stderr)
        return record
    dev = resolve_device(device)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    data = datasets.load(spec.dataset, data_dir, val_size=spec.val_size, subset=spec.subset or None)
    data_load_s = time.perf_counter() - t0
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
        "environment": environment(dev),
    }
    directory.mkdir(parents=True, exist_ok=True)
    try:
        res = train(model, data, spec, dev, directory, progress=progress,
                    stop_after=stop_after, should_stop=should_stop)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:
        record.update(status=store.STATUS_FAILED, reason=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(),
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        store.write_json(directory / "result.json", record)
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
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if res.status == "diverged":
        record.update(reason=f"non-finite training loss in epoch {res.diverged_epoch}",
                      diverged_epoch=res.diverged_epoch)
    store.write_csv(directory / "history.csv", hist)
    store.write_json(directory / "result.json", record)   # last: its presence means "done"
    return record
