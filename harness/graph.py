"""The training step as a CUDA graph: capture once, replay every step (issue 14).

At batch 100 a GPU step of these small networks is mostly kernel-launch overhead. A
`StepRunner` runs `harness.step.train_step` with the same semantics, either eagerly or,
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
from harness import step as steps      # steps.train_step: one place to wrap every step

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


# --------------------------------------------------------------------------- optimizer
def current_lr(opt) -> float:
    """The first group's lr as a float (a host sync if it is a device tensor)."""
    lr = opt.param_groups[0]["lr"]
    return float(lr)


def _not_capturable(opt, device: torch.device) -> str:
    """Why `opt` cannot run inside a CUDA graph ('' when it can)."""
    for group in opt.param_groups:
        lr = group["lr"]
        if not (isinstance(lr, torch.Tensor) and lr.device == device):
            return ("the optimizer's lr is not a device tensor (make it with "
                    "make_optimizer(..., capturable=True))")
        if not group.get("capturable", False):
            name = type(opt).__name__
            if isinstance(opt, torch.optim.SGD):
                return (f"torch {torch.__version__.split('+')[0]}'s {name} has no capturable "
                        f"step (its update reads the lr on the host); use optimizer=rmsprop "
                        f"or adam")
            return (f"the {name} optimizer was not made capturable (make_optimizer(..., "
                    f"capturable=True) after the model is on the GPU)")
    return ""


def _pin_lr(opt, device: torch.device) -> None:
    """After `opt.load_state_dict` (a checkpoint read on the CPU) the group's lr tensor may
    be a host tensor: put it back on `device` (the graph must read it there)."""
    for group in opt.param_groups:
        lr = group["lr"]
        if isinstance(lr, torch.Tensor) and lr.device != device:
            group["lr"] = lr.to(device)


# --------------------------------------------------------------------------- the runner
class StepRunner:
    """`harness.step.train_step`, eagerly or replayed from a CUDA graph (module docstring).

    `step(xb, yb)` returns (loss, number correct) as device tensors, like `train_step`
    (copies: a later replay does not change them). `mode` is "graph" or "eager" and
    `reason` says why eager ('' for graph); `record()` gives both for the run record.
    In "eager" mode `step` *is* `train_step` (bit for bit). The model must stay in training
    mode while it steps; evaluation is the caller's, eager.
    """

    def __init__(self, model, opt, sched, clip_norm: float, device, mode: str = "auto",
                 warmup: int = WARMUP_STEPS):
        self.model, self.opt, self.sched, self.clip_norm = model, opt, sched, clip_norm
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.requested = check_mode(mode)
        self.warmup = int(warmup)
        self._graphs: dict[int, tuple] = {}
        self._seen: Counter = Counter()
        self._pool = None
        self._stream = None
        self.reason = ""
        if mode == "off":
            self.reason = "graph=off"
        elif self.device.type != "cuda":
            self.reason = f"CUDA graphs need a CUDA device; this run is on {self.device.type}"
        else:
            _pin_lr(opt, self.device)
            self.reason = _not_capturable(opt, self.device)
        if self.reason and mode == "on":
            raise UserError(f"graph=on: {self.reason}; use --set graph=auto or off")
        self.use_graph = not self.reason

    # -- state for the run record
    @property
    def mode(self) -> str:
        return "graph" if self.use_graph else "eager"

    def record(self) -> dict:
        """{"step_mode", "step_mode_reason"}: what the steps so far ran as (the run
        record's `timing.step_mode` / `timing.step_mode_reason`)."""
        if not self.use_graph:
            return {"step_mode": "eager", "step_mode_reason": self.reason}
        if not self._graphs:
            return {"step_mode": "eager", "step_mode_reason":
                    f"no graph captured yet: the first {self.warmup} steps of each batch "
                    f"size run eagerly"}
        return {"step_mode": "graph", "step_mode_reason": ""}

    def will_capture(self, n: int) -> bool:
        """Whether the next step of batch size `n` captures a graph (compile time, which
        the training loop times apart from the steps)."""
        return self.use_graph and n not in self._graphs and self._seen[n] >= self.warmup

    # -- the step
    def step(self, xb: torch.Tensor, yb: torch.Tensor):
        if not self.use_graph:
            return steps.train_step(self.model, self.opt, self.sched, xb, yb, self.clip_norm)
        if not self.model.training:
            raise RuntimeError("StepRunner.step needs the model in training mode")
        n = len(yb)
        rec = self._graphs.get(n)
        if rec is None:
            self._seen[n] += 1
            if self._seen[n] <= self.warmup:
                out = self._warmup_step(xb, yb)
                self.sched.step()
                return out
            rec = self._capture(xb, yb)
            if rec is None:                        # auto mode fell back to eager
                return steps.train_step(self.model, self.opt, self.sched, xb, yb, self.clip_norm)
        else:
            rec[1].copy_(xb)
            rec[2].copy_(yb)
        rec[0].replay()
        self.sched.step()
        return rec[3].clone(), rec[4].clone()

    def _body(self, xb, yb):
        """train_step without the scheduler, keeping the .grad tensors (zeroed, not freed):
        a captured graph writes the gradients where it found them at capture."""
        model, opt = self.model, self.opt
        opt.zero_grad(set_to_none=False)
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        aux = model.auxiliary_loss() if hasattr(model, "auxiliary_loss") else None
        (loss if aux is None else loss + aux).backward()
        if self.clip_norm:
            for p in model.parameters():      # per tensor, as train_step
                if p.grad is not None:
                    torch.nn.utils.clip_grad_norm_([p], self.clip_norm)
        opt.step()
        if hasattr(model, "after_optimizer_step"):
            model.after_optimizer_step()
        return loss.detach(), (out.detach().argmax(1) == yb).sum()

    def _warmup_step(self, xb, yb):
        """A real training step, eager, on a side stream (PyTorch's recipe before capture:
        lazily created state, cuFFT plans and cuBLAS workspaces are made outside it)."""
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        main = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(main)
        with torch.cuda.stream(self._stream):
            loss, correct = self._body(xb, yb)
        main.wait_stream(self._stream)
        return loss.clone(), correct.clone()

    def _capture(self, xb, yb):
        """Capture the step for this batch size (static inputs filled from this batch);
        None if it fails in auto mode (the runner then stays eager)."""
        static_x, static_y = xb.clone(), yb.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                loss, correct = self._body(static_x, static_y)
        except Exception as exc:  # noqa: BLE001 - any capture failure means "run eagerly"
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            reason = f"capture failed: {type(exc).__name__}: {first}"
            try:
                torch.cuda.synchronize(self.device)
            except Exception:  # noqa: BLE001 - the reason above is what matters
                pass
            if self.requested == "on":
                raise UserError(f"graph=on: {reason}; use --set graph=auto or off") from exc
            self.use_graph, self.reason, self._graphs = False, reason, {}
            return None
        if self._pool is None:
            self._pool = graph.pool()      # later batch sizes share the memory pool
        rec = (graph, static_x, static_y, loss, correct)
        self._graphs[len(yb)] = rec
        return rec
