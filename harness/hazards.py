"""What in a training step would break a CUDA graph or make the host wait for the GPU,
found on any device (a CPU is enough).

- `capture_hazards(model, xb, yb)`: the model's part of the step (forward, cross-entropy,
  `auxiliary_loss()`, backward, `after_optimizer_step()`): host synchronizations
  (`.item()`, `bool(t)`, `nonzero`), tensors built from Python data or on the default
  device, host<->device copies, float64 constants cast per call, Python state that the
  step changes (a graph replays the value it saw at capture) and tensor attributes that
  are neither parameters nor buffers (`.to(device)` leaves them on the CPU: a 0-dim one is
  baked into a captured graph as a constant, a larger one is on the wrong device).
- `host_syncs(model, spec, xb, yb)`: the host synchronizations of one full training step
  (`harness.step.train_step`, optimizer and scheduler included) with every optimizer as
  a CUDA run builds it under every graph mode.

Both run the step under a dispatcher-level and a torch-function-level probe. On a CPU,
cross-device copies are invisible, and a CUDA kernel that synchronizes internally, cuFFT
and cuDNN plans created during capture, the graph's memory pool and its speed cannot be
seen at all: only a GPU run confirms those (docs/gpu.md lists them).
"""

from __future__ import annotations

import contextlib
import importlib
from collections import Counter
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from harness.step import make_optimizer, make_scheduler, train_step

# Dispatcher-level ops that synchronize with the host or whose output shape depends on
# tensor values (both impossible inside a CUDA graph).
_SYNC_OPS = {"_local_scalar_dense": "host sync (.item(), bool(t), float(t) or int(t))",
             "item": "host sync (.item())", "is_nonzero": "host sync (bool(t))"}
_DATA_DEPENDENT_OPS = {"nonzero", "nonzero_static", "masked_select", "unique_dim",
                       "_unique", "_unique2", "unique_consecutive", "bincount", "histc",
                       "repeat_interleave", "argwhere", "nonzero_numpy"}
_HOST_DATA_OPS = {"lift_fresh", "lift_fresh_copy"}     # torch.tensor(...), from_numpy(...)
_FACTORY_OPS = {"arange", "zeros", "ones", "full", "empty", "empty_strided", "scalar_tensor",
                "linspace", "logspace", "eye", "rand", "randn", "randint", "randperm",
                "normal", "tril_indices", "triu_indices", "polar", "complex"}
_COPY_OPS = ("_to_copy", "copy_", "copy", "_copy_from", "_copy_from_and_resize")
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
# nn.Module's own attributes (hook tables, parameter and buffer dicts, the mode flag)
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_SCALARS = (bool, int, float, str, type(None))


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
    """Counts, per readable line, the dispatcher-level hazards of the ops run under it.

    `syncs_only`: only host synchronizations (`host_syncs`). `host_side(t)`: tensors that
    a CUDA run keeps on the host on purpose (reading them waits for nothing). `strays`:
    the tensor attributes that `.to(device)` would leave on the CPU (`_stray_tensors`).
    """

    def __init__(self, found: Counter, *, syncs_only: bool = False, host_side=None,
                 strays: dict | None = None):
        super().__init__()
        self.found, self.syncs_only = found, syncs_only
        self.host_side = host_side or (lambda t: False)
        self.strays = strays or {}
        self.label = ""          # prefixed to what is found (e.g. which optimizer ran)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        where = f"{self.label}: " if self.label else ""
        if name in _SYNC_OPS:
            if not any(self.host_side(t) for t in _tensors(args)):
                self.found[f"{where}aten.{name}: {_SYNC_OPS[name]}"] += 1
        elif name in _DATA_DEPENDENT_OPS:
            self.found[f"{where}aten.{name}: output shape depends on tensor values "
                       f"(host sync)"] += 1
        elif not self.syncs_only:
            self._other(name, args, out)
        return out

    def _other(self, name, args, out):
        for t in _tensors(args):
            if id(t) not in self.strays:
                continue
            where = self.strays[id(t)][1]
            if t.dim() == 0:
                self.found[f"aten.{name}: reads {where}, a 0-dim tensor that is not a buffer: "
                           f".to(device) leaves it on the CPU, and a CUDA graph bakes its "
                           f"value in at capture (register_buffer)"] += 1
            else:
                self.found[f"aten.{name}: reads {where}, a tensor that is not a buffer: "
                           f".to(device) leaves it on the CPU (register_buffer)"] += 1
        if name in _HOST_DATA_OPS:
            self.found[f"aten.{name}: a tensor built from Python/numpy data per call "
                       f"(a host->device copy on CUDA)"] += 1
        elif name in _COPY_OPS:
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


# --------------------------------------------------------------------------- the model
def _python_state(model: nn.Module) -> dict:
    """'module.attr' -> value of every plain Python value a module holds (numbers,
    strings, flags; a container by its length): what a captured graph cannot update."""
    state = {}
    for path, module in model.named_modules():
        for key, value in vars(module).items():
            if key in _MODULE_INTERNALS:
                continue
            name = f"{path}.{key}" if path else key
            if isinstance(value, _SCALARS):
                state[name] = value
            elif isinstance(value, (list, tuple, dict, set)):
                flat = list(value.values()) if isinstance(value, dict) else list(value)
                state[name] = tuple(flat) if all(isinstance(v, _SCALARS) for v in flat) \
                    else ("length", len(flat))
    return state


def _stray_tensors(model: nn.Module) -> dict[int, tuple]:
    """id -> (tensor, 'module.attr') of the tensors a model holds outside its parameters and
    buffers, as built (before any step: caches built lazily from the input are on its
    device; holding the tensors keeps their ids unique). `model.to(device)` moves only
    parameters and buffers, unless a module moves its own tensors (it overrides `_apply`)."""
    strays = {}
    for path, module in model.named_modules():
        if type(module)._apply is not nn.Module._apply:
            continue
        for key, value in vars(module).items():
            if key in _MODULE_INTERNALS:
                continue
            for t in _tensors(value):
                if not isinstance(t, nn.Parameter):
                    strays[id(t)] = (t, f"{path}.{key}" if path else key)
    return strays


def _model_step(model, xb, yb) -> None:
    out = model(xb)
    loss = F.cross_entropy(out, yb)
    aux = model.auxiliary_loss() if hasattr(model, "auxiliary_loss") else None
    (loss if aux is None else loss + aux).backward()
    if hasattr(model, "after_optimizer_step"):
        model.after_optimizer_step()


def capture_hazards(model, xb: torch.Tensor, yb: torch.Tensor, *, warmup: int = 1) -> list[str]:
    """What in `model`'s training step would break CUDA-graph capture, as readable lines
    with counts (empty: nothing found).

    Runs the training step's model part (forward, cross-entropy, `auxiliary_loss()`,
    backward, `after_optimizer_step()`) `warmup` times eagerly, so that caches and lazily
    fitted state exist as they do before a capture, then once under the probes, comparing
    the model's plain Python values before and after it. The optimizer part of the step
    is `host_syncs`'s. Gradients accumulate in `model`; its weights change only by
    `after_optimizer_step()`.
    """
    model.train()
    strays = _stray_tensors(model)
    for _ in range(warmup):
        _model_step(model, xb, yb)
    found: Counter = Counter()
    before = _python_state(model)
    with _FunctionProbe(found), _DispatchProbe(found, strays=strays):
        _model_step(model, xb, yb)
    after = _python_state(model)
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            found[f"Python attribute {name} changed in the step ({before.get(name)!r} -> "
                  f"{after.get(name)!r}): a CUDA graph replays what it saw at capture (keep "
                  f"step state in a device tensor)"] += 1
    return [f"{what} (x{n})" for what, n in sorted(found.items())]


# --------------------------------------------------------------------------- the whole step
@contextlib.contextmanager
def _capturable_paths_on_the_cpu():
    """torch checks that a capturable optimizer's tensors are on a GPU; the probe runs the
    same (device-independent) tensor code on CPU tensors, so the check admits the CPU."""
    def devices(*args, **kwargs):
        return ["cuda", "cpu"]

    with contextlib.ExitStack() as stack:
        for name in ("torch.optim.rmsprop", "torch.optim.adam"):
            stack.enter_context(mock.patch.object(importlib.import_module(name),
                                                  "_get_capturable_supported_devices", devices))
        yield


class _EveryOptimizer:
    """The optimizer part of a training step as every configuration in turn: `step()`
    steps each configuration's fresh optimizer and scheduler twice (the first step creates
    the optimizer's state, the second is a step like every later one) under the
    configuration's label in the probe, and drops them (one optimizer's state in memory
    at a time)."""

    def __init__(self, model, configs: dict, probe: _DispatchProbe):
        self.model, self.configs, self.probe = model, configs, probe

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.model.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for label in list(self.configs):
            opt, sched = self.configs.pop(label)
            self.probe.label = label
            self.probe.host_side = _host_side(opt)
            for _ in range(2):
                opt.step()
                sched.step()
            del opt, sched
        self.probe.label, self.probe.host_side = "", _host_side(None)


class _NoScheduler:
    def step(self) -> None:
        pass


def _host_side(opt):
    """Whether a tensor is one of `opt`'s step counters that torch keeps on the host."""
    def check(t: torch.Tensor) -> bool:
        return opt is not None and any(
            group.get("capturable") is not True
            and any(opt.state.get(p, {}).get("step") is t for p in group["params"])
            for group in opt.param_groups)
    return check


def host_syncs(model, spec, xb: torch.Tensor, yb: torch.Tensor, *,
               optimizers=("rmsprop", "adam", "sgd")) -> list[str]:
    """Host synchronizations in one full training step (`harness.step.train_step`:
    forward, loss, backward, clipping by `spec.clip_norm`, optimizer step, scheduler step,
    `after_optimizer_step()`), as readable lines with counts (empty: none).

    The step's optimizer part is that of every optimizer in `optimizers` (with `spec`'s
    other settings) as a CUDA run builds it under each graph mode, in turn
    (`make_optimizer(..., device_type="cuda")`: auto and on build the same optimizer, with
    a device-tensor lr, capturable where torch has it; off the eager one), each fresh and
    stepped twice (`_EveryOptimizer`); its lines name the optimizer and graph mode. Reads
    of an optimizer's step counters are not counted where torch keeps them on the host
    (non-capturable optimizers on CUDA do: reading them waits for nothing). Warm the
    model up first (`capture_hazards` does): lazily built state is made in a first step.
    Trains `model`.
    """
    model.train()
    found: Counter = Counter()
    probe = _DispatchProbe(found, syncs_only=True)
    configs = {}      # built before the probe, like a run's optimizer before its steps
    for name in optimizers:
        for graph, capturable in (("auto/on", True), ("off", False)):
            opt = make_optimizer(spec.replace(optimizer=name), model.parameters(),
                                 capturable=capturable, device_type="cuda")
            configs[f"optimizer={name} graph={graph}"] = (opt, make_scheduler(spec, opt, 10 ** 6))
    with _capturable_paths_on_the_cpu(), probe:
        train_step(model, _EveryOptimizer(model, configs, probe), _NoScheduler(), xb, yb,
                   spec.clip_norm)
    return [f"{what} (x{n})" for what, n in sorted(found.items())]
