"""Frequency-domain average pooling (Zhu et al., arXiv 2108.05690, seed 002, Thm 3.6).

Reference: docs/methods.md, "Real-node and Hartley convolutions". The
paper states "average pooling = multiplication by a sinc" for continuous signals; the exact
discrete form used here is our derivation (checked by tests/test_freqpool.py):

- Box filter. A k-tap box average along an axis of length N,
      z[n] = (1/k) sum_{j=0}^{k-1} x[n + j]          (circular, window starting at n),
  is the product Z = X * D_k with the Dirichlet kernel (periodic sinc)
      D_k[u] = (1/k) sum_j e^{+2 pi i u j / N}
             = (1/k) e^{+i pi u (k-1) / N} sin(pi u k / N) / sin(pi u / N),   D_k[0] = 1.
  The note's "causal" window z[n] = (1/k) sum_j x[n - j] has the conjugate kernel (linear
  phase e^{-i pi u (k-1)/N}); its output is the same map circularly shifted by k-1 samples.
  `align="start"` (default) is the window [s*m, s*m + k) of `nn.AvgPool2d`, so no shift is
  left; `align="causal"` is the causal form (documented shift of k-1).
- Subsampling by s (s divides N) is a spectral fold of the unnormalised DFT:
      w[m] = z[s m]   <=>   W[v] = (1/s) sum_{j=0}^{s-1} Z[v + j N / s],  v < N / s.
- Hence AvgPool2d(k, stride s) on a circularly padded map (pad k - s at the end; none when
  k = s) is  fold_s(X * (D_k (x) D_k))  exactly, with the spectra never leaving the frequency
  domain: one element-wise product and a sum of s^2 blocks instead of iFFT -> pool -> FFT.
  Separable in 2-D: D[u, v] = D_k[u] D_k[v].
- GAP = X[0, 0] / (H W) (the DC bin of the unnormalised DFT), `spectral_gap`.

Conventions (DESIGN.md): unnormalised forward DFT (torch default), FFT order, no shift.

`FreqAvgPool` is the pooling layer offered to CEMNet and FCNN as `--set pool=freq-avg`: it
takes a full H x W spectrum, optionally replaces it by its Hermitian part (the spectrum of
Re(ifft2(Y)), i.e. what the spatial pool "sandwich" sees after taking the real part), applies
the Dirichlet product and the fold, and returns the full or the one-sided (rfft2 half) pooled
spectrum. The Hermitian projection is taken after the fold (it commutes with the product by
the Hermitian kernel and with the fold), so it touches 1/s^2 of the data.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from harness.errors import UserError
from methods.fourier import from_planar

__all__ = ["dirichlet_kernel", "dirichlet_closed_form", "spectral_fold", "hermitian_part",
           "freq_avg_pool2d", "spectral_gap", "FreqAvgPool", "ALIGNS"]

ALIGNS = ("start", "causal")
# The fold's factor (kernel scale) for stride s under each DFT convention: the output is the
# pooled map's spectrum in the input's convention.
NORM_SCALE = {"backward": lambda s: 1.0 / (s * s), "ortho": lambda s: 1.0 / s,
              "forward": lambda s: 1.0}


def dirichlet_kernel(n: int, k: int, *, align: str = "start",
                     dtype: torch.dtype = torch.complex128, device=None) -> torch.Tensor:
    """D_k[u], u = 0..n-1: the DFT (length n) of the k-tap box of weight 1/k.

    align="start": the box covers x[n], ..., x[n+k-1] (nn.AvgPool windows); "causal": the box
    covers x[n-k+1], ..., x[n] (the linear-phase form). Computed as an explicit sum of
    k complex exponentials in float64 (exact to rounding), then cast to `dtype`.
    """
    if align not in ALIGNS:
        raise ValueError(f"unknown align {align!r}; use one of {ALIGNS}")
    if not 1 <= k <= n:
        raise ValueError(f"box length k={k} must be in [1, {n}]")
    sign = 1.0 if align == "start" else -1.0
    u = torch.arange(n, dtype=torch.float64)
    j = torch.arange(k, dtype=torch.float64)
    phase = sign * 2 * math.pi * torch.outer(u, j) / n
    d = torch.complex(torch.cos(phase), torch.sin(phase)).mean(dim=1)
    return d.to(dtype=dtype, device=device)


def dirichlet_closed_form(n: int, k: int, *, align: str = "start") -> torch.Tensor:
    """The closed form (1/k) e^{+-i pi u (k-1)/n} sin(pi u k / n) / sin(pi u / n) (u=0: 1),
    complex128. Same values as `dirichlet_kernel`; kept for documentation and the tests."""
    sign = 1.0 if align == "start" else -1.0
    u = torch.arange(n, dtype=torch.float64)
    num = torch.sin(math.pi * u * k / n)
    den = torch.sin(math.pi * u / n)
    mag = torch.where(u == 0, torch.ones_like(u), num / (k * torch.where(u == 0, 1.0, den)))
    ph = sign * math.pi * u * (k - 1) / n
    return torch.complex(mag * torch.cos(ph), mag * torch.sin(ph))


def spectral_fold(x: torch.Tensor, s: int | tuple[int, int]) -> torch.Tensor:
    """(..., H, W) -> (..., H/s, W/s): Y[v] = (1/s) sum_j X[v + j N/s] on each axis.

    The unnormalised DFT of a map subsampled by s (every s-th sample, from index 0). s must
    divide H and W."""
    sh, sw = (s, s) if isinstance(s, int) else s
    h, w = x.shape[-2:]
    if h % sh or w % sw:
        raise ValueError(f"fold by {sh}x{sw} needs sizes divisible by the stride, got {h}x{w}")
    return _block_sum(x, sh, sw) / (sh * sw)


def _block_sum(x: torch.Tensor, sh: int, sw: int) -> torch.Tensor:
    """Sum of the sh x sw blocks of size (H/sh, W/sw) tiling the last two dims, as slice
    additions (faster on CPU than a reduction over the strided block axes)."""
    h, w = x.shape[-2:]
    bh, bw = h // sh, w // sw
    out = None
    for i in range(sh):
        for j in range(sw):
            blk = x[..., i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
            out = blk if out is None else out + blk
    return out


def hermitian_part(x: torch.Tensor) -> torch.Tensor:
    """(X[k] + conj X[-k]) / 2 over the last two dims: the spectrum of Re(ifft2(X))."""
    rev = torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return (x + rev.conj()) / 2


def _kernel2d(size: tuple[int, int], k: tuple[int, int], align: str, dtype, device,
              scale: float = 1.0) -> torch.Tensor:
    h, w = size
    d = torch.outer(dirichlet_kernel(h, k[0], align=align), dirichlet_kernel(w, k[1], align=align))
    return (d * scale).to(dtype=dtype, device=device)


def freq_avg_pool2d(x: torch.Tensor, kernel: int | tuple[int, int], stride=None, *,
                    align: str = "start") -> torch.Tensor:
    """AvgPool2d(kernel, stride) of the map whose full fft2 spectrum is `x` (..., H, W), as
    fold_stride(x * D_kernel), returning the pooled map's full spectrum (..., H/s, W/s).

    Equals fft2(F.avg_pool2d(circular_pad(ifft2(x)), kernel, stride)) with the map padded
    circularly by kernel - stride at the bottom/right (align="start"); with align="causal"
    the pooled map is read k-1 samples earlier (circular shift)."""
    k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    s = k if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
    cdtype = x.dtype if x.is_complex() else torch.promote_types(x.dtype, torch.complex64)
    d = _kernel2d(tuple(x.shape[-2:]), k, align, cdtype, x.device)
    return spectral_fold(x * d, s)


def spectral_gap(x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Global average pooling from an unnormalised spectrum (..., H, W): X[..., 0, 0] / (H W).

    For a one-sided (rfft2) half pass the spatial `size` (H, W); the DC bin is the same.
    For a Hermitian spectrum the result is real up to rounding (take `.real`)."""
    h, w = size if size is not None else x.shape[-2:]
    return x[..., 0, 0] / (h * w)


class FreqAvgPool(nn.Module):
    """Average pooling of a spectrum, in the frequency domain (Dirichlet product + fold).

    Input: a complex full spectrum (B, C, H, W) of size `size` = (H, W). Output: the pooled
    spectrum (B, C, H/s, W/s), or its one-sided half (B, C, H/s, W/s//2 + 1) if `onesided`.
    With `real_part`, the result is the spectrum of avgpool(Re(ifft2(Y))) (the Hermitian
    part), matching the CEMNet/FCNN pool sandwich that takes Re() before pooling.

    `norm` is the DFT convention of the spectra (torch's `norm`): "backward" (unnormalised,
    the default and CEMNet's), "ortho" (FCNN's) or "forward"; the output is the pooled map's
    spectrum in the same convention (the fold's factor is 1/s^2, 1/s or 1 respectively).
    `planar_input`: the input may be a real planar (B, 2C, H, W) spectrum (`methods.fourier`).

    The kernel (with the fold's factor folded in) is a fixed complex buffer: one complex
    element-wise product per input bin, then the sum of s^2 blocks. No FFT.
    """

    def __init__(self, size: tuple[int, int], kernel: int = 2, stride: int | None = None, *,
                 real_part: bool = True, onesided: bool = False, align: str = "start",
                 norm: str = "backward", planar_input: bool = False):
        super().__init__()
        h, w = size
        s = kernel if stride is None else stride
        if h % s or w % s:
            raise UserError(f"pool=freq-avg: a {h}x{w} map is not divisible by the stride {s}; "
                            f"use an input whose pooled sizes stay divisible, or another pool")
        if norm not in NORM_SCALE:
            raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(NORM_SCALE)}")
        self.size, self.kernel, self.stride = (h, w), int(kernel), int(s)
        self.real_part, self.onesided, self.align = real_part, onesided, align
        self.norm, self.planar_input = norm, planar_input
        kern = _kernel2d((h, w), (kernel, kernel), align, torch.complex128, None,
                         scale=NORM_SCALE[norm](s))
        self.register_buffer("dirichlet", kern, persistent=False)
        self._cast: tuple | None = None   # (dtype, device, kernel cast to it): cast once

    def _kernel_as(self, dtype) -> torch.Tensor:
        """The kernel in the compute dtype, cast once per (dtype, device), not per call."""
        d = self.dirichlet
        if d.dtype == dtype:
            return d
        if self._cast is None or self._cast[:2] != (dtype, d.device):
            self._cast = (dtype, d.device, d.to(dtype))
        return self._cast[2]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.planar_input and not y.is_complex():
            y = from_planar(y)
        if tuple(y.shape[-2:]) != self.size:
            raise ValueError(f"FreqAvgPool built for {self.size}, got {tuple(y.shape[-2:])}")
        h, w = self.size
        s = self.stride
        z = _block_sum(y * self._kernel_as(y.dtype), s, s)
        if self.real_part:
            z = hermitian_part(z)
        if self.onesided:
            z = z[..., : (w // s) // 2 + 1]
        return z

    def extra_repr(self):
        return (f"size={self.size}, kernel={self.kernel}, stride={self.stride}, "
                f"real_part={self.real_part}, onesided={self.onesided}, align={self.align}, "
                f"norm={self.norm}, planar_input={self.planar_input}")
