"""Our cost rules in the two counting tools' own terms.

- forward: fvcore's `JitModelAnalysis` traces the model with TorchScript and calls a
  handle per `aten::` node with its `torch._C.Value` inputs and outputs (`jit_handles`,
  plus `_JitHandles` for custom autograd Functions, `prim::PythonOp`);
- backward (and a second forward): `torch.utils.flop_counter.FlopCounterMode` calls a
  mapping per dispatched op with the raw tensors (`make_flop_counter`, from
  `_dispatch_rules`), including `aten._fft_r2c/_fft_c2r/_fft_c2c`, which it would
  otherwise count as 0, and reports every op that has no rule.

Both read the same costs from `harness.ops.convention`; extension is by adding a rule
there or here (fvcore's own `set_op_handle` style), never by patching the tools.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any, Callable

import torch

from harness.ops.convention import (ELEMENTWISE, FFT_FUNCTIONS, SHARED_RULES, _T, _fft_counts,
                                    _matmul_counts, _prod, einsum_macs, fft_plan, is_zero_cost)

# ---------------------------------------------------------------------------------------
# Forward: fvcore (TorchScript trace). Handles receive torch._C.Value lists.
# ---------------------------------------------------------------------------------------
_UNKNOWN = object()


def _jit_const(v) -> Any:
    """The Python value of a constant (or a list of constants) in a traced graph."""
    node = v.node()
    kind = node.kind()
    if kind == "prim::Constant":
        return v.toIValue()
    if kind == "prim::ListConstruct":
        items = [_jit_const(i) for i in node.inputs()]
        return _UNKNOWN if any(i is _UNKNOWN for i in items) else items
    return _UNKNOWN


def _jit_t(v) -> _T:
    t = v.type()
    if isinstance(t, torch._C.TensorType):
        sizes = t.sizes()
        st = t.scalarType() or ""
        return _T(tuple(sizes) if sizes is not None else None, st.startswith("Complex"),
                  st in _INTEGRAL_SCALAR_TYPES)
    return _T(None, t.kind() == "ComplexType", t.kind() in ("IntType", "BoolType"))


_INTEGRAL_SCALAR_TYPES = {"Bool", "Byte", "Char", "Short", "Int", "Long", "UInt16",
                          "UInt32", "UInt64"}


def _jit_matmul_like(inputs, outputs, a_index=0):
    a = _jit_t(inputs[a_index])
    cplx = any(_jit_t(i).cplx for i in inputs if isinstance(i.type(), torch._C.TensorType))
    k = a.shape[-1]
    return _matmul_counts(_jit_t(outputs[0]).numel * k, cplx)


def _jit_linear(inputs, outputs):
    w = _jit_t(inputs[1])
    cplx = _jit_t(inputs[0]).cplx or w.cplx
    return _matmul_counts(_jit_t(outputs[0]).numel * w.shape[-1], cplx)


def _jit_conv(transposed_default: bool | None):
    from fvcore.nn.jit_handles import conv_flop_count

    def rule(inputs, outputs):
        x, w, out = _jit_t(inputs[0]), _jit_t(inputs[1]), _jit_t(outputs[0])
        transposed = transposed_default
        if transposed is None:     # _convolution / convolution: arg 6
            transposed = bool(_jit_const(inputs[6]))
        macs = conv_flop_count(list(x.shape), list(w.shape), list(out.shape), transposed)
        return _matmul_counts(macs, x.cplx or w.cplx)
    return rule


def _jit_einsum(inputs, outputs):
    eq = inputs[0].toIValue()
    operands = [_jit_t(v) for v in inputs[1].node().inputs()]
    macs = einsum_macs(eq, [o.shape for o in operands])
    return _matmul_counts(macs, any(o.cplx for o in operands))


def _jit_batch_norm(inputs, outputs):
    training = _jit_const(inputs[5])
    return Counter({ELEMENTWISE: (2 if training is True else 1) * _jit_t(outputs[0]).numel})


def _jit_fft(fn: str):
    def rule(inputs, outputs):
        x = _jit_t(inputs[0])
        s = _jit_const(inputs[1]) if len(inputs) > 1 else None
        dim = _jit_const(inputs[2]) if len(inputs) > 2 else None
        if s is _UNKNOWN or dim is _UNKNOWN:
            raise RuntimeError(f"aten::fft_{fn}: size/dim arguments are not constants in the "
                               f"trace; pass them as Python ints")
        return _fft_counts(fft_plan(fn, x.shape, x.cplx, s, dim))
    return rule


_JIT_RULES: dict[str, Callable] = {
    "linear": _jit_linear,
    "addmm": lambda i, o: _jit_matmul_like(i[1:], o),
    "mm": _jit_matmul_like, "matmul": _jit_matmul_like, "bmm": _jit_matmul_like,
    "baddbmm": lambda i, o: _jit_matmul_like(i[1:3], o),
    "einsum": _jit_einsum,
    "_convolution": _jit_conv(None), "convolution": _jit_conv(None),
    "conv1d": _jit_conv(False), "conv2d": _jit_conv(False), "conv3d": _jit_conv(False),
    "conv_transpose1d": _jit_conv(True), "conv_transpose2d": _jit_conv(True),
    "conv_transpose3d": _jit_conv(True),
    "batch_norm": _jit_batch_norm,
    **{"fft_" + fn: _jit_fft(fn) for fn in FFT_FUNCTIONS},
}


# ---------------------------------------------------------------------------------------
# Dispatch level (FlopCounterMode): rules receive the raw args, kwargs and output.
# ---------------------------------------------------------------------------------------
def _d_t(a) -> _T:
    if isinstance(a, torch.Tensor):
        return _T(tuple(a.shape), a.is_complex(),
                  not (a.is_floating_point() or a.is_complex()))
    return _T(None, isinstance(a, complex), isinstance(a, (bool, int)))


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)):
        for i in x:
            t = _first_tensor(i)
            if t is not None:
                return t
    return None


def _d_tool(packet):
    """FlopCounterMode's own formula for `packet` (FLOPs = 2*MACs), on raw tensors."""
    from torch.utils.flop_counter import flop_registry
    f = flop_registry[packet]

    def rule(args, kwargs, out):
        cplx = any(isinstance(a, torch.Tensor) and a.is_complex() for a in args)
        return _matmul_counts(f(*args, **kwargs, out_val=out) / 2, cplx)
    return rule


def _d_fft(kind: str):
    def rule(args, kwargs, out):
        x, dims = args[0], args[1]
        t = out if kind == "c2r" else x
        dims = [d % t.dim() for d in dims]
        n = _prod(t.shape[d] for d in dims)
        return _fft_counts([(kind, n, t.numel())])
    return rule


def _d_bool_arg(args, default=False) -> bool:
    for a in args:
        if isinstance(a, bool):
            return a
    return default


def _d_batch_norm(args, kwargs, out):
    training = _d_bool_arg(args[1:], kwargs.get("training", False))
    return Counter({ELEMENTWISE: (2 if training else 1) * args[0].numel()})


def _d_batch_norm_eval(args, kwargs, out):
    return Counter({ELEMENTWISE: args[0].numel()})


def _d_batch_norm_backward(args, kwargs, out):
    # native_batch_norm_backward(grad_out, input, weight, running_mean, running_var,
    #                            save_mean, save_invstd, train, eps, output_mask)
    train = args[7] if len(args) > 7 else kwargs.get("train", False)
    mask = args[9] if len(args) > 9 else kwargs.get("output_mask", [True, True, True])
    n = args[0].numel()
    gi = (3 if train else 1) if mask[0] else 0
    gw = 2 if mask[1] else 0
    return Counter({ELEMENTWISE: (gi + gw) * n})


def _d_cudnn_bn_backward(args, kwargs, out):
    return Counter({ELEMENTWISE: 5 * args[0].numel()})


def _d_dot_mv(args, kwargs, out):
    """dot(a, b) and mv(A, b): one MAC per element of the first operand."""
    a, b = args[0], args[1]
    return _matmul_counts(a.numel(), a.is_complex() or b.is_complex())


def _dispatch_rules() -> dict[str, Callable]:
    aten = torch.ops.aten
    rules = {
        "mm": _d_tool(aten.mm), "addmm": _d_tool(aten.addmm), "bmm": _d_tool(aten.bmm),
        "baddbmm": _d_tool(aten.baddbmm), "convolution": _d_tool(aten.convolution),
        "_convolution": _d_tool(aten._convolution),
        "convolution_backward": _d_tool(aten.convolution_backward),
        "dot": _d_dot_mv, "vdot": _d_dot_mv, "mv": _d_dot_mv,
        "_fft_c2c": _d_fft("c2c"), "_fft_r2c": _d_fft("r2c"), "_fft_c2r": _d_fft("c2r"),
        "native_batch_norm": _d_batch_norm, "_native_batch_norm_legit": _d_batch_norm,
        "_native_batch_norm_legit_no_training": _d_batch_norm_eval,
        "cudnn_batch_norm": _d_batch_norm, "miopen_batch_norm": _d_batch_norm,
        "native_batch_norm_backward": _d_batch_norm_backward,
        "cudnn_batch_norm_backward": _d_cudnn_bn_backward,
        "miopen_batch_norm_backward": _d_cudnn_bn_backward,
    }
    for name, shared in SHARED_RULES.items():
        rules.setdefault(name, _lift_shared_dispatch(shared))
    return rules


def _lift_shared_dispatch(shared):
    def rule(args, kwargs, out):
        o = _first_tensor(out)
        o = _d_t(o) if o is not None else _T(None)
        return Counter() if o.integral else shared([_d_t(a) for a in args], o)
    return rule


def _lift_shared_jit(shared):
    def rule(inputs, outputs):
        o = _jit_t(outputs[0])
        return Counter() if o.integral else shared([_jit_t(v) for v in inputs], o)
    return rule


class _JitHandles(dict):
    """fvcore's handle table, plus a handle for every `prim::PythonOp.<Function>` (a custom
    autograd.Function): it counts the ops that the tracer recorded in the node's forward
    Subgraph, with the same handles."""

    def __init__(self, handles: dict, tally: "_Tally"):
        super().__init__(handles)
        self.tally = tally

    def __contains__(self, kind) -> bool:
        return super().__contains__(kind) or str(kind).startswith("prim::PythonOp")

    def __getitem__(self, kind):
        if super().__contains__(kind):
            return super().__getitem__(kind)
        if str(kind).startswith("prim::PythonOp"):
            return self._python_op(kind)
        raise KeyError(kind)

    def _python_op(self, kind):
        def handle(inputs, outputs):
            node = outputs[0].node() if outputs else None
            if node is None or "Subgraph" not in node.attributeNames():
                self.tally.unsupported[kind] += 1
                return Counter()
            return self.count_graph(node.g("Subgraph"))
        return handle

    def count_graph(self, graph) -> Counter:
        total = Counter()
        for node in graph.nodes():
            kind = node.kind()
            if kind == "prim::PythonOp":
                kind = kind + "." + node.pyname()
            if kind in self:
                total += Counter(self[kind](list(node.inputs()), list(node.outputs())))
            elif not is_zero_cost(kind):
                self.tally.unsupported[kind] += 1
        return total


def jit_handles(tally) -> dict:
    """fvcore handles for every costed `aten::` op (and its in-place variant), adding each
    node's counts to `tally`."""
    def wrap(op, rule):
        def handle(inputs, outputs):
            c = Counter(rule(inputs, outputs))
            tally.add(op, c)
            return c
        return handle

    handles = {}
    for name, rule in itertools.chain(_JIT_RULES.items(),
                                      ((n, _lift_shared_jit(r)) for n, r in SHARED_RULES.items())):
        if "aten::" + name in handles:
            continue
        for variant in (name, name + "_"):
            handles["aten::" + variant] = wrap("aten::" + variant, rule)
    return _JitHandles(handles, tally)


def make_flop_counter(tally):
    from torch.utils.flop_counter import FlopCounterMode

    if not hasattr(FlopCounterMode, "_count_flops"):   # the hook we override (torch 2.13)
        raise RuntimeError("harness.ops: this torch's FlopCounterMode has no _count_flops "
                           "hook; use the torch version the project pins (2.13)")

    class _Counter(FlopCounterMode):
        """FlopCounterMode whose registry is exactly our rules; it reports every op that
        is neither costed nor zero-cost (FlopCounterMode itself drops those silently)."""

        def __init__(self):
            super().__init__(display=False)
            registry = {}
            for name, rule in _dispatch_rules().items():
                for variant in (name, name + "_"):
                    packet = getattr(torch.ops.aten, variant, None)
                    if isinstance(packet, torch._ops.OpOverloadPacket):
                        registry[packet] = self._handle(packet._qualified_op_name, rule)
            self.flop_registry = registry

        @staticmethod
        def _handle(op, rule):
            def h(*args, out_val=None, **kwargs):
                c = Counter(rule(args, kwargs, out_val))
                tally.add(op, c)
                return int(round(2 * sum(c.values())))      # FlopCounterMode counts FLOPs
            h._get_raw = True
            return h

        def _count_flops(self, func_packet, out, args, kwargs):
            if func_packet not in self.flop_registry:
                op = getattr(func_packet, "_qualified_op_name", str(func_packet))
                if not is_zero_cost(op):
                    tally.unsupported[op] += 1
            return super()._count_flops(func_packet, out, args, kwargs)

    return _Counter()
