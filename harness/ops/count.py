"""The counting engine: `count_ops` (a model, forward and backward, per image), and
`count_module_ops` (one layer, for the layer benchmark), `format_table` and the `ops`
command.

Counting is done in eval mode at batch 1 on the uncompiled model, on a meta-device copy
(shapes and dtypes only) where the model allows it, else on the model itself. The
model's train/eval modes, its state (parameters and buffers), its `.grad` fields and the
global RNG state are left as they were. The two forward counts (fvcore, FlopCounterMode)
are cross-checked; a second count at batch 2 splits every figure into a per-sample and
a per-batch part. An op that has no rule and is not in `ZERO_COST_OPS` fails the count
with `UnsupportedOperatorError`, naming the op.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch
import torch.nn as nn

from harness.ops.convention import (_CONV_OPS, _FC_OPS, CATEGORIES, CONV_LINEAR, CONVENTION_ID,
                                    CONVENTION_SUMMARY, ELEMENTWISE, UnsupportedOperatorError,
                                    PAPER_RULE, _base_name, is_zero_cost, paper_figure)
from harness.ops.handles import _first_tensor, jit_handles, make_flop_counter


@dataclass
class _Tally:
    cats: Counter = field(default_factory=Counter)
    by_op: Counter = field(default_factory=Counter)
    conv: float = 0.0
    fc: list = field(default_factory=list)
    unsupported: Counter = field(default_factory=Counter)

    def add(self, op: str, counts: Counter) -> None:
        for k, v in counts.items():
            if k not in CATEGORIES:
                raise ValueError(f"rule for {op} returned unknown category {k!r}")
            self.cats[k] += v
        self.by_op[op] += sum(counts.values())
        base = _base_name(op)
        real = counts.get(CONV_LINEAR, 0)
        if base in _CONV_OPS:
            self.conv += real
        elif base in _FC_OPS and real:
            self.fc.append(real)

    def rounded(self) -> dict[str, int]:
        return {c: int(round(self.cats.get(c, 0))) for c in CATEGORIES}


def _count_forward_fvcore(model: nn.Module, x: torch.Tensor) -> _Tally:
    from fvcore.nn.jit_analysis import JitModelAnalysis

    tally = _Tally()
    an = JitModelAnalysis(model, (x,))
    an._ignored_ops = set()          # our whitelist replaces fvcore's (which hides mul/add)
    an._op_handles = jit_handles(tally)
    an.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    an.total()                       # runs the trace and the handles
    for op, n in an.unsupported_ops().items():
        if not is_zero_cost(op):
            tally.unsupported[op] += n
    return tally


def _count_dispatch(model: nn.Module, *inputs: torch.Tensor, input_grad: bool = False):
    """FlopCounterMode counts of one forward and of the backward to the trainable
    parameters (and, with `input_grad`, to the floating-point inputs). Returns
    (fwd tally, bwd tally, forward FLOPs)."""
    fwd, bwd = _Tally(), _Tally()
    if input_grad:
        inputs = tuple(t.detach().requires_grad_(t.is_floating_point() or t.is_complex())
                       for t in inputs)
    wrt = [p for p in model.parameters() if p.requires_grad]
    wrt += [t for t in inputs if t.requires_grad]
    with torch.enable_grad():
        with make_flop_counter(fwd) as fc_fwd:
            y = model(*inputs)
        y = _first_tensor(y)
        flops_fwd = fc_fwd.get_total_flops()
        if wrt and y is not None and y.requires_grad:
            g = torch.ones_like(y)
            with make_flop_counter(bwd):
                torch.autograd.grad(y, wrt, grad_outputs=g, allow_unused=True)
    return fwd, bwd, flops_fwd


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode whose parameters and registered buffers live on the
    meta device (shapes and dtypes only: no memory, no arithmetic)."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"),
                                   requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo).eval()


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


class _Runner:
    """Runs a counting pass on a meta copy of the model when it can (fast: counts depend
    only on shapes and dtypes), else on the real model; both in eval mode (train mode
    with `train`). The real model's state is snapshotted before its first use, and its
    state and modes are restored by `restore()`."""

    def __init__(self, model: nn.Module, train: bool = False):
        self.model, self.train = model, train
        self.modes = [(m, m.training) for m in model.modules()]
        self.snapshot = None
        try:
            self.meta = _meta_copy(model).train(train)
        except Exception:   # noqa: BLE001 - e.g. an attribute that cannot be deep-copied
            self.meta = None
        self.used: list[str] = []

    def __call__(self, fn, *inputs, meta: bool = True, **kwargs):
        if meta and self.meta is not None:
            try:
                out = fn(self.meta, *(t.detach().to("meta") for t in inputs), **kwargs)
                self.used.append("meta")
                return out
            except UnsupportedOperatorError:
                raise
            except Exception:   # noqa: BLE001 - the model cannot run on meta tensors
                pass
        if self.snapshot is None:
            self.snapshot = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.train(self.train)
        self.used.append("real")
        return fn(self.model, *inputs, **kwargs)

    def restore(self) -> None:
        for m, training in self.modes:
            m.training = training
        if self.snapshot is not None:
            with torch.no_grad():
                self.model.load_state_dict(self.snapshot)


def _raise_unsupported(tally: _Tally, where: str) -> None:
    if tally.unsupported:
        ops = ", ".join(f"{op} (x{n})" for op, n in sorted(tally.unsupported.items()))
        raise UnsupportedOperatorError(
            f"cannot count the {where} pass: no cost rule for {ops}; add a rule in harness/ops "
            f"(convention.SHARED_RULES, handles._JIT_RULES/_dispatch_rules) or, if it costs "
            f"nothing, add it to ZERO_COST_OPS")


# ---------------------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------------------
def count_params(model: nn.Module) -> int:
    """Number of real parameters; a complex parameter counts as 2 reals."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def tool_versions() -> dict[str, str]:
    try:
        fv = metadata.version("fvcore")
    except metadata.PackageNotFoundError:   # pragma: no cover
        fv = "missing"
    return {"torch": torch.__version__, "fvcore": fv,
            "forward": "fvcore.nn.JitModelAnalysis + harness.ops handles",
            "backward": "torch.utils.flop_counter.FlopCounterMode + harness.ops mappings"}


def _model_device(model: nn.Module) -> torch.device:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def count_ops(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Forward and backward op counts of `model` on one input of shape `input_shape`
    (without the batch dimension), under `CONVENTION`. JSON-serializable.

    Raises UnsupportedOperatorError if an op has no rule and is not zero-cost.
    """
    model = getattr(model, "_orig_mod", model)          # torch.compile wrapper
    device = _model_device(model)
    x = torch.randn((1, *input_shape), generator=torch.Generator().manual_seed(0)).to(device)
    # Batch 2 splits each count into a per-sample part and a per-batch part that does not
    # grow with the batch (e.g. FFTs of the weights): c(B) = fixed + B * per_sample.
    x2 = torch.cat([x, torch.randn(x.shape, generator=torch.Generator().manual_seed(1)
                                   ).to(device)])
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    runner = _Runner(model)
    try:
        with torch.random.fork_rng(devices=rng_devices), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The TorchScript tracer cannot run convolutions on meta tensors (torch 2.13:
            # the meta kernel sees traced sizes), so models with convolutions trace for real.
            fv = runner(_count_forward_fvcore, x, meta=not _has_conv(model))
            _raise_unsupported(fv, "forward")
            fwd, bwd, flops_fwd_tool = runner(_count_dispatch, x)
            _raise_unsupported(fwd, "forward")
            _raise_unsupported(bwd, "backward")
            fwd2, bwd2, _ = runner(_count_dispatch, x2)
    finally:
        runner.restore()

    b_fwd, b_bwd = fv.rounded(), bwd.rounded()
    check = fwd.rounded()
    agree = all(abs(check[c] - b_fwd[c]) <= max(1, 1e-9 * b_fwd[c]) for c in CATEGORIES)
    if not agree:
        warnings.warn(f"forward op counts disagree between fvcore {b_fwd} and "
                      f"FlopCounterMode {check}; a rule in harness/ops is inconsistent")
    macs_fwd, macs_bwd = sum(b_fwd.values()), sum(b_bwd.values())
    conv = int(round(fv.conv))
    fc = int(round(sum(fv.fc)))
    fc_out = int(round(fv.fc[-1])) if fv.fc else 0
    n_params = count_params(model)
    # The per-sample part cannot exceed the batch-1 count (fixed >= 0); min() absorbs the
    # rounding of fractional FFT costs.
    per_fwd = {c: min(int(round(fwd2.cats[c] - fwd.cats[c])), check[c]) for c in CATEGORIES}
    per_bwd = {c: min(int(round(bwd2.cats[c] - bwd.cats[c])), b_bwd[c]) for c in CATEGORIES}
    return {
        "convention": {"id": CONVENTION_ID, "summary": CONVENTION_SUMMARY},
        "input_shape": [1, *map(int, input_shape)],
        "mode": "eval",
        "macs_fwd": macs_fwd,
        "macs_bwd": macs_bwd,
        "flops_fwd": 2 * macs_fwd,
        "flops_bwd": 2 * macs_bwd,
        "macs_fwd_no_elementwise": macs_fwd - b_fwd[ELEMENTWISE],
        "macs_bwd_no_elementwise": macs_bwd - b_bwd[ELEMENTWISE],
        "breakdown_fwd": b_fwd,
        "breakdown_bwd": b_bwd,
        "macs_fwd_paper": paper_figure(conv, fc),
        "paper_figure": PAPER_RULE,
        "paper_terms": {"conv": conv, "fc": fc, "fc_out": fc_out},
        "per_sample": {"macs_fwd": sum(per_fwd.values()), "macs_bwd": sum(per_bwd.values()),
                       "breakdown_fwd": per_fwd, "breakdown_bwd": per_bwd},
        "batch_fixed": {"macs_fwd": sum(check.values()) - sum(per_fwd.values()),
                        "macs_bwd": macs_bwd - sum(per_bwd.values())},
        "by_op_fwd": {k: int(round(v)) for k, v in sorted(fv.by_op.items()) if v},
        "by_op_bwd": {k: int(round(v)) for k, v in sorted(bwd.by_op.items()) if v},
        "crosscheck_fwd": {"fvcore_macs": macs_fwd, "flop_counter_macs": sum(check.values()),
                           "flop_counter_flops": int(flops_fwd_tool), "agree": agree,
                           "tensors": runner.used},
        "params": n_params,
        "params_trainable": sum(p.numel() * (2 if p.is_complex() else 1)
                                for p in model.parameters() if p.requires_grad),
        "tools": tool_versions(),
    }


def count_module_ops(module: nn.Module, *inputs: torch.Tensor, input_grad: bool = True,
                     mode: str = "train") -> dict:
    """MACs of `module(*inputs)` at the inputs' own batch size, forward and backward (to
    the parameters and, with `input_grad`, to the floating-point inputs, as for a layer
    inside a network), under `CONVENTION`. Dispatch-level count (FlopCounterMode) only;
    for layer benchmarks. `mode` ("train"/"eval") is the module mode to count in; the
    module's own modes and state are left as they were.

    Raises UnsupportedOperatorError like `count_ops`."""
    runner = _Runner(module, train=mode == "train")
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fwd, bwd, _ = runner(_count_dispatch, *inputs, input_grad=input_grad)
            _raise_unsupported(fwd, "forward")
            _raise_unsupported(bwd, "backward")
    finally:
        runner.restore()
    b_fwd, b_bwd = fwd.rounded(), bwd.rounded()
    return {"macs_fwd": sum(b_fwd.values()), "macs_bwd": sum(b_bwd.values()),
            "breakdown_fwd": b_fwd, "breakdown_bwd": b_bwd, "convention": CONVENTION_ID}


def _fmt(n: int) -> str:
    return f"{n:,}"


def _short(n: float) -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suf}"
    return f"{n:.0f}"


def format_table(result: dict) -> str:
    """A readable table of a `count_ops` result, for the CLI."""
    from tabulate import tabulate

    rows = []
    for c in CATEGORIES:
        f, b = result["breakdown_fwd"][c], result["breakdown_bwd"][c]
        rows.append([c, _fmt(f), _fmt(b)])
    rows.append(["total", _fmt(result["macs_fwd"]), _fmt(result["macs_bwd"])])
    rows.append(["total w/o elementwise", _fmt(result["macs_fwd_no_elementwise"]),
                 _fmt(result["macs_bwd_no_elementwise"])])
    rows.append(["total (short)", _short(result["macs_fwd"]), _short(result["macs_bwd"])])
    rows.append(["FLOPs (= 2 x MACs)", _fmt(result["flops_fwd"]), _fmt(result["flops_bwd"])])
    ps, bf = result["per_sample"], result["batch_fixed"]
    rows.append(["per sample (large batch)", _fmt(ps["macs_fwd"]), _fmt(ps["macs_bwd"])])
    rows.append(["per batch, fixed", _fmt(bf["macs_fwd"]), _fmt(bf["macs_bwd"])])
    pt = result["paper_terms"]
    rows.append([f"paper figure ({result.get('paper_figure', PAPER_RULE)})",
                 _fmt(result["macs_fwd_paper"]), ""])
    rows.append(["paper: conv", _fmt(pt["conv"]), ""])
    rows.append(["paper: FC (all)", _fmt(pt["fc"]), ""])
    rows.append(["paper: last FC", _fmt(pt["fc_out"]), ""])
    table = tabulate(rows, headers=["MACs", "forward", "backward"],
                     colalign=("left", "right", "right"))
    conv = result["convention"]
    tools = result["tools"]
    cc = result.get("crosscheck_fwd", {})
    lines = [
        f"input {tuple(result['input_shape'])}, {result['mode']} mode; "
        f"params {_fmt(result['params'])} (complex = 2 reals)",
        table,
        f"convention {conv['id']}: {conv['summary']}",
        f"tools: torch {tools['torch']}, fvcore {tools['fvcore']} (forward), "
        f"FlopCounterMode (backward); forward cross-check "
        f"{'agrees' if cc.get('agree') else 'DISAGREES'}",
    ]
    return "\n".join(lines)


def ops_command(method: str, arch: str | None, input_shape, num_classes: int,
                hparams: dict | None = None, dataset: str = "") -> str:
    """`python -m harness ops`: build the model from the registry and format its counts."""
    import methods
    from harness.spec import RunSpec

    input_shape = tuple(int(s) for s in input_shape)
    arch = methods.resolve_arch(method, arch, input_shape)
    spec = RunSpec(method=method, arch=arch, dataset=dataset or "none",
                   hparams=dict(hparams or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = methods.build(spec, input_shape, num_classes)
    result = count_ops(model, input_shape)
    return f"{method} / {arch}\n" + format_table(result)
