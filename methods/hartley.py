"""Hartley convolution: the exact real-valued alternative to the theory paper's Laplace idea.

Zhu et al. (seed 002, §4) want convolution "in the real domain". The Laplace route needs an
ill-conditioned inverse (methods/realnode.py); its exact,
real-valued alternative (docs/methods.md, "Real-node and Hartley convolutions") is the discrete
Hartley transform (DHT), which is real, its own inverse up to scale, and has an exact
convolution theorem. For an L1 x L2 grid and a 2-D index k = (u, v), -k = (-u mod L1,
-v mod L2):

    H{x}[k]   = sum_n x[n] cas(2 pi (u n1 / L1 + v n2 / L2)),   cas t = cos t + sin t
    H H       = L1 L2 I                                   (involution)
    H{a (*) b}[k] = 1/2 [A(k) (B(k) + B(-k)) + A(-k) (B(k) - B(-k))]   ((*): circular conv.)

The layer (an `nn.Conv2d` with 'same' zero padding k // 2, odd k, stride 1; same parameters,
initialization and state-dict keys as the cnn's conv) computes, with E = (W(k) + W(-k)) / 2
and O = (W(k) - W(-k)) / 2 the even and odd parts of the kernel's DHT:

    Z_o[k] = sum_i X_i(k) E_io(k) + X_i(-k) O_io(k),     y_o = H{Z_o} / (L1 L2)

Real numbers throughout: every transform is a product with real cos/sin matrices (buffers),
X(-k) is an index reversal (flip + roll), and the channel mix is one real batched matmul
over the frequencies, [X(k), X(-k)] (B x 2Cin) @ [E; O] (2Cin x Cout). No complex dtype and
no FFT is used anywhere; the 2-D DHT (non-separable cas(a + b)) is computed as
P (C2 + S2)^T + Q (C2 - S2)^T with P = C1 x, Q = S1 x (cas(a + b) = cos a cas b + sin a
cas(-b)).

Choices (ours, documented):
- Padding (`padding`): "zeros" (default) makes the layer equal to the cnn's zero-padded
  'same' convolution: the grid is L = H + k - 1 per axis (the linear-convolution size), the
  input sits at rows/cols 0..H-1 (the DHT matrices are truncated to those columns, so no
  padding is materialized) and only rows/cols 0..H-1 of the inverse are computed.
  "circular": L = H, the circular convolution (= F.conv2d on a circularly padded input).
- Correlation, as F.conv2d: the circular kernel is h[(p - a) mod L1, (p - b) mod L2] =
  w[a, b] with p = k // 2, built directly into the kernel's DHT matrices.
- The 1 / (L1 L2) of the inverse and the 1/2 of E and O are folded into the matrices.
- Transforms by dense real matmuls, O(L^3) per map rather than an O(L^2 log L) fast Hartley
  transform: torch has no FHT, and an FFT-based DHT would compute in complex numbers,
  which is what the paper's real-domain idea wants to avoid. Op counts charge these
  matmuls as they run.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from harness.errors import UserError
from methods import Option, register, skeleton
from methods.fourier import cached_constant

PADDINGS = ("zeros", "circular")


def cas_matrices(length: int, rows, cols, sign: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2 pi (sign * r * c) / length for r in `rows` (out) and c in `cols` (in),
    float64, each len(rows) x len(cols)."""
    r = np.asarray(rows, dtype=np.int64)[:, None]
    c = np.asarray(cols, dtype=np.int64)[None, :]
    ang = 2 * np.pi * np.mod(sign * r * c, length) / length
    return np.cos(ang), np.sin(ang)


def dht2(x: torch.Tensor, c1, s1, c2p, c2m) -> torch.Tensor:
    """2-D DHT over the last two dims by real matrix products: (C1 x) C2p + (S1 x) C2m, with
    C2p = (C2 + S2)^T and C2m = (C2 - S2)^T (cas(a + b) = cos a cas b + sin a cas(-b)).
    As einsums rather than matmuls so that the op count's paper terms (conv + FC, where
    matmul counts as FC) do not take the transforms for fully connected layers."""
    def lr(left, right):
        return torch.einsum("...ik,kl->...il", torch.einsum("ij,...jk->...ik", left, x), right)
    return lr(c1, c2p) + lr(s1, c2m)


def dht2_matrices(length: tuple[int, int], rows: tuple, cols: tuple, scale: float = 1.0):
    """The four matrices of `dht2` for output indices `rows[i]` (axis i) from input indices
    `cols[i]`, on an L1 x L2 grid; `scale` multiplies the result."""
    c1, s1 = cas_matrices(length[0], rows[0], cols[0])
    c2, s2 = cas_matrices(length[1], rows[1], cols[1])
    return c1 * scale, s1 * scale, (c2 + s2).T, (c2 - s2).T


def reverse(z: torch.Tensor) -> torch.Tensor:
    """z(-k) over the last two dims: index k -> -k mod L (flip, then roll by one)."""
    return torch.roll(torch.flip(z, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


class HartleyConv2d(nn.Conv2d):
    """An `nn.Conv2d` (k x k, 'same', stride 1, odd k) computed through the DHT convolution
    theorem on a fixed H x W map size."""

    def __init__(self, cin: int, cout: int, k: int, size: tuple[int, int], *,
                 padding: str = "zeros", bias: bool = True):
        if k % 2 == 0:
            raise UserError(f"hartley needs an odd kernel size for 'same' padding, got {k}")
        if padding not in PADDINGS:
            raise UserError(f"bad value padding={padding!r}: use one of {', '.join(PADDINGS)}")
        h, w = size
        if padding == "circular" and (k > h or k > w):
            raise UserError(f"hartley padding=circular needs maps of at least {k}x{k}, got "
                            f"{h}x{w}; use padding=zeros")
        super().__init__(cin, cout, k, padding=k // 2, bias=bias)
        self.size, self.mode = (h, w), padding
        self.grid = (h + k - 1, w + k - 1) if padding == "zeros" else (h, w)
        l1, l2 = self.grid
        p = k // 2
        taps = [(p - a) for a in range(k)]            # correlation: kernel tap a sits at p - a
        mats = {
            "x": dht2_matrices(self.grid, (range(l1), range(l2)), (range(h), range(w))),
            # scale 1/2: E and O below are then a sum and a difference (no multiply)
            "w": dht2_matrices(self.grid, (range(l1), range(l2)), (taps, taps), scale=0.5),
            "inv": dht2_matrices(self.grid, (range(h), range(w)), (range(l1), range(l2)),
                                 scale=1.0 / (l1 * l2)),
        }
        # float64 buffers (exact constants; cast to the input dtype in forward).
        for key, four in mats.items():
            for name, m in zip(("c1", "s1", "c2p", "c2m"), four):
                self.register_buffer(f"{key}_{name}", torch.from_numpy(np.ascontiguousarray(m)),
                                     persistent=False)

    def _mats(self, key: str, dtype):
        # cast once per dtype and device, not per call (cached_constant): the float64
        # buffers are the exact constants, the cast copies are shared by equal layers
        ident = ("hartley", self.size, self.grid, self.kernel_size[0], key)
        return [cached_constant(ident + (n,), lambda n=n: getattr(self, f"{key}_{n}"), dtype,
                                getattr(self, f"{key}_{n}").device)
                for n in ("c1", "s1", "c2p", "c2m")]

    def kernel_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(E, O): even and odd parts of the DHT of the circular kernel, (Cout, Cin, L1, L2)."""
        wd = dht2(self.weight, *self._mats("w", self.weight.dtype))   # W(k) / 2
        wr = reverse(wd)                                               # W(-k) / 2
        return wd + wr, wd - wr

    def forward(self, x):
        b, cin = x.shape[:2]
        l1, l2 = self.grid
        xd = dht2(x, *self._mats("x", x.dtype))                        # (B, Cin, L1, L2)
        e, o = self.kernel_parts()
        cout = e.shape[0]
        f = l1 * l2
        xx = torch.cat([xd, reverse(xd)], dim=1).permute(2, 3, 0, 1).reshape(f, b, 2 * cin)
        eo = torch.cat([e, o], dim=1).permute(2, 3, 1, 0).reshape(f, 2 * cin, cout)
        z = torch.bmm(xx, eo).view(l1, l2, b, cout).permute(2, 3, 0, 1)  # (B, Cout, L1, L2)
        y = dht2(z, *self._mats("inv", x.dtype))                       # (B, Cout, H, W)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def describe(self) -> dict:
        return {"layer": "hartley", "padding": self.mode, "map": list(self.size),
                "dht_grid": list(self.grid)}

    def extra_repr(self):
        return super().extra_repr() + f", size={self.size}, dht_grid={self.grid}"


OPTIONS = {"padding": Option("zeros", choices=PADDINGS)}


@register("hartley", archs=skeleton.ARCHS, options=skeleton.options(OPTIONS),
          default_arch=skeleton.default_arch,
          description="convolution through the discrete Hartley transform's exact convolution "
                      "theorem, real-valued throughout, inside the cnn skeleton")
def build_hartley(arch, input_shape, num_classes, *, dropout_conv, dropout_fc, padding):
    def conv(cin, cout, k, size):
        return HartleyConv2d(cin, cout, k, size, padding=padding)

    return skeleton.build(arch, input_shape, num_classes, dropout_conv, dropout_fc, conv,
                          {"method": "hartley", "padding": padding,
                           "source": "docs/methods.md (DHT convolution theorem); "
                                     "seed 002's real-domain proposal"})
