"""Operation counts (forward and backward) that see what spectral methods really spend.

fvcore and `torch.utils.flop_counter` count every FFT as 0, count a complex MAC as one
real MAC and ignore element-wise products. This module counts with our own rules in
both tools, under the convention `CONVENTION` below (written once, here; the README
quotes it):

- forward:  fvcore `JitModelAnalysis` (TorchScript trace) with our handles for every
  costed `aten::` op, including `aten::fft_*`, complex `einsum`/`matmul`/`bmm`/`mul`;
- backward: `torch.utils.flop_counter.FlopCounterMode` (dispatch level) with our
  mappings for `aten._fft_r2c/_fft_c2r/_fft_c2c`, the matmul/conv family (complex
  aware) and the element-wise ops; it also counts the forward, and the two forward
  counts are cross-checked (`crosscheck_fwd` in the result, and tests/test_ops.py).
  Both run on a meta-device copy of the model (shapes and dtypes only) when the model
  allows it, else on the model itself.

Counting is done in eval mode at batch 1 on the uncompiled model. The model's train/eval
modes, its state (parameters and buffers), its `.grad` fields and the global RNG state are
left as they were. An op that has no rule here and is not in `ZERO_COST_OPS` fails the
count with `UnsupportedOperatorError`, naming the op.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import torch
import torch.nn as nn

from harness.errors import UserError

CONVENTION_ID = "sb-macs-v2"
CONVENTION_SUMMARY = ("MACs: real MAC 1, complex MAC 4, complex element-wise multiply 4, "
                      "N-point complex FFT 5/2*N*log2(N), real-input/real-output FFT half; "
                      "FLOPs = 2*MACs; eval mode, batch 1")
CONVENTION = """\
Cost convention sb-macs-v2 (the unit is the MAC, one real multiply-accumulate):
- a real MAC = 1;
- a complex MAC = 4;
- a complex element-wise multiply = 4;
- an N-point complex FFT = 5/2·N·log2 N;
- a real-input or real-output FFT = half of that.
FLOPs = 2·MACs, so an N-point complex FFT = 5·N·log2 N FLOPs and a real-input or
real-output one 5/2·N·log2 N FLOPs: the benchFFT/FFTW convention for reporting FFT speed
(the radix-2 operation count). sb-macs-v1 counted every FFT at half of this (it took
5/2·N·log2 N for the FLOPs of a complex FFT), which flattered the spectral methods;
records carry the id, and reports never mix two ids.

Details that follow from it:
- FFTs: N is the product of the transformed sizes (after any padding or cropping by
  `s`/`n`); independent transforms (batch, channels) add up. An FFT is costed as torch
  executes it: `fft2`/`fftn` of a real tensor run as full complex transforms (torch
  promotes the input), the 1-D `fft` of a real tensor as a real-input transform; `hfft2`,
  `ihfft2` and their n-D forms as a complex stage plus a real stage. Normalisation
  scaling (norm=) is not counted.
- Categories: conv_linear = real convolution/matmul/einsum MACs; fft; complex_products
  = complex MACs (x4) and complex x complex element-wise multiplies (x4); elementwise;
  other. Totals are given with and without the elementwise category.
- Complex x real element-wise multiply = 2; complex division = 8, by a real = 2.
- Real element-wise multiplies and divisions = 1 per output element, including
  multiplications by a scalar, LeakyReLU (one multiply) and BatchNorm in eval mode
  (scale and shift folded: 1 per element; 2 in training mode). BatchNorm backward in
  eval mode = 1 (input gradient) + 2 (weight gradient) per element.
- Stand-alone additions, subtractions and summations cost 0 (a MAC counts multiplies;
  bias adds are free, as in fvcore), and so do data movement (views, reshapes, copies,
  padding, indexing, concatenation, dtype changes, conj), comparisons and selections
  (ReLU, max-pool, clamp, max), random-number generation, dropout (identity in eval)
  and integer (index) arithmetic.
- Category "other": averages (1 per output element: the division), transcendental
  functions (exp, log, sqrt, sigmoid, tanh, softmax, sin, cos...: 1 per element, nominal;
  polar = 2 multiplies + cos + sin).
- Backward: the ops autograd runs for the gradients of every trainable parameter (not
  of the input), at batch 1 in eval mode, with the same rules.
- Batch 1 charges one sample with the whole cost of work done once per batch (e.g. the
  FFT of the weights). A second count at batch 2 splits every figure into `per_sample`
  (the marginal cost of a sample) and `batch_fixed`; at batch B a sample costs
  per_sample + batch_fixed / B.
- Paper convention (`macs_fwd_paper`): real convolution + fully connected MACs only,
  one multiply per MAC, as in the CEMNet paper's CNN figures, with the layers the paper
  counts for the architecture (`PAPER_FIGURE`): LeNet-5 convs + hidden FCs (692,160:
  the output layer is left out), VGG-small convs + all FCs (68,097,024), VGG-large convs
  only (275,447,808); other architectures convs + all FCs. A fully connected layer is an
  `aten::linear`/`addmm`; other matrix products (e.g. spectral pooling operators) are
  conv_linear MACs but not FC layers.
"""

CATEGORIES = ("conv_linear", "fft", "complex_products", "elementwise", "other")
CONV_LINEAR, FFT, COMPLEX, ELEMENTWISE, OTHER = CATEGORIES


class UnsupportedOperatorError(UserError):
    """An operator has no cost rule and is not known to cost nothing."""


# ---------------------------------------------------------------------------------------
# Zero-cost operators (exempt from "unsupported"). Names are aten op names without the
# namespace; an in-place variant (`name_`) is covered by its base name.
# ---------------------------------------------------------------------------------------
_DATA_MOVEMENT = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "view_as", "flatten", "unflatten",
    "permute", "transpose", "t", "contiguous", "clone", "copy", "detach", "alias",
    "lift_fresh", "lift_fresh_copy", "squeeze", "unsqueeze", "expand", "expand_as",
    "repeat", "tile", "cat", "stack", "hstack", "vstack", "split", "split_with_sizes",
    "chunk", "unbind", "narrow", "slice", "select", "index", "index_select", "gather",
    "scatter", "index_put", "masked_fill", "masked_scatter", "where", "flip", "roll",
    "pad", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "replication_pad1d",
    "replication_pad2d", "_pad_circular", "slice_backward", "select_backward",
    "index_select_backward", "as_strided", "new_zeros", "new_empty", "new_empty_strided",
    "new_full", "new_ones", "zeros", "zeros_like", "ones", "ones_like", "full",
    "full_like", "empty", "empty_like", "empty_strided", "arange", "linspace", "fill",
    "zero", "to", "_to_copy", "type_as", "view_as_real", "view_as_complex", "real", "imag",
    "conj", "_conj", "conj_physical", "_conj_physical", "resolve_conj", "resolve_neg", "_neg_view", "neg",
    "complex", "Int", "ScalarImplicit", "size", "numel", "dim", "item",
    "_local_scalar_dense", "fft_fftshift", "fft_ifftshift", "fft_fftfreq",
    "fft_rfftfreq", "unfold", "im2col", "col2im", "diag_embed", "diagonal", "tril", "triu",
    "movedim", "moveaxis", "swapaxes", "swapdims", "adjoint", "mT", "mH", "numpy_T",
    "matrix_H", "broadcast_to", "ravel", "unsafe_split", "unsafe_chunk", "dstack",
    "column_stack", "take_along_dim", "view_copy", "permute_copy", "expand_copy",
    "transpose_copy", "t_copy", "unsqueeze_copy", "squeeze_copy", "slice_copy",
    "select_copy", "alias_copy", "unbind_copy", "split_copy", "_unsafe_index",
    "_index_put_impl", "index_copy", "index_fill", "scatter_add", "diagonal_backward",
    "empty_permuted", "scalar_tensor", "_reshape_copy",
    "unfold_backward",   # sums overlapping windows back: additions only
}
_COMPARISONS = {
    "eq", "ne", "lt", "le", "gt", "ge", "max", "min", "amax", "amin", "argmax", "argmin",
    "maximum", "minimum", "clamp", "clamp_min", "clamp_max", "hardtanh", "hardtanh_backward",
    "relu", "threshold", "threshold_backward", "sign", "max_pool1d", "max_pool2d",
    "max_pool3d", "max_pool2d_with_indices", "max_pool2d_with_indices_backward",
    "max_pool3d_with_indices", "max_pool3d_with_indices_backward", "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward", "max_unpool2d", "sort", "topk", "logical_and",
    "logical_or", "logical_not", "bitwise_and", "bitwise_or", "bitwise_not", "__and__",
    "__or__", "floor", "ceil", "round", "trunc", "remainder", "floor_divide", "isnan",
    "isinf", "isfinite", "nonzero",
}
_RANDOM_AND_DROPOUT = {
    "dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "native_dropout",
    "bernoulli", "rand", "randn", "rand_like", "randn_like", "randint", "normal", "uniform",
    "random", "exponential",
}
_ADDITIVE = {"add", "sub", "rsub", "sum", "cumsum", "add_n"}

#: The whitelist of operators that cost 0 MACs under the convention.
ZERO_COST_OPS = frozenset(_DATA_MOVEMENT | _COMPARISONS | _RANDOM_AND_DROPOUT | _ADDITIVE)


def _base_name(qualified: str) -> str:
    """'aten::mul_' -> 'mul'; 'aten::_fft_r2c' -> '_fft_r2c'; 'aten::__and__' -> '__and__'."""
    name = qualified.split("::", 1)[-1]
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name


def is_zero_cost(qualified: str) -> bool:
    if qualified.startswith("prim::") and not qualified.startswith(("prim::PythonOp",
                                                                     "prim::CallFunction")):
        return True
    return qualified.startswith("aten::") and _base_name(qualified) in ZERO_COST_OPS


# ---------------------------------------------------------------------------------------
# Cost primitives, shared by the forward (TorchScript) and dispatch-level rules.
# ---------------------------------------------------------------------------------------
def fft_macs(n_points: int, n_transforms: float = 1, real: bool = False) -> float:
    """MACs of `n_transforms` independent N-point FFTs: 5/2*N*log2 N each (5 N log2 N
    FLOPs, benchFFT), halved if real-input or real-output."""
    if n_points <= 1:
        return 0.0
    c = 2.5 * n_points * math.log2(n_points) * n_transforms
    return c / 2 if real else c


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


@dataclass
class _T:
    """What a rule needs to know about an operand: its shape (None: a scalar) and
    whether it is complex."""
    shape: tuple[int, ...] | None
    cplx: bool = False
    integral: bool = False     # integer/bool dtype: index arithmetic, costs nothing

    @property
    def numel(self) -> int:
        return 1 if self.shape is None else _prod(self.shape)

    @property
    def is_tensor(self) -> bool:
        return self.shape is not None


def _matmul_counts(macs: float, cplx: bool) -> Counter:
    return Counter({COMPLEX: 4 * macs}) if cplx else Counter({CONV_LINEAR: macs})


def _fft_counts(stages) -> Counter:
    """stages: iterable of (kind in {c2c, r2c, c2r}, N, numel of the real/complex
    full-size tensor the stage transforms)."""
    total = 0.0
    for kind, n, numel in stages:
        if n > 1:
            total += fft_macs(n, numel / n, real=kind != "c2c")
    return Counter({FFT: total})


def fft_plan(fn: str, shape, cplx: bool, s=None, dim=None) -> list[tuple[str, int, int]]:
    """The transforms torch runs for `torch.fft.<fn>(x, s/n, dim)`, as (kind, N, numel).

    Mirrors aten/native/SpectralOps.cpp (checked against the dispatched `_fft_*` ops by
    tests/test_ops.py): fft2/fftn always run c2c; 1-D fft/ifft of a real input run r2c.
    """
    nd = len(shape)
    ndk = fn[-1] if fn.endswith(("2", "n")) else "1"
    base = fn[:-1] if ndk != "1" else fn
    if ndk == "1":
        dims = [-1 if dim is None else (dim[0] if isinstance(dim, (list, tuple)) else dim)]
        s = None if s is None else [s[0] if isinstance(s, (list, tuple)) else s]
    elif dim is not None:
        dims = list(dim)
    elif ndk == "2":
        dims = [-2, -1]
    else:
        dims = list(range(nd - len(s), nd)) if s is not None else list(range(nd))
    dims = [d % nd for d in dims]
    c2r_type = base in ("irfft", "hfft")
    sizes = []
    for i, d in enumerate(dims):
        if s is not None and s[i] is not None and s[i] != -1:
            sizes.append(int(s[i]))
        elif c2r_type and i == len(dims) - 1:
            sizes.append(2 * (shape[d] - 1))
        else:
            sizes.append(int(shape[d]))
    full = list(shape)
    for d, n in zip(dims, sizes):
        full[d] = n
    half = list(full)
    half[dims[-1]] = sizes[-1] // 2 + 1
    numel_full, numel_half = _prod(full), _prod(half)
    n_all, n_last, n_rest = _prod(sizes), sizes[-1], _prod(sizes[:-1])
    if base in ("fft", "ifft"):
        kind = "r2c" if (ndk == "1" and not cplx) else "c2c"
        return [(kind, n_all, numel_full)]
    if base in ("rfft", "ihfft") and (ndk == "1" or base == "rfft"):
        return [("r2c", n_all, numel_full)]
    if base in ("irfft", "hfft") and (ndk == "1" or base == "irfft"):
        return [("c2r", n_all, numel_full)]
    if base == "hfft":
        return [("c2c", n_rest, numel_half), ("c2r", n_last, numel_full)]
    if base == "ihfft":
        return [("r2c", n_last, numel_full), ("c2c", n_rest, numel_half)]
    raise ValueError(f"unknown FFT function {fn!r}")


FFT_FUNCTIONS = tuple(b + k for k in ("", "2", "n")
                      for b in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft"))


def einsum_macs(equation: str, shapes: list[tuple[int, ...]]) -> int:
    """MACs of a 2+-operand einsum contracted left to right; letters that occur in one
    operand only (and not in the output) are summed out first, for free, as torch does."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    # Expand '...' into fresh upper-case letters, aligned from the right.
    n_ell = max((len(sh) - (len(t) - 3) for t, sh in zip(terms, shapes) if "..." in t),
                default=0)
    ell = "".join(chr(ord("A") + i) for i in range(n_ell))
    ops = []
    for t, sh in zip(terms, shapes):
        if "..." in t:
            k = len(sh) - (len(t) - 3)
            t = t.replace("...", ell[n_ell - k:])
        ops.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        letters = Counter("".join(ops))
        out = ell + "".join(sorted(c for c, n in letters.items() if n == 1 and c not in ell))
    size: dict[str, int] = {}
    for t, sh in zip(ops, shapes):
        for c, n in zip(t, sh):
            size[c] = max(size.get(c, 1), int(n))
    if len(ops) < 2:
        return 0
    sets = [set(t) for t in ops]

    def needed_elsewhere(i: int) -> set[str]:
        other = set(out)
        for j, sj in enumerate(sets):
            if j != i:
                other |= sj
        return other

    sets = [s & needed_elsewhere(i) for i, s in enumerate(sets)]
    macs, cur = 0, sets[0]
    for i in range(1, len(sets)):
        union = cur | sets[i]
        macs += _prod(size[c] for c in union)
        later = set(out).union(*sets[i + 1:]) if i + 1 < len(sets) else set(out)
        cur = union & later
    return macs


# -- shared element-wise rules: f(ins: list[_T], out: _T) -> Counter ---------------------
def _mul(ins, out):
    a, b = ins[0], ins[1] if len(ins) > 1 else _T(None)
    n = out.numel
    if a.cplx and b.cplx:
        return Counter({COMPLEX: 4 * n})
    return Counter({ELEMENTWISE: (2 if (a.cplx or b.cplx) else 1) * n})


def _div(ins, out):
    a, b = ins[0], ins[1] if len(ins) > 1 else _T(None)
    n = out.numel
    if b.cplx:
        return Counter({COMPLEX: 8 * n})
    return Counter({ELEMENTWISE: (2 if a.cplx else 1) * n})


def _square(ins, out):
    return _mul([ins[0], ins[0]], out)


def _per_elem(cat: str, k: float, on: str = "out") -> Callable:
    def rule(ins, out):
        n = ins[0].numel if on == "in" else out.numel
        return Counter({cat: k * n})
    return rule


def _abs(ins, out):
    if not ins[0].cplx:
        return Counter()
    return Counter({ELEMENTWISE: 2 * out.numel, OTHER: out.numel})   # re^2+im^2, sqrt


def _sgn(ins, out):
    if not ins[0].cplx:
        return Counter()
    return Counter({ELEMENTWISE: 4 * out.numel, OTHER: out.numel})   # |z|, z / |z|


def _pow(ins, out):
    return Counter({ELEMENTWISE: (4 if ins[0].cplx else 1) * out.numel})


def _polar(ins, out):
    """abs * (cos + i sin): two multiplies and two transcendental functions."""
    return Counter({ELEMENTWISE: 2 * out.numel, OTHER: 2 * out.numel})


def _transcendental(ins, out):
    return Counter({OTHER: (4 if ins[0].cplx else 1) * out.numel})


_SHARED_RULES: dict[str, Callable] = {
    "mul": _mul, "multiply": _mul, "div": _div, "true_divide": _div, "divide": _div,
    "square": _square, "reciprocal": _per_elem(ELEMENTWISE, 1),
    "pow": _pow, "abs": _abs, "sgn": _sgn, "angle": _per_elem(OTHER, 1), "polar": _polar,
    "leaky_relu": _per_elem(ELEMENTWISE, 1), "leaky_relu_backward": _per_elem(ELEMENTWISE, 1),
    "prelu": _per_elem(ELEMENTWISE, 1), "elu": _per_elem(OTHER, 1),
    "exp": _transcendental, "log": _transcendental, "sqrt": _transcendental,
    "rsqrt": _transcendental, "sigmoid": _transcendental, "tanh": _transcendental,
    "sin": _transcendental, "cos": _transcendental, "gelu": _transcendental,
    "silu": _transcendental, "softplus": _transcendental, "atan2": _transcendental,
    "softmax": _per_elem(OTHER, 1), "log_softmax": _per_elem(OTHER, 1),
    "_softmax": _per_elem(OTHER, 1), "_log_softmax": _per_elem(OTHER, 1),
    "_softmax_backward_data": _per_elem(OTHER, 1),
    "_log_softmax_backward_data": _per_elem(OTHER, 1),
    "sigmoid_backward": _per_elem(ELEMENTWISE, 2), "tanh_backward": _per_elem(ELEMENTWISE, 2),
    "mean": _per_elem(OTHER, 1), "avg_pool1d": _per_elem(OTHER, 1),
    "avg_pool2d": _per_elem(OTHER, 1), "avg_pool3d": _per_elem(OTHER, 1),
    "adaptive_avg_pool1d": _per_elem(OTHER, 1), "adaptive_avg_pool2d": _per_elem(OTHER, 1),
    "_adaptive_avg_pool2d": _per_elem(OTHER, 1),
    "avg_pool2d_backward": _per_elem(OTHER, 1),
    "_adaptive_avg_pool2d_backward": _per_elem(OTHER, 1),
    "addcmul": _per_elem(ELEMENTWISE, 1), "lerp": _per_elem(ELEMENTWISE, 1),
}

# Ops whose conv_linear MACs make up the paper convention.
_CONV_OPS = {"_convolution", "convolution", "conv1d", "conv2d", "conv3d",
             "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_FC_OPS = {"linear", "addmm"}     # nn.Linear traces to these; a bare mm/matmul is no FC layer
# Which layers the CEMNet paper's op figure counts, per architecture (its Tables 1-2).
PAPER_FIGURE = {"lenet5": "conv + hidden FC", "vgg-small": "conv + FC", "vgg-large": "conv"}
PAPER_FIGURE_DEFAULT = "conv + FC"


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
    for name, shared in _SHARED_RULES.items():
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


# ---------------------------------------------------------------------------------------
# Counting passes.
# ---------------------------------------------------------------------------------------
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


def _count_forward_fvcore(model: nn.Module, x: torch.Tensor) -> _Tally:
    from fvcore.nn.jit_analysis import JitModelAnalysis

    tally = _Tally()

    def wrap(op, rule):
        def handle(inputs, outputs):
            c = Counter(rule(inputs, outputs))
            tally.add(op, c)
            return c
        return handle

    handles = {}
    for name, rule in itertools.chain(_JIT_RULES.items(),
                                      ((n, _lift_shared_jit(r)) for n, r in _SHARED_RULES.items())):
        if "aten::" + name in handles:
            continue
        for variant in (name, name + "_"):
            handles["aten::" + variant] = wrap("aten::" + variant, rule)
    an = JitModelAnalysis(model, (x,))
    an._ignored_ops = set()          # our whitelist replaces fvcore's (which hides mul/add)
    an._op_handles = _JitHandles(handles, tally)
    an.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    an.total()                       # runs the trace and the handles
    for op, n in an.unsupported_ops().items():
        if not is_zero_cost(op):
            tally.unsupported[op] += n
    return tally


def _make_flop_counter(tally: _Tally):
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
        with _make_flop_counter(fwd) as fc_fwd:
            y = model(*inputs)
        y = _first_tensor(y)
        flops_fwd = fc_fwd.get_total_flops()
        if wrt and y is not None and y.requires_grad:
            g = torch.ones_like(y)
            with _make_flop_counter(bwd):
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
            f"cannot count the {where} pass: no cost rule for {ops}; add a rule in "
            f"harness/ops.py (_SHARED_RULES/_JIT_RULES/_dispatch_rules) or, if it costs "
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


def paper_figure(conv: int, fc: int, fc_out: int, arch: str | None) -> tuple[int, str]:
    """(MACs, rule) of the CEMNet paper's op figure for `arch` (`PAPER_FIGURE`)."""
    rule = PAPER_FIGURE.get(arch or "", PAPER_FIGURE_DEFAULT)
    value = {"conv + hidden FC": conv + fc - fc_out, "conv + FC": conv + fc, "conv": conv}[rule]
    return value, rule


def count_ops(model: nn.Module, input_shape: tuple[int, ...], arch: str | None = None) -> dict:
    """Forward and backward op counts of `model` on one input of shape `input_shape`
    (without the batch dimension), under `CONVENTION`. JSON-serializable. `arch` selects
    which layers `macs_fwd_paper` counts (`PAPER_FIGURE`).

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
                      f"FlopCounterMode {check}; a rule in harness/ops.py is inconsistent")
    macs_fwd, macs_bwd = sum(b_fwd.values()), sum(b_bwd.values())
    conv = int(round(fv.conv))
    fc = int(round(sum(fv.fc)))
    fc_out = int(round(fv.fc[-1])) if fv.fc else 0
    paper, paper_rule = paper_figure(conv, fc, fc_out, arch)
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
        "macs_fwd_paper": paper,
        "paper_figure": paper_rule,
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
    rows.append([f"paper figure ({result.get('paper_figure', 'conv + FC')})",
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
    result = count_ops(model, input_shape, arch=arch)
    return f"{method} / {arch}\n" + format_table(result)
