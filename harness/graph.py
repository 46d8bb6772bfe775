"""The training step as a CUDA graph: capture once, replay every step (issue 14).

A GPU step of these small networks at batch 100 launches many short kernels; replaying
it from a CUDA graph is expected to remove most of the per-kernel launch cost (to be
measured: `python -m measure.steps --device cuda`, issue 23's GPU run). A `StepRunner`
runs `harness.step.train_step` with the same semantics, either eagerly or, on CUDA, by
capturing forward + loss (+ `auxiliary_loss()`) + backward + per-tensor gradient clipping
+ optimizer step + `after_optimizer_step()` in one `torch.cuda.CUDAGraph` and replaying it:

- the batch is copied into static input buffers (one per batch size: the final short
  batch of an epoch gets its own graph; all graphs share one memory pool);
- the learning rate lives in a device tensor (`make_optimizer(..., capturable=True)`), and
  the scheduler, which runs on the host after every replay as in eager mode, writes each
  new value into it, so the captured step follows the cosine/warm-up schedule exactly;
- random numbers (dropout, CEMNet's multiplicative noise, Gumbel gates, frequency dropout)
  come from the default CUDA generator, which the capture registers with the graph:
  every replay draws fresh numbers (Philox offsets advance per replay);
- the first `warmup` steps of every batch shape run eagerly on a side stream (they are real
  training steps, not discarded), so lazily built state (optimizer moments, cached DFT
  matrices, cuFFT plans, DCT statistics fitted on the first batch) exists before capture.

A capture that fails (an illegal host sync, say) records its *first* error as the reason
(not the secondary error that ending an invalidated capture raises), leaves the current
stream as it was, and gives the graph's memory pool back. `pool_bytes` is the memory the
captures reserved for the graphs' private pool: the allocator's `max_memory_allocated`
does not see what replays use there.

Modes (`GRAPH_MODES`): "off" = eager; "on" = graph, or an error naming why capture is not
possible; "auto" = graph on CUDA when the capture succeeds, else eager with a one-line
reason. Two settings never capture, named as the reason (and refused with graph=on when
the spec is made, harness/spec.py): compile=on (the step is `harness.step.compiled`,
which inductor may run with its own CUDA graphs; capturing a compiled step in ours is an
untested combination, so it is not done) and precision=fp16 (the GradScaler reads on
the host whether the gradients overflowed, at every step). Under compile=on the first
step of every batch size compiles (`will_compile`), and the training loop times it apart
(`timing.compile_s`), as it times a capture apart. `StepRunner.mode` / `.reason` are what
the run record stores as `timing.step_mode` / `timing.step_mode_reason`. Evaluation is
not captured (it runs eager). What a CPU can find out about a step's capturability:
`harness.hazards`.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import torch
import torch.nn.functional as F

from harness.errors import UserError
from harness import step as steps      # steps.train_step: one place to wrap every step

GRAPH_MODES = ("auto", "on", "off")
WARMUP_STEPS = 3   # eager steps per batch shape before capture (the PyTorch docs use 3)


def check_mode(mode: str) -> str:
    if mode not in GRAPH_MODES:
        raise UserError(f"bad graph mode {mode!r}; use one of {', '.join(GRAPH_MODES)} "
                        f"(e.g. --set graph=auto)")
    return mode


# --------------------------------------------------------------------------- optimizer
def current_lr(opt) -> float:
    """The first group's lr as a float (a host sync if it is a device tensor)."""
    lr = opt.param_groups[0]["lr"]
    return float(lr)


def _not_capturable(opt, device: torch.device) -> str:
    """Why `opt` cannot run inside a CUDA graph ('' when it can)."""
    if isinstance(opt, torch.optim.SGD):
        return (f"torch {torch.__version__.split('+')[0]}'s SGD has no capturable step (its "
                f"update reads a tensor lr on the host, so it keeps a float lr); use "
                f"optimizer=rmsprop or adam")
    for group in opt.param_groups:
        lr = group["lr"]
        if not (isinstance(lr, torch.Tensor) and lr.device == device):
            return ("the optimizer's lr is not a device tensor (make it with "
                    "make_optimizer(..., capturable=True))")
        if not group.get("capturable", False):
            return (f"the {type(opt).__name__} optimizer was not made capturable "
                    f"(make_optimizer(..., capturable=True) after the model is on the GPU)")
    return ""


def _pin_lr(opt, device: torch.device) -> None:
    """After `opt.load_state_dict` (a checkpoint read on the CPU) the group's lr tensor may
    be a host tensor: put it back on `device` (the graph must read it there)."""
    for group in opt.param_groups:
        lr = group["lr"]
        if isinstance(lr, torch.Tensor) and lr.device != device:
            group["lr"] = lr.to(device)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


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
                 warmup: int = WARMUP_STEPS, amp: steps.Amp | None = None,
                 compile: bool = False):
        self.model, self.opt, self.sched, self.clip_norm = model, opt, sched, clip_norm
        self.amp, self.compile = amp, compile
        self.call = steps.compiled(model) if compile else model     # what a step calls
        self._compiled_sizes: set[int] = set()
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.requested = check_mode(mode)
        self.warmup = int(warmup)
        self._graphs: dict[int, tuple] = {}
        self._seen: Counter = Counter()
        self._pool = None
        self._stream = None
        self.pool_bytes = 0          # reserved by the captures for the graphs' memory pool
        self.reason = ""
        if mode == "off":
            self.reason = "graph=off"
        elif compile:
            self.reason = "compile=on: the compiled step is not captured in a CUDA graph"
        elif amp is not None and amp.scaler is not None:
            self.reason = ("precision=fp16: the GradScaler reads on the host whether the "
                           "gradients overflowed, at every step")
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

    def will_compile(self, n: int) -> bool:
        """Whether the next step of batch size `n` compiles (compile=on: the first step of
        each batch size in this runner), which the training loop times apart."""
        return self.compile and n not in self._compiled_sizes

    # -- the step
    def step(self, xb: torch.Tensor, yb: torch.Tensor):
        if not self.use_graph:
            if self.compile:
                self._compiled_sizes.add(len(yb))
            return steps.train_step(self.call, self.opt, self.sched, xb, yb, self.clip_norm,
                                    self.amp)
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
                return steps.train_step(self.model, self.opt, self.sched, xb, yb, self.clip_norm,
                                        self.amp)
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
        with self.amp.autocast() if self.amp is not None else contextlib.nullcontext():
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

    def _side_stream(self):
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        return self._stream

    def _warmup_step(self, xb, yb):
        """A real training step, eager, on a side stream (PyTorch's recipe before capture:
        lazily created state, cuFFT plans and cuBLAS workspaces are made outside it)."""
        stream = self._side_stream()
        main = torch.cuda.current_stream(self.device)
        stream.wait_stream(main)
        with torch.cuda.stream(stream):
            loss, correct = self._body(xb, yb)
        main.wait_stream(stream)
        return loss.clone(), correct.clone()

    def _capture(self, xb, yb):
        """Capture the step for this batch size (static inputs filled from this batch);
        None if it fails in auto mode (the runner then stays eager).

        Written out instead of `torch.cuda.graph`, whose exit ends the capture before it
        restores the stream: after an illegal host sync, ending the invalidated capture
        raises a second error that would hide the first, the process would go on on the
        capture stream, and the pool would stay registered to a capture that never ended.
        """
        static_x, static_y = xb.clone(), yb.clone()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()   # shared by every batch size's graph
        graph = torch.cuda.CUDAGraph()
        stream = self._side_stream()
        torch.cuda.synchronize(self.device)     # the capture stream starts after all prior work
        reserved = torch.cuda.memory_reserved(self.device)
        error, out = None, None
        with torch.cuda.stream(stream):         # restores the current stream on every exit
            try:
                graph.capture_begin(pool=self._pool)
                out = self._body(static_x, static_y)
            except Exception as exc:  # noqa: BLE001 - the first cause, recorded below
                error = exc
            try:
                graph.capture_end()
            except Exception as exc:  # noqa: BLE001 - secondary when the body failed
                error = error or exc
        if error is None:
            self.pool_bytes += torch.cuda.memory_reserved(self.device) - reserved
            rec = (graph, static_x, static_y, *out)
            self._graphs[len(yb)] = rec
            return rec
        reason = f"capture failed: {_first_line(error)}"
        del out, graph, error                   # the failed capture's tensors go back to the pool
        self._release_pool()
        if self.requested == "on":
            raise UserError(f"graph=on: {reason}; use --set graph=auto or off")
        self.use_graph, self.reason, self._graphs = False, reason, {}
        return None

    def _release_pool(self) -> None:
        """After a failed capture: stop routing allocations to the graphs' pool, drop the
        reference the capture took on it, and return its free memory to the device (what
        `CUDAGraph.reset` does only for a capture that ended). Graphs captured earlier keep
        their own references to the pool."""
        index = self.device.index
        with contextlib.suppress(Exception):     # already ended if capture_end got that far
            torch._C._cuda_endAllocateToPool(index, self._pool)
        with contextlib.suppress(Exception):
            torch._C._cuda_releasePool(index, self._pool)
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
