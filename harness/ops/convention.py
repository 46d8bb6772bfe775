"""The op-count convention, written once: its text, id, categories and cost rules.

Tool-independent (no torch, no fvcore): the FFT cost (`fft_macs`, `fft_plan`), einsum
contraction cost (`einsum_macs`), the element-wise rules shared by both counting tools
(`SHARED_RULES`, on operand descriptions `_T`), the operators that cost nothing
(`ZERO_COST_OPS`) and the paper's rule (`paper_figure`). `harness.ops.handles` lifts
the rules into fvcore's JIT handles and FlopCounterMode's mappings; `harness.ops.count`
runs them. Reports take the categories and the id from here.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

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
- Paper convention (`macs_fwd_paper`), one rule for every architecture: the real
  convolution MACs plus the MACs of every fully connected layer, one multiply per MAC,
  per image (the CEMNet paper's reading of its CNN op figures; no work is shared across
  a batch). A fully connected layer is an `aten::linear`/`addmm`; other matrix products
  (e.g. spectral pooling operators) are conv_linear MACs but not FC layers. The rule
  gives the paper's VGG-small figure (68,097,024). Its LeNet-5 figure (692,160) leaves
  out the output layer and its VGG-large figure (275,447,808) every FC layer: those
  match only under a reading guessed per architecture (`PAPER_READINGS`), and reports
  call such a match "fitted", never reproduced.
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


SHARED_RULES: dict[str, Callable] = {
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
PAPER_RULE = "conv + FC"
# Other readings of which layers a paper's figure counts, tried only to say that a figure
# the rule misses is matched by a guess ("fitted"): (name, MACs from the paper terms).
PAPER_READINGS: tuple[tuple[str, Callable[[int, int, int], int]], ...] = (
    ("conv + FC without the output layer", lambda conv, fc, fc_out: conv + fc - fc_out),
    ("conv only", lambda conv, fc, fc_out: conv),
)


def paper_figure(conv: int, fc: int) -> int:
    """MACs per image under the paper convention's one rule (`PAPER_RULE`)."""
    return conv + fc
