"""The training step as a CUDA graph: capture once, replay every step (issue 14).

At batch 100 a GPU step of these small networks is mostly kernel-launch overhead. A
`StepRunner` runs `harness.train.train_step` with the same semantics, either eagerly or,
on CUDA, by capturing forward + loss (+ `auxiliary_loss()`) + backward + per-tensor
gradient clipping + optimizer step + `after_optimizer_step()` in one `torch.cuda.CUDAGraph`
and replaying it:

- the batch is copied into static input buffers (one per batch size: the final short
  batch of an epoch gets its own graph);
- the learning rate lives in a device tensor (`make_optimizer(..., capturable=True)`), and
  the scheduler, which runs on the host after every replay as in eager mode, writes each
  new value into it, so the captured step follows the cosine/warm-up schedule exactly;
- random numbers (dropout, CEMNet's multiplicative noise, Gumbel gates, frequency dropout)
  come from the default CUDA generator, which `torch.cuda.graph` registers with the graph:
  every replay draws fresh numbers (Philox offsets advance per replay);
- the first `warmup` steps of every batch shape run eagerly on a side stream (they are real
  training steps, not discarded), so lazily built state (optimizer moments, cached DFT
  matrices, cuFFT plans, DCT statistics fitted on the first batch) exists before capture.

Modes (`GRAPH_MODES`): "off" = eager; "on" = graph, or an error naming why capture is not
possible; "auto" = graph on CUDA when the capture succeeds, else eager with a one-line
reason. `StepRunner.mode` / `.reason` are what the run record stores as
`timing.step_mode` / `timing.step_mode_reason`. Evaluation is not captured (it runs eager).

`capture_hazards` finds, on any device (a CPU is enough), the operations of a model's
training step that cannot be captured: host synchronizations (`.item()`, `bool(t)`,
`nonzero`), tensors built from Python data or on the default device, host<->device copies
and float64 constants cast per call. tests/test_capturable.py runs it on every
registered (method, arch).
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from harness.errors import UserError

GRAPH_MODES = ("auto", "on", "off")
WARMUP_STEPS = 3   # eager steps per batch shape before capture (the PyTorch docs use 3)


def check_mode(mode: str) -> str:
    if mode not in GRAPH_MODES:
        raise UserError(f"bad graph mode {mode!r}; use one of {', '.join(GRAPH_MODES)} "
                        f"(e.g. --set graph=auto)")
    return mode


# --------------------------------------------------------------------------- hazards
# Dispatcher-level ops that synchronize with the host or whose output shape depends on
# tensor values (both impossible inside a CUDA graph).
_SYNC_OPS = {"_local_scalar_dense": "host sync (.item(), bool(t), float(t) or int(t))",
             "item": "host sync (.item())"}
_DATA_DEPENDENT_OPS = {"nonzero", "nonzero_static", "masked_select", "unique_dim",
                       "_unique", "_unique2", "unique_consecutive", "bincount", "histc",
                       "repeat_interleave", "argwhere", "nonzero_numpy"}
_HOST_DATA_OPS = {"lift_fresh", "lift_fresh_copy"}     # torch.tensor(...), from_numpy(...)
_FACTORY_OPS = {"arange", "zeros", "ones", "full", "empty", "empty_strided", "scalar_tensor",
                "linspace", "logspace", "eye", "rand", "randn", "randint", "randperm",
                "normal", "tril_indices", "triu_indices", "polar", "complex"}
_WIDE = (torch.float64, torch.complex128)
_NARROW = (torch.float32, torch.complex64, torch.float16, torch.bfloat16, torch.complex32)
# Python-level factory functions that place their result on the *default* device unless
# given `device=`: on CUDA that is a CPU tensor, then a copy.
_FACTORY_FUNCTIONS = {"tensor", "as_tensor", "from_numpy", "arange", "zeros", "ones", "full",
                      "empty", "empty_strided", "rand", "randn", "randint", "randperm",
                      "linspace", "logspace", "eye", "scalar_tensor", "tril_indices",
                      "triu_indices"}
_HOST_METHODS = {"cpu": "a device->host copy (.cpu())", "numpy": "a host copy (.numpy())",
                 "tolist": "a host copy (.tolist())"}


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


class _DispatchProbe(TorchDispatchMode):
    def __init__(self, found: Counter):
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in _SYNC_OPS:
            self.found[f"aten.{name}: {_SYNC_OPS[name]}"] += 1
        elif name in _DATA_DEPENDENT_OPS:
            self.found[f"aten.{name}: output shape depends on tensor values (host sync)"] += 1
        elif name in _HOST_DATA_OPS:
            self.found[f"aten.{name}: a tensor built from Python/numpy data per call "
                       f"(a host->device copy on CUDA)"] += 1
        elif name in ("_to_copy", "copy_", "copy", "_copy_from", "_copy_from_and_resize"):
            ins = list(_tensors(args[:1] if name == "_to_copy" else args[1:2] or args[:1]))
            dst = list(_tensors(out if name == "_to_copy" else args[:1]))
            if ins and dst:
                src, d = ins[0], dst[0]
                if src.device != d.device:
                    self.found[f"aten.{name}: copy {src.device} -> {d.device}"] += 1
                elif src.dtype in _WIDE and d.dtype in _NARROW:
                    self.found[f"aten.{name}: a {src.dtype} tensor cast to {d.dtype} per call "
                               f"(a float64 constant rebuilt every step? cache it)"] += 1
        elif name in _FACTORY_OPS:
            for t in _tensors(out):
                if t.dtype in _WIDE:
                    self.found[f"aten.{name}: a {t.dtype} tensor built per call "
                               f"(cache constants in the compute dtype)"] += 1
                    break
        return out


class _FunctionProbe(TorchFunctionMode):
    def __init__(self, found: Counter):
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__qualname__", "")
        if name in _HOST_METHODS and owner.startswith(("TensorBase.", "Tensor.")):
            self.found[f"Tensor.{name}: {_HOST_METHODS[name]}"] += 1
        elif name in _FACTORY_FUNCTIONS and not owner.startswith(("TensorBase.", "Tensor.")) \
                and kwargs.get("device") is None:
            self.found[f"torch.{name} without device=: the tensor lands on the default "
                       f"device (the CPU) and needs a copy to the GPU"] += 1
        return func(*args, **kwargs)


def capture_hazards(model, xb: torch.Tensor, yb: torch.Tensor, *, warmup: int = 1) -> list[str]:
    """What in `model`'s training step would break CUDA-graph capture, as readable lines
    with counts (empty: nothing found).

    Runs the training step's model part (forward, cross-entropy, `auxiliary_loss()`,
    backward, `after_optimizer_step()`) `warmup` times eagerly, so that caches and lazily
    fitted state exist as they do before a capture, then once under a dispatch probe and a
    torch-function probe. The optimizer itself is torch's (capturable) and is not probed.
    Works on CPU: cross-device copies are then invisible, but tensors created without
    `device=`, host syncs and per-call float64 constants are found all the same.
    Gradients accumulate in `model`; its weights change only by `after_optimizer_step()`.
    """
    model.train()

    def step():
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        aux = model.auxiliary_loss() if hasattr(model, "auxiliary_loss") else None
        (loss if aux is None else loss + aux).backward()
        if hasattr(model, "after_optimizer_step"):
            model.after_optimizer_step()

    for _ in range(warmup):
        step()
    found: Counter = Counter()
    with _FunctionProbe(found), _DispatchProbe(found):
        step()
    return [f"{what} (x{n})" for what, n in sorted(found.items())]
