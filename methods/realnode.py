"""Real-node convolution: the measurable discrete form of the theory paper's Laplace proposal.

Zhu et al., "Going Deeper in Frequency CNN: A Theoretical Perspective" (arXiv 2108.05690;
seed 002, §4) propose the Laplace transform so that convolution "runs in the real domain".
They give no discrete algorithm and never invert the transform. Its discrete
form (docs/methods.md, "Real-node and Hartley convolutions") makes it concrete: the
discrete Laplace transform at real p is the Z-transform at real points z = e^p, linear
convolution is polynomial multiplication, and evaluating both factors at real nodes,
multiplying point-wise and interpolating back is Toom-Cook; tiled, it is Winograd's minimal
filtering F(m, r). This module implements exactly that, as the convolution of `methods.cnn`.

The transform (1-D; 2-D is its tensor product). F(m, r) computes m outputs of the
correlation y_i = sum_k g_k d_{i+k} (what `F.conv2d` computes) from a tile d of n = m + r - 1
inputs and an r-tap filter g, with n - 1 finite real nodes a_j and the node at infinity:

    y = A^T [ (G g) * (B^T d) ],    2-D:  Y = A^T [ (G g G^T) * (B^T d B) ] A

derived from the polynomial product c = g * h = V^{-1} ((V_r g) * (V_m h)) (V: rows
[1, a, ..., a^{n-1}] per finite node and e_{n-1} for infinity, the Vandermonde matrix) by
transposition (y = T_g^T d, T_g the convolution matrix of g): A^T = V_m^T, B^T = V^{-T},
G = V_r. As in Lavin & Gray (2016) and wincnn, row j of B^T is scaled by
f_j = prod_{l != j} (a_j - a_l) and row j of G by 1 / f_j (an exact diagonal rescaling), so
that for integer nodes B^T holds the integer coefficients of prod_{l != j} (x - a_l) and its
last row those of prod_l (x - a_l). The matrices are built from these closed forms in exact
rational arithmetic (`fractions.Fraction`) for the standard nodes, so the algorithm is
exact in exact arithmetic; only the float conversion and the float arithmetic round.

Choices the paper leaves open (all ours, documented):
- Nodes (`nodes`): "standard" = 0, 1, -1, 2, -2, 1/2, -1/2, 3, -3, 1/3, -1/3, ... plus
  infinity (the usual Winograd choice: F(2,3) uses 0, +-1, inf and F(4,3) 0, +-1, +-2, inf),
  or "chebyshev" = the n - 1 Chebyshev points cos((2j+1) pi / (2(n-1))) plus infinity (the
  better-conditioned real nodes; irrational, so built in float64).
- Tile (`tile`) m in {2, 4, 6}: F(2x2, rxr), F(4x4, rxr), F(6x6, rxr) for the net's kernels:
  r = 3 in `vgg-small`, r = 5 in `lenet5` (methods.cnn uses 5x5 kernels there, so LeNet-5
  runs F(m x m, 5 x 5)). Default m = 2: F(2,3) and F(2,5) are the least ill-conditioned;
  m = 6 is offered to show where fp32 breaks (see `describe()` and
  measure/realnode_error.py). A layer whose map is smaller than the tile uses the
  largest offered tile that fits (vgg-small's 2 x 2 maps run F(2x2, 3x3) for any `tile`;
  `describe()` lists each layer's F).
- 'same' zero padding r // 2 as the cnn's conv (odd kernels only), stride 1; the map is
  covered by ceil(H/m) x ceil(W/m) tiles, the input zero-padded at the bottom/right to
  fill the last tile, and the output cropped to H x W. Tiles overlap by r - 1 inputs.
- The layer IS an `nn.Conv2d` (same parameters, same initialization, same state-dict keys)
  whose forward runs the tiled transform; with the same seed the network starts from
  exactly the weights of the cnn baseline.
- The transforms are dense real matmuls (B^T d B per tile, G w G^T per filter, A^T M A per
  tile) and the per-node channel mix is one batched matmul over the n^2 nodes:
  (n^2, Cout, Cin) @ (n^2, Cin, tiles). Op counts therefore charge the transforms as dense
  MACs; a hand-written transform would replace most of them by additions (integer
  entries), so the counts are an upper bound on what Winograd's minimal algorithm needs.
- Conditioning: `describe()` records cond_2 of A^T, G, B^T and of V for each layer. The
  note tabulates cond(V) for its node families (1.1e4 at n = 8, 9.4e13 at n = 16); our V
  includes the node at infinity and these node orders, so its values differ (n = 8, i.e.
  F(6,3) or F(4,5), standard nodes: 1.9e3). What limits float32 is the product of the
  three transforms, not cond(V) alone: the Chebyshev nodes have the smaller cond(V) but
  give larger float32 errors here (measure/realnode_error.py; one likely cause: their
  matrix entries are irrational and all round).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.errors import UserError
from methods import Option, register, skeleton
from methods.fourier import cached_constant

NODE_SETS = ("standard", "chebyshev")
TILES = (2, 4, 6)


def finite_nodes(count: int, kind: str = "standard") -> list:
    """The `count` finite nodes (`toom_cook_exact` always adds the node at infinity).

    standard: 0, 1, -1, 2, -2, 1/2, -1/2, 3, -3, 1/3, -1/3, ... as exact Fractions;
    chebyshev: cos((2j + 1) pi / (2 count)), j = 0 .. count - 1, as floats."""
    if kind == "chebyshev":
        return [math.cos((2 * j + 1) * math.pi / (2 * count)) for j in range(count)]
    if kind != "standard":
        raise ValueError(f"unknown node set {kind!r}; use one of {', '.join(NODE_SETS)}")
    out = [Fraction(0)]
    k = 1
    while len(out) < count:
        for v in (Fraction(k), Fraction(-k), Fraction(1, k), Fraction(-1, k)):
            if v not in out:
                out.append(v)
        k += 1
    return out[:count]


def _poly_from_roots(roots, one) -> list:
    """Coefficients (constant term first) of prod (x - r); `one` is 1 in the number type."""
    c = [one]
    for r in roots:
        nxt = [0 * c[0]] * (len(c) + 1)
        for i, ci in enumerate(c):
            nxt[i + 1] += ci
            nxt[i] -= r * ci
        c = nxt
    return c


def toom_cook_exact(m: int, r: int, kind: str = "standard"):
    """(A^T (m x n), G (n x r), B^T (n x n), V (n x n)) of F(m, r), n = m + r - 1, as lists
    of rows, from the closed forms: Fractions (exact) for the standard nodes."""
    n = m + r - 1
    a = finite_nodes(n - 1, kind)
    one = Fraction(1) if kind == "standard" else 1.0
    zero = 0 * one
    at = [[aj ** i for aj in a] + [one if i == m - 1 else zero] for i in range(m)]
    g, bt = [], []
    for j, aj in enumerate(a):
        others = a[:j] + a[j + 1:]
        f = one
        for al in others:
            f *= aj - al
        g.append([aj ** k / f for k in range(r)])
        bt.append(_poly_from_roots(others, one) + [zero])   # degree n - 2, padded to n
    g.append([one if k == r - 1 else zero for k in range(r)])
    bt.append(_poly_from_roots(a, one))
    v = [[aj ** k for k in range(n)] for aj in a]
    v.append([one if k == n - 1 else zero for k in range(n)])
    return at, g, bt, v


def toom_cook(m: int, r: int, kind: str = "standard"):
    """`toom_cook_exact` as float64 numpy arrays (each entry rounded once)."""
    return tuple(np.array([[float(x) for x in row] for row in mat])
                 for mat in toom_cook_exact(m, r, kind))


def conditioning(m: int, r: int, kind: str = "standard") -> dict:
    """2-norm condition numbers of the transform matrices of F(m, r)."""
    at, g, bt, v = toom_cook(m, r, kind)
    return {"cond_AT": float(np.linalg.cond(at)), "cond_G": float(np.linalg.cond(g)),
            "cond_BT": float(np.linalg.cond(bt)), "cond_V": float(np.linalg.cond(v))}


def sandwich(left: torch.Tensor, x: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left @ x @ right^T over the last two dims of x. As einsums rather than matmuls so that
    the op count's paper terms (conv + FC, where matmul counts as FC) do not take the
    transforms for fully connected layers."""
    return torch.einsum("...ik,lk->...il", torch.einsum("ij,...jk->...ik", left, x), right)


class RealNodeConv2d(nn.Conv2d):
    """An `nn.Conv2d` (k x k, 'same' zero padding, stride 1, odd k) computed by tiled
    Toom-Cook / Winograd F(m x m, k x k) with real nodes."""

    def __init__(self, cin: int, cout: int, k: int, *, tile: int = 2, nodes: str = "standard",
                 bias: bool = True):
        if k % 2 == 0:
            raise UserError(f"realnode needs an odd kernel size for 'same' padding, got {k}")
        super().__init__(cin, cout, k, padding=k // 2, bias=bias)
        self.tile, self.nodes = int(tile), nodes
        self.n = self.tile + k - 1
        at, g, bt, _ = toom_cook(self.tile, k, nodes)
        # Constants as float64 buffers (follow .to(device), no per-call construction), cast to
        # the input's dtype in forward: a float32 copy made at init would stay rounded after
        # .double(), and the float64 check would then measure float32 matrices.
        for name, mat in (("AT", at), ("G", g), ("BT", bt)):
            self.register_buffer(name, torch.from_numpy(mat), persistent=False)
        self.cond = conditioning(self.tile, k, nodes)

    def forward(self, x):
        b, c, h, w = x.shape
        m, n, r = self.tile, self.n, self.kernel_size[0]
        p = r // 2
        th, tw = -(-h // m), -(-w // m)
        x = F.pad(x, (p, tw * m + r - 1 - w - p, p, th * m + r - 1 - h - p))
        d = x.unfold(2, n, m).unfold(3, n, m)                    # (B, C, th, tw, n, n) tiles
        # cast once per dtype and device, not per call (the float64 buffers stay exact)
        ident = ("realnode", self.tile, r, self.nodes)
        bt, at, g = (cached_constant(ident + (name,), lambda name=name: getattr(self, name), x.dtype,
                                     x.device) for name in ("BT", "AT", "G"))
        v = sandwich(bt, d, bt)                                   # B^T d B
        u = sandwich(g, self.weight, g)                           # G g G^T: (Cout, C, n, n)
        cout = u.shape[0]
        vm = v.permute(4, 5, 1, 0, 2, 3).reshape(n * n, c, b * th * tw)
        um = u.permute(2, 3, 0, 1).reshape(n * n, cout, c)
        mm = torch.bmm(um, vm)                                    # per node: (Cout, C) @ (C, P)
        mm = mm.view(n, n, cout, b, th, tw).permute(3, 2, 4, 5, 0, 1)
        y = sandwich(at, mm, at)                                  # A^T M A: (B, Cout, th, tw, m, m)
        y = y.permute(0, 1, 2, 4, 3, 5).reshape(b, cout, th * m, tw * m)[:, :, :h, :w]
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def describe(self) -> dict:
        k = self.kernel_size[0]
        return {"layer": "realnode", "F": f"F({self.tile}x{self.tile}, {k}x{k})",
                "nodes": self.nodes, "tile_inputs": self.n,
                "multiplies_per_output": self.n ** 2 / self.tile ** 2, "direct": k * k,
                **self.cond}

    def extra_repr(self):
        return super().extra_repr() + f", tile={self.tile}, nodes={self.nodes}"


def layer_tile(tile: int, size: tuple[int, int]) -> int:
    """The tile a layer on an H x W map uses: the largest offered tile <= `tile` that fits
    the map (a tile larger than the map only adds padded, discarded outputs)."""
    fits = [t for t in TILES if t <= tile and t <= min(size)]
    return max(fits) if fits else min(TILES)


OPTIONS = {"tile": Option(2, choices=TILES), "nodes": Option("standard", choices=NODE_SETS)}


@register("realnode", archs=skeleton.ARCHS, options=skeleton.options(OPTIONS),
          default_arch=skeleton.default_arch,
          description="theory paper's real-domain (Laplace) convolution in its discrete form: "
                      "tiled Toom-Cook/Winograd F(m x m, r x r) with real nodes, inside the cnn "
                      "skeleton")
def build_realnode(arch, input_shape, num_classes, *, dropout_conv, dropout_fc, tile, nodes):
    def conv(cin, cout, k, size):
        return RealNodeConv2d(cin, cout, k, tile=layer_tile(tile, size), nodes=nodes)

    return skeleton.build(arch, input_shape, num_classes, dropout_conv, dropout_fc, conv,
                          {"method": "realnode", "tile": tile, "nodes": nodes,
                           "source": "Zhu et al. arXiv 2108.05690 §4 via docs/methods.md "
                                     "(Toom-Cook / Winograd with real nodes)"})
