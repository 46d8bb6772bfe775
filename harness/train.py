"""The training loop: seeding, optimizer and schedule, timing, evaluation, checkpoints.

Timing buckets are kept apart: `train_s` covers only the optimizer steps (forward,
backward, update; CUDA events on a GPU, synchronized at the end of the epoch),
`data_s` the batch gathering, `eval_s` validation/test passes, `warmup_s` an untimed
warm-up on a copy of the model (lazy initialization, allocator growth, cuDNN/cuFFT
plans for every batch shape used later), and `checkpoint_s` checkpoint writes.

Checkpoints are written atomically after every epoch and hold everything needed to
continue bit for bit on CPU: model, optimizer, scheduler, the shuffling generator,
the torch/numpy/python RNG states, the history and the accumulated timings.
"""

from __future__ import annotations

import copy
import io
import math
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import UserError
from harness.store import atomic_write

EVAL_BATCH = 1000
WARMUP_STEPS = 2
CHECKPOINT = "checkpoint.pt"


def resolve_device(name: str | None) -> torch.device:
    """'auto' (or None) picks CUDA when available; otherwise the named device, validated."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} does not exist: this machine has "
                        f"{torch.cuda.device_count()} GPU(s); use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def make_optimizer(spec, params, capturable: bool = False) -> torch.optim.Optimizer:
    """The spec's optimizer. `capturable` (for harness.graph.StepRunner): the lr is a
    device tensor that a CUDA graph reads at every replay, written by the scheduler from
    values it computes on the host exactly as for a float lr (`initial_lr` stays the float
    spec.lr); on CUDA the step also runs without host syncs."""
    params, lr, extra = list(params), spec.lr, {}
    if capturable:
        from harness.graph import capturable_options
        lr, extra = capturable_options(spec, params)
    if spec.optimizer == "rmsprop":
        # Keras defaults (rho 0.9, eps 1e-7), as in the CEMNet authors' code.
        opt = torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7, momentum=spec.momentum,
                                  weight_decay=spec.weight_decay, **extra)
    elif spec.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=spec.weight_decay, **extra)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=spec.momentum,
                              weight_decay=spec.weight_decay, **extra)
    if capturable:
        for group in opt.param_groups:
            group["initial_lr"] = spec.lr
    return opt


def lr_factor(step: int, total: int, warmup: int, schedule: str, floor: float) -> float:
    """Multiplier of the base lr at optimizer step `step` (linear warm-up, then cosine)."""
    if warmup and step < warmup:
        return step / warmup
    if schedule == "constant":
        return 1.0
    decay = max(1, total - warmup)
    progress = min(step - warmup, decay) / decay
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(spec, opt, steps_per_epoch: int):
    total = spec.epochs * steps_per_epoch
    warmup = int(round(spec.warmup_epochs * steps_per_epoch))
    floor = min(1.0, spec.lr_min / spec.lr)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, spec.schedule, floor))


class StepTimer:
    """Sums the duration of timed regions: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pairs: list = []
        self.cpu_total = 0.0

    def start(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.pairs.append([ev, None])
        else:
            self._t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.pairs[-1][1] = ev
        else:
            self.cpu_total += time.perf_counter() - self._t0

    def total(self) -> float:
        """Seconds timed so far (synchronizes the GPU once)."""
        if self.cuda:
            torch.cuda.synchronize()
            total = sum(a.elapsed_time(b) for a, b in self.pairs) / 1000.0
            self.pairs.clear()
            self.cpu_total += total
        return self.cpu_total


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model, x, y, device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over (x, y) in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for i in range(0, len(y), EVAL_BATCH):
        xb, yb = x[i:i + EVAL_BATCH].to(device), y[i:i + EVAL_BATCH].to(device)
        out = model(xb)
        loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(1, len(y))
    return loss_sum.item() / n, correct.item() / n


def train_step(model, opt, sched, xb, yb, clip_norm: float):
    """One optimizer step; returns (loss, number correct) as tensors (no host sync)."""
    opt.zero_grad(set_to_none=True)
    out = model(xb)
    loss = F.cross_entropy(out, yb)
    aux = model.auxiliary_loss() if hasattr(model, "auxiliary_loss") else None
    total = loss if aux is None else loss + aux
    total.backward()
    if clip_norm:
        for p in model.parameters():  # per tensor, as TF's clip_by_norm in the CEMNet code
            if p.grad is not None:
                torch.nn.utils.clip_grad_norm_([p], clip_norm)
    opt.step()
    sched.step()
    if hasattr(model, "after_optimizer_step"):
        model.after_optimizer_step()
    return loss.detach(), (out.detach().argmax(1) == yb).sum()


def warm_up(model, data, spec, device) -> float:
    """Untimed steps on a copy of the model, touching every batch shape used later.

    RNG states are forked so the real run is unaffected (resume equivalence holds).
    """
    t0 = time.perf_counter()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        m = copy.deepcopy(model)
        o = make_optimizer(spec, m.parameters())
        s = torch.optim.lr_scheduler.LambdaLR(o, lambda _: 1.0)
        n = len(data.y_train)
        b = min(spec.batch_size, n)
        shapes = [b] + ([n % b] if n % b > 1 else [])
        m.train()
        for size in shapes:
            xb, yb = data.x_train[:size].to(device), data.y_train[:size].to(device)
            for _ in range(WARMUP_STEPS):
                train_step(m, o, s, xb, yb, spec.clip_norm)
        evaluate(m, data.x_val[:EVAL_BATCH], data.y_val[:EVAL_BATCH], device)
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
    peak_memory_mb: float = 0.0
    memory_kind: str = ""


def peak_memory(device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    # ru_maxrss is in KiB on Linux: the peak resident set of the whole process
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def train(model, data, spec, device, run_dir: Path, progress: bool = True,
          stop_after: int | None = None, should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train `model` on `data` per `spec`, resuming from `run_dir/checkpoint.pt` if present.

    `stop_after` ends the call after that many epochs in total (for tests and
    time-sliced jobs); `should_stop()` is polled after every epoch (for preemption).
    Both leave a checkpoint and return status 'interrupted'.
    """
    from tqdm import tqdm

    if device.type == "cuda":
        torch.cuda.set_device(device)  # events, streams and synchronize() refer to this GPU
    model.to(device)
    n = len(data.y_train)
    if n < 2:
        raise UserError(f"the training split has {n} image(s); BatchNorm needs at least 2: "
                        f"use a larger --subset or a smaller val_size")
    b = min(spec.batch_size, n)
    steps = n // b + (1 if n % b > 1 else 0)   # a final batch of 1 would break BatchNorm
    opt = make_optimizer(spec, model.parameters())
    sched = make_scheduler(spec, opt, steps)
    gen = torch.Generator().manual_seed(spec.seed)
    history: list[dict] = []
    timing = {"train_s": 0.0, "data_s": 0.0, "eval_s": 0.0, "warmup_s": 0.0, "checkpoint_s": 0.0,
              "wall_s": 0.0, "sessions": 0}
    start_epoch = 0
    ckpt_path = Path(run_dir) / CHECKPOINT
    if ckpt_path.exists():
        # RNG states must stay CPU ByteTensors; load_state_dict moves the rest to the device
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["spec"] != spec.to_dict():
            raise UserError(f"checkpoint {ckpt_path} belongs to a different spec; "
                            f"delete it or pass --force")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        set_rng_states(ckpt["rng"])
        history, timing, start_epoch = ckpt["history"], ckpt["timing"], ckpt["epoch"]
        if progress:
            print(f"resuming from epoch {start_epoch} ({ckpt_path})", file=sys.stderr)
    wall0 = time.perf_counter()
    timing["sessions"] += 1
    timing["warmup_s"] += warm_up(model, data, spec, device)
    if device.type == "cuda":  # after the warm-up, whose model copy is not part of the run
        torch.cuda.reset_peak_memory_stats(device)

    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    result = TrainResult(status="complete", history=history, timing=timing)
    for epoch in range(start_epoch, spec.epochs):
        model.train()
        timer = StepTimer(device)
        data_s = 0.0
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{spec.epochs}", unit="step",
                   disable=not progress, leave=False, file=sys.stderr, mininterval=0.5)
        for i in bar:
            t0 = time.perf_counter()
            idx = perm[i * b:(i + 1) * b]
            xb, yb = x_train[idx], y_train[idx]
            data_s += time.perf_counter() - t0
            timer.start()
            loss, corr = train_step(model, opt, sched, xb, yb, spec.clip_norm)
            timer.stop()
            loss_sum += loss.double() * len(yb)
            correct += corr
            if progress and i % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        train_s = timer.total()
        train_loss = loss_sum.item() / n
        t0 = time.perf_counter()
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val, device) if len(data.y_val) \
            else (float("nan"), float("nan"))
        sync(device)
        eval_s = time.perf_counter() - t0
        timing["train_s"] += train_s
        timing["data_s"] += data_s
        timing["eval_s"] += eval_s
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_acc": correct.item() / n,
                        "val_loss": val_loss, "val_acc": val_acc, "lr": opt.param_groups[0]["lr"],
                        "train_s": train_s, "eval_s": eval_s, "data_s": data_s})
        if progress:
            print(f"epoch {epoch + 1}/{spec.epochs}  train loss {train_loss:.4f} "
                  f"acc {correct.item() / n:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  "
                  f"({train_s:.1f}s train, {eval_s:.1f}s eval)", file=sys.stderr)
        if not math.isfinite(train_loss):
            result.status, result.diverged_epoch = "diverged", epoch + 1
            break
        now = time.perf_counter()
        timing["wall_s"] += now - wall0
        wall0, t0 = now, now
        save_checkpoint(ckpt_path, model, opt, sched, gen, spec, history, timing, epoch + 1)
        timing["checkpoint_s"] += time.perf_counter() - t0
        done = epoch + 1
        if done < spec.epochs and ((stop_after is not None and done >= stop_after)
                                   or (should_stop is not None and should_stop())):
            result.status = "interrupted"
            break
    timing["wall_s"] += time.perf_counter() - wall0
    if result.status == "complete":
        t0 = time.perf_counter()
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, device)
        timing["test_eval_s"] = time.perf_counter() - t0
        result.test = {"test_loss": test_loss, "test_acc": test_acc, "test_error": 1 - test_acc}
    result.peak_memory_mb, result.memory_kind = peak_memory(device)
    return result


def save_checkpoint(path, model, opt, sched, gen, spec, history, timing, epoch) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "generator": gen.get_state(), "rng": rng_states(),
             "spec": spec.to_dict(), "history": history, "timing": dict(timing), "epoch": epoch}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
