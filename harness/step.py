"""One optimizer step, and the optimizer and lr schedule it uses.

`train_step` is the unit of training: forward, cross-entropy (+ the model's
`auxiliary_loss()`), backward, per-tensor gradient clipping, optimizer step, scheduler
step, `after_optimizer_step()`. The training loop (`harness.train`) runs it through
`harness.graph.StepRunner`, which is this function eagerly, or the same step captured in a
CUDA graph and replayed; the step benchmark (`measure.steps`) times it. Both import it
from here, so neither depends on the other.

Recipe (RunSpec defaults, the CEMNet paper's): RMSprop with Keras' rho 0.9 and eps 1e-7,
cosine decay per step to `lr_min`, optional linear warm-up; Adam and SGD for comparison.
`make_optimizer(capturable=True)` keeps the lr in a device tensor, which a captured
graph reads at every replay (`capturable_lr`); SGD keeps a float lr (it has no
capturable step in torch 2.13).

Mixed precision (`--set precision=bf16|fp16`, harness/device.py): `Amp` runs the forward
pass and the loss under `torch.autocast`; for fp16 it also scales the loss
(`torch.amp.GradScaler`: the gradients are unscaled before clipping, and a step whose
gradients overflowed is skipped and the scale lowered). Compile mode (`--set
compile=on`): `compiled` is the model's forward and backward compiled by
`torch.compile`, which `train_step` calls like the model.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from harness.device import AUTOCAST

# torch 2.13 optimizers whose step can read a device-tensor lr without a host sync
CAPTURABLE_OPTIMIZERS = ("rmsprop", "adam")


def make_optimizer(spec, params, capturable: bool = False,
                   device_type: str | None = None) -> torch.optim.Optimizer:
    """The spec's optimizer. `capturable` (for harness.graph.StepRunner): the lr is a
    device tensor that a CUDA graph reads at every replay, written by the scheduler from
    values it computes on the host exactly as for a float lr (`initial_lr` stays the float
    spec.lr); on CUDA the step also runs without host syncs. Only the optimizers in
    CAPTURABLE_OPTIMIZERS get a tensor lr: torch 2.13's SGD would read it back on the host
    at every step, so SGD keeps its float lr and runs eagerly under every graph mode.
    `device_type`: the device the options are for (default: the parameters'); the CPU
    probe `harness.hazards.host_syncs` builds a CUDA run's optimizer with "cuda"."""
    params, lr, extra = list(params), spec.lr, {}
    device_type = device_type or _device_of(params).type
    if device_type == "cuda":
        extra["foreach"] = True      # torch's default on CUDA, explicit for the CPU probe
    capturable = capturable and spec.optimizer in CAPTURABLE_OPTIMIZERS
    if capturable:
        lr = capturable_lr(spec, params)
        if device_type == "cuda":
            extra["capturable"] = True
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


def _device_of(params: list) -> torch.device:
    p = next((q for q in params if q.is_floating_point() or q.is_complex()), None)
    return p.device if p is not None else torch.device("cpu")


def capturable_lr(spec, params: list) -> torch.Tensor:
    """The lr of `make_optimizer(capturable=True)`: a 0-dim tensor on the parameters'
    device, in their real dtype (the precision the eager step's kernels use for a float
    lr); `make_optimizer` then sets each group's `initial_lr` to the float spec.lr, so the
    scheduler computes every value on the host in double, exactly as in eager mode, and
    writes it into the tensor. On CUDA, RMSprop and Adam also get capturable=True: their
    step then keeps the step counters on the device and never reads the lr on the host."""
    p = next((q for q in params if q.is_floating_point() or q.is_complex()), None)
    dtype = p.dtype.to_real() if p is not None else torch.float32
    return torch.tensor(float(spec.lr), dtype=dtype, device=_device_of(params))


class Amp:
    """The mixed precision of a step for a precision policy: `autocast()` is the context of
    the forward pass and the loss (a no-op for fp32 and tf32); `scaler` is a GradScaler for
    fp16, else None. The autocast cache is off: each weight is cast once per forward
    anyway, and a CUDA graph must not capture cached casts (PyTorch's CUDA-graph notes)."""

    def __init__(self, policy: str, device_type: str):
        self.policy, self.device_type = policy, device_type
        self.dtype = AUTOCAST.get(policy)
        self.scaler = torch.amp.GradScaler(device_type) if policy == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False)


def compiled(model):
    """`model` compiled by torch.compile (inductor) for the training step: its forward and,
    through AOTAutograd, its backward; a callable that shares the model's parameters and
    forwards attribute reads (auxiliary_loss, after_optimizer_step) to it. Static shapes:
    each batch size compiles its own graph once (the epoch's short last batch too) instead
    of recompiling for dynamic shapes. The model itself stays uncompiled (checkpoints,
    copies, evaluation and the op counts use it)."""
    return torch.compile(model, dynamic=False)


def train_step(model, opt, sched, xb, yb, clip_norm: float, amp: Amp | None = None):
    """One optimizer step; returns (loss, number correct) as tensors (no host sync on a GPU
    except fp16's GradScaler, which reads whether the gradients overflowed). `model` may
    be `compiled(model)`; `amp`: the mixed precision (None: none)."""
    opt.zero_grad(set_to_none=True)
    scaler = amp.scaler if amp is not None else None
    with amp.autocast() if amp is not None else contextlib.nullcontext():
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        aux = model.auxiliary_loss() if hasattr(model, "auxiliary_loss") else None
        total = loss if aux is None else loss + aux
    (scaler.scale(total) if scaler else total).backward()
    if clip_norm:
        if scaler:
            scaler.unscale_(opt)          # clip the true gradients, not the scaled ones
        for p in model.parameters():  # per tensor, as TF's clip_by_norm in the CEMNet code
            if p.grad is not None:
                torch.nn.utils.clip_grad_norm_([p], clip_norm)
    if scaler:
        scaler.step(opt)                  # skipped when the gradients overflowed
        scaler.update()
    else:
        opt.step()
    sched.step()
    if hasattr(model, "after_optimizer_step"):
        model.after_optimizer_step()
    return loss.detach(), (out.detach().argmax(1) == yb).sum()
