"""The training loop: seeding, timing, evaluation, checkpoints and resume (the step itself,
its optimizer and lr schedule: harness.step; the step as a CUDA graph: harness.graph).

Timing buckets are kept apart: `train_s` covers only the optimizer steps (forward,
backward, update), `data_s` the batch gathering (indexing the preloaded training set
with the epoch's permutation); on a GPU both are timed with CUDA events around the
regions and read after the epoch: nothing between two steps waits for the GPU (the
progress bar shows steps; the losses are printed per epoch). `eval_s` covers the
validation pass (data already on the device), `warmup_s` an untimed warm-up on a copy of the model
(lazy initialization, allocator growth, cuDNN/cuFFT plans for every training and
evaluation batch shape used later), and `checkpoint_s` checkpoint writes; `capture_s`
the steps that capture a CUDA graph and, with compile=on, `compile_s` the first step of
each batch size in a session, which compiles it (`harness.graph.StepRunner`).

Checkpoints are written atomically after every epoch and hold everything needed to
continue bit for bit on CPU: model, optimizer, scheduler, the shuffling generator,
the torch/numpy/python RNG states, the history and the accumulated timings.

A checkpoint may sit in a shared results directory, so it is read with
`torch.load(weights_only=True)`: only tensors and plain containers/numbers/strings are
rebuilt, and a file that names any other callable (a pickle "payload") is refused
before anything runs. Everything we store is therefore plain data: the numpy RNG state
is kept as a tensor and a tuple, not as a numpy array.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import pickle
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from harness.contention import Monitor
from harness.device import PeakMemory, Timer, activate, sync, tensor_mb
from harness.errors import UserError
from harness.files import atomic_write, open_regular
from harness.graph import StepRunner, current_lr
from harness import step as steps      # steps.train_step: one place to wrap every step
from harness.step import Amp, make_optimizer, make_scheduler
from harness.store import CHECKPOINT

EVAL_BATCH = 1000
WARMUP_STEPS = 2


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states(device: torch.device) -> dict:
    """The global RNG states as plain data (tensors, tuples, numbers) for weights_only loads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(),
              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                        float(cached)),
              "python": random.getstate()}
    if device.type == "cuda":
        # only the training GPU's generator: a requeued task may land on a node with a
        # different number of GPUs, where a list of all generators would not fit
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, *rest = states["numpy"]
    if torch.is_tensor(keys):
        keys = keys.numpy().astype(np.uint32)
    np.random.set_state((kind, keys, *rest))
    random.setstate(states["python"])
    if "cuda" in states and device.type == "cuda":
        cuda = states["cuda"]
        if isinstance(cuda, (list, tuple)):   # older checkpoints held every GPU's state
            cuda = cuda[0]
        torch.cuda.set_rng_state(cuda, device)


def _legacy_numpy_globals() -> list:
    """What checkpoints of harness versions before the plain-data format need besides
    tensors: numpy array reconstruction for the numpy RNG state (it calls nothing else;
    the same set the CIFAR unpickler allows)."""
    try:
        from numpy._core.multiarray import _reconstruct   # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    names = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    torch_version = tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    if _reconstruct.__module__.startswith("numpy._core") and torch_version >= (2, 6):
        names.append((_reconstruct, "numpy.core.multiarray._reconstruct"))   # written by numpy 1.x
    return names


def _allow_legacy_numpy():
    """A context allowing _legacy_numpy_globals in weights_only loads (torch >= 2.4)."""
    if hasattr(torch.serialization, "safe_globals"):
        return torch.serialization.safe_globals(_legacy_numpy_globals())
    torch.serialization.add_safe_globals(_legacy_numpy_globals())   # torch 2.4: no context yet
    return contextlib.nullcontext()


CHECKPOINT_KEYS = {"model": dict, "optimizer": dict, "scheduler": dict, "rng": dict,
                   "spec": dict, "history": list, "timing": dict, "epoch": int}


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint without executing anything in it; one-line UserError if refused."""
    fix = "delete it, or pass --force to train the run again"
    try:   # only a regular file: a FIFO in its place would block here forever
        with open_regular(path, "checkpoint", fix) as f, _allow_legacy_numpy():
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)|but got (<[^>]+>)", str(exc))
        what = f" ({found.group(1) or found.group(2)})" if found else ""
        raise UserError(f"refusing to load checkpoint {path}: it holds objects a harness checkpoint "
                        f"never contains{what}; {fix}") from None
    except Exception as exc:  # noqa: BLE001 - truncated or not a checkpoint at all
        msg = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"cannot read checkpoint {path} ({type(exc).__name__}: {msg}); {fix}") from None
    if not isinstance(ckpt, dict):
        ckpt = {}
    bad = [k for k, kind in CHECKPOINT_KEYS.items() if not isinstance(ckpt.get(k), kind)]
    if not bad and not all(isinstance(h, dict) for h in ckpt["history"]):
        bad = ["history"]
    if bad or not torch.is_tensor(ckpt.get("generator")):
        raise UserError(f"checkpoint {path} is not a harness checkpoint (bad or missing "
                        f"{', '.join(bad) or 'generator'}); {fix}")
    return ckpt


@torch.no_grad()
def evaluate(model, x, y, device, amp: Amp | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over (x, y) in eval mode (under `amp`'s autocast:
    the precision the run trains in; always the uncompiled model)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for i in range(0, len(y), EVAL_BATCH):
        xb, yb = x[i:i + EVAL_BATCH].to(device), y[i:i + EVAL_BATCH].to(device)
        with amp.autocast() if amp is not None else contextlib.nullcontext():
            out = model(xb)
            loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(1, len(y))
    return loss_sum.item() / n, correct.item() / n


def eval_batch_sizes(*split_sizes: int) -> list[int]:
    """Every batch size `evaluate` will use on splits of these sizes (plans per shape)."""
    sizes = set()
    for n in split_sizes:
        if n:
            sizes.add(min(EVAL_BATCH, n))
            if n > EVAL_BATCH and n % EVAL_BATCH:
                sizes.add(n % EVAL_BATCH)
    return sorted(sizes)


def warm_up(model, data, spec, device) -> float:
    """Untimed steps on a copy of the model, touching every batch shape used later.

    RNG states are forked so the real run is unaffected (resume equivalence holds).
    """
    t0 = time.perf_counter()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        m = copy.deepcopy(model)
        o = make_optimizer(spec, m.parameters())
        amp = Amp(spec.precision, device.type)     # its own loss scale: the run's is untouched
        s = torch.optim.lr_scheduler.LambdaLR(o, lambda _: 1.0)
        n = len(data.y_train)
        b = min(spec.batch_size, n)
        shapes = [b] + ([n % b] if n % b > 1 else [])
        m.train()
        for size in shapes:
            xb, yb = data.x_train[:size].to(device), data.y_train[:size].to(device)
            for _ in range(WARMUP_STEPS):
                steps.train_step(m, o, s, xb, yb, spec.clip_norm, amp)
        for size in eval_batch_sizes(len(data.y_val), len(data.y_test)):
            x = data.x_val if size <= len(data.y_val) else data.x_test
            evaluate(m, x[:size], torch.zeros(size, dtype=torch.long), device, amp)
        del m, o
    sync(device)
    return time.perf_counter() - t0


@dataclass
class TrainResult:
    status: str                       # complete | diverged | interrupted
    history: list[dict] = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    diverged_epoch: int | None = None
    memory: dict = field(default_factory=dict)   # harness.device.PeakMemory.record
    contention: dict = field(default_factory=dict)


def train(model, data, spec, device, run_dir: Path, progress: bool = True,
          stop_after: int | None = None, should_stop: Callable[[], bool] | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train `model` on `data` per `spec`, resuming from `run_dir/checkpoint.pt` if present.

    `stop_after` ends the call after that many epochs in total (for tests and
    time-sliced jobs); `should_stop()` is polled after every epoch (for preemption).
    Both leave a checkpoint and return status 'interrupted'. `on_epoch(row)` gets each
    finished epoch's history row after its checkpoint (a sweep's progress, live logs);
    it only observes.
    """
    from tqdm import tqdm

    activate(device, spec.precision, spec.cudnn_benchmark)
    model.to(device)
    n = len(data.y_train)
    if n < 2:
        raise UserError(f"the training split has {n} image(s); BatchNorm needs at least 2: "
                        f"use a larger --subset or a smaller val_size")
    b = min(spec.batch_size, n)
    steps = n // b + (1 if n % b > 1 else 0)   # a final batch of 1 would break BatchNorm
    # a CUDA graph reads the lr from a device tensor (harness/graph.py); elsewhere, and for
    # SGD (no capturable step: harness/step.py), the optimizer is exactly the eager one
    opt = make_optimizer(spec, model.parameters(),
                         capturable=device.type == "cuda" and spec.graph != "off")
    sched = make_scheduler(spec, opt, steps)
    amp = Amp(spec.precision, device.type)
    gen = torch.Generator().manual_seed(spec.seed)
    history: list[dict] = []
    timing = {"train_s": 0.0, "data_s": 0.0, "eval_s": 0.0, "warmup_s": 0.0, "checkpoint_s": 0.0,
              "wall_s": 0.0, "sessions": 0}
    start_epoch = 0
    # with --quiet the verdict is only recorded (and in the summary line), not warned
    monitor = Monitor(threads=torch.get_num_threads(), warn=None if progress else (lambda _: None))
    ckpt_path = Path(run_dir) / CHECKPOINT
    if ckpt_path.exists():
        # RNG states must stay CPU ByteTensors; load_state_dict moves the rest to the device
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["spec"] != spec.to_dict():
            raise UserError(f"checkpoint {ckpt_path} belongs to a different spec; "
                            f"delete it or pass --force")
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            gen.set_state(ckpt["generator"])
            set_rng_states(ckpt["rng"], device)
            if amp.scaler is not None and isinstance(ckpt.get("scaler"), dict):
                amp.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"checkpoint {ckpt_path} does not fit this run ({msg}); "
                            f"delete it or pass --force") from None
        history, timing, start_epoch = ckpt["history"], ckpt["timing"], ckpt["epoch"]
        now = torch.get_num_threads()
        torch.set_num_threads(monitor.restore(ckpt.get("contention")))   # the first session's count
        if progress:
            changed = f", with {monitor.threads} thread(s) as in its first session (not {now})" \
                if monitor.threads != now else ""
            print(f"resuming from epoch {start_epoch} ({ckpt_path}){changed}", file=sys.stderr)
    # after the resume: the runner moves a restored lr tensor back onto the GPU
    runner = StepRunner(model, opt, sched, spec.clip_norm, device, mode=spec.graph, amp=amp,
                        compile=spec.compile)
    if progress and device.type == "cuda" and runner.reason and spec.graph == "auto":
        print(f"notice: training without a CUDA graph: {runner.reason}", file=sys.stderr)
    wall0 = time.perf_counter()
    timing["sessions"] += 1
    timing["warmup_s"] += warm_up(model, data, spec, device)

    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    # peaks per phase, each reset on entry: after the warm-up's model copy is gone and the
    # data are on the device (data_mb says how much of every peak they are)
    memory = PeakMemory(device)
    result = TrainResult(status="complete", history=history, timing=timing)
    monitor.sample()
    for epoch in range(start_epoch, spec.epochs):
        model.train()
        timer, gather = Timer(device), Timer(device)
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{spec.epochs}", unit="step",
                   disable=not progress, leave=False, file=sys.stderr, mininterval=0.5)
        memory.start("train")
        for i in bar:
            gather.start()
            idx = perm[i * b:(i + 1) * b]
            xb, yb = x_train[idx], y_train[idx]
            gather.stop()
            compiles = runner.will_compile(len(yb))
            if compiles or runner.will_capture(len(yb)):
                # compiling the step or capturing a graph is compile time: timed apart from
                # the training steps (a compiling step's own work is in compile_s too)
                sync(device)
                t0 = time.perf_counter()
                loss, corr = runner.step(xb, yb)
                sync(device)
                key = "compile_s" if compiles else "capture_s"
                timing[key] = timing.get(key, 0.0) + time.perf_counter() - t0
                if progress and runner.reason and spec.graph == "auto":
                    print(f"notice: training eagerly from now on: {runner.reason}", file=sys.stderr)
            else:
                timer.start()
                loss, corr = runner.step(xb, yb)
                timer.stop()
            loss_sum += loss.double() * len(yb)
            correct += corr
        memory.stop("train")
        bar.close()
        train_s, data_s = timer.total(), gather.total()
        train_loss = loss_sum.item() / n
        t0 = time.perf_counter()
        memory.start("eval")
        val_loss, val_acc = evaluate(model, x_val, y_val, device, amp) if len(y_val) \
            else (float("nan"), float("nan"))
        memory.stop("eval")
        sync(device)
        eval_s = time.perf_counter() - t0
        timing["train_s"] += train_s
        timing["data_s"] += data_s
        timing["eval_s"] += eval_s
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_acc": correct.item() / n,
                        "val_loss": val_loss, "val_acc": val_acc, "lr": current_lr(opt),
                        "train_s": train_s, "eval_s": eval_s, "data_s": data_s})
        if progress:
            print(f"epoch {epoch + 1}/{spec.epochs}  train loss {train_loss:.4f} "
                  f"acc {correct.item() / n:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  "
                  f"({train_s:.1f}s train, {eval_s:.1f}s eval)", file=sys.stderr)
        monitor.sample(epoch_times(history))
        if not math.isfinite(train_loss):
            result.status, result.diverged_epoch = "diverged", epoch + 1
            break
        now = time.perf_counter()
        timing["wall_s"] += now - wall0
        wall0, t0 = now, now
        save_checkpoint(ckpt_path, model, opt, sched, gen, spec, history, timing, epoch + 1, device,
                        monitor.state(), amp.scaler)
        timing["checkpoint_s"] += time.perf_counter() - t0
        if on_epoch is not None:
            on_epoch(dict(history[-1], epochs=spec.epochs))
        done = epoch + 1
        if done < spec.epochs and ((stop_after is not None and done >= stop_after)
                                   or (should_stop is not None and should_stop())):
            result.status = "interrupted"
            break
    timing["wall_s"] += time.perf_counter() - wall0
    if result.status == "complete":
        t0 = time.perf_counter()
        memory.start("eval")
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, device, amp)
        memory.stop("eval")
        timing["test_eval_s"] = time.perf_counter() - t0
        result.test = {"test_loss": test_loss, "test_acc": test_acc, "test_error": 1 - test_acc}
    timing.update(runner.record())
    result.memory = memory.record(tensor_mb(x_train, y_train, x_val, y_val),
                                  runner.pool_bytes / 2**20)
    monitor.sample(epoch_times(history))
    result.contention = monitor.summary(epoch_times(history))
    return result


def epoch_times(history: list[dict]) -> list[float]:
    return [h["train_s"] for h in history]


def save_checkpoint(path, model, opt, sched, gen, spec, history, timing, epoch, device,
                    contention, scaler=None) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "generator": gen.get_state(), "rng": rng_states(device),
             "spec": spec.to_dict(), "history": history, "timing": dict(timing), "epoch": epoch,
             "contention": contention}
    if scaler is not None:              # fp16's loss scale and its growth counter
        state["scaler"] = scaler.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
