"""Spectral pooling and frequency dropout: the crop every method that crops spectra uses.

Conventions as in `methods.fourier` (NCHW, unnormalized forward DFT, FFT order, DC at
[0, 0]); the constants it builds are cached per (size, dtype, device) by
`methods.fourier.cached_constant`. Tests: tests/test_fourier_pooling.py.

- `spectral_crop` / `spectral_pad`: THE spectral-pooling crop (FFT order, any parity, exact
  Nyquist fold with constant c) and its right inverse (zero-padding).
- `spectral_pool`: Rippel's spectral pooling of real maps (scale ortho/mean/none), with
  two fast paths proven equal to the fft2 reference: separable real matrices (small maps)
  and rfft2.
- `frequency_mask` / `sample_cutoff` / `dropout_fraction`: frequency dropout (Rippel A.3);
  `frequency_mask_1d` / `sample_cutoff_tensor` its separable, device-side form.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from methods.fourier import _dft_matrix64, cached_constant


# ------------------------------------------------------------------------------------------
# Spectral pooling (Rippel et al. 2015) and frequency dropout: docs/methods.md, "Spectral pooling".
# One crop operator for every method that crops spectra (spectral pooling, FCNN pooling).
# ------------------------------------------------------------------------------------------

POOL_SCALES = ("ortho", "mean", "none")


def _crop_plan(n_in: int, n_out: int) -> list[tuple]:
    """The crop of one axis as output pieces, in order: ("take", start, length) copies input
    bins; ("fold", i, j) is one output bin fold_c * (X[i] + X[j]). Shared by `_crop_axis`
    (tensors) and `_crop_matrix` (the same map as a matrix)."""
    if not 1 <= n_out < n_in:
        raise ValueError(f"cannot crop a spectrum axis of {n_in} to {n_out}; need 1 <= size <= {n_in}")
    pos, neg = (n_out + 1) // 2, n_out // 2          # bins 0..pos-1 and -neg..-1
    plan = [("take", 0, pos)]
    if n_out % 2 == 0:                                # pos == neg == n: fold +-n into bin n
        plan.append(("fold", pos, n_in - neg))
        if neg > 1:
            plan.append(("take", n_in - neg + 1, neg - 1))
    elif neg:
        plan.append(("take", n_in - neg, neg))
    return plan


def _crop_axis(x: torch.Tensor, dim: int, n_out: int, fold_c: float) -> torch.Tensor:
    """Keep signed frequencies -floor(n_out/2) .. ceil(n_out/2)-1 of `dim` (FFT order in and out).

    For even n_out < n_in the output Nyquist bin n = n_out/2 receives both input bins +-n:
    Y[n] = fold_c * (X[n] + X[-n]). n_out == n_in is the identity (no fold).
    """
    n_in = x.shape[dim]
    if n_out == n_in:
        return x
    parts = [x.narrow(dim, a, b) if kind == "take" else
             fold_c * (x.narrow(dim, a, 1) + x.narrow(dim, b, 1))
             for kind, a, b in _crop_plan(n_in, n_out)]
    return torch.cat(parts, dim)


def _crop_matrix(n_in: int, n_out: int, fold_c: float) -> np.ndarray:
    """`_crop_axis` of one axis as an (n_out, n_in) float64 matrix."""
    if n_out == n_in:
        return np.eye(n_in)
    c = np.zeros((n_out, n_in))
    row = 0
    for kind, a, b in _crop_plan(n_in, n_out):
        if kind == "take":
            c[np.arange(row, row + b), np.arange(a, a + b)] = 1.0
            row += b
        else:
            c[row, a] = c[row, b] = fold_c
            row += 1
    return c


def _pad_axis(y: torch.Tensor, dim: int, n_out: int, fold_c: float) -> torch.Tensor:
    """Zero-pad `dim` of an FFT-order spectrum to n_out; right inverse of `_crop_axis`.

    For even n_in the input Nyquist bin n is split into output bins +-n, each Y[n]/(2 fold_c),
    so that cropping back with the same fold_c returns Y.
    """
    n_in = y.shape[dim]
    if n_out == n_in:
        return y
    if n_out < n_in:
        raise ValueError(f"cannot zero-pad a spectrum axis of {n_in} to {n_out}")
    pos, neg = (n_in + 1) // 2, n_in // 2

    def zeros(n):
        shape = list(y.shape)
        shape[dim] = n
        return y.new_zeros(shape)

    if n_in % 2 == 0:
        nyq = y.narrow(dim, pos, 1) / (2 * fold_c)
        parts = [y.narrow(dim, 0, pos), nyq, zeros(n_out - n_in - 1), nyq,
                 y.narrow(dim, pos + 1, neg - 1)]
    else:
        parts = [y.narrow(dim, 0, pos), zeros(n_out - n_in), y.narrow(dim, pos, neg)]
    return torch.cat([p for p in parts if p.shape[dim]], dim)


def _size2(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def spectral_crop(y: torch.Tensor, size, *, fold_c: float = 0.5) -> torch.Tensor:
    """Crop a full H x W FFT-order spectrum (..., M, N) to (..., H, W): THE spectral pooling crop.

    Keeps signed frequencies -floor(H/2) .. ceil(H/2)-1 per axis, directly in FFT order (no
    fftshift). For even output sizes the two input bins +-n fold into the output Nyquist bin,
    Y[n] = c (X[n] + X[-n]) (the corner gets c^2 times the sum of 4); any real c maps the
    spectrum of a real map to the spectrum of a real map (Hermitian in, Hermitian out).
    c = 1/2 (default) equals Re(iDFT(naive crop)), the orthogonal projection onto real maps;
    c = 1/sqrt(2) makes the spatial operator a co-isometry; c = 1 is sampling-consistent.
    Same size is the identity. Linear; autograd gives the exact adjoint. No scaling here.
    """
    h, w = _size2(size)
    return _crop_axis(_crop_axis(y, -2, h, fold_c), -1, w, fold_c)


def spectral_pad(y: torch.Tensor, size, *, fold_c: float = 0.5) -> torch.Tensor:
    """Zero-pad a full FFT-order spectrum (..., H, W) to (..., M, N): the right inverse of
    `spectral_crop` with the same fold_c (crop(pad(Y)) = Y). An even input size's Nyquist bin
    is split over +-n (Y[n]/(2c) each), so pad(crop(X)) is the orthogonal projection of a
    real map onto the band-limited real maps, for every c (band-limited "sinc" upsampling).
    """
    m, n = _size2(size)
    return _pad_axis(_pad_axis(y, -2, m, fold_c), -1, n, fold_c)


def _pool_norm(scale: str) -> str:
    """torch.fft `norm` for forward and inverse transform that realizes a pooling scale.

    ortho: unitary DFT on both sizes (Rippel's convention): output gain sqrt(MN/HW) w.r.t.
           the input's mean, Parseval ||P x|| <= ||x||;
    mean:  `norm="forward"` on both: mean-preserving (Fourier-series coefficients);
    none:  torch default (unnormalized forward, 1/(HW) inverse): gain MN/HW.
    """
    try:
        return {"ortho": "ortho", "mean": "forward", "none": "backward"}[scale]
    except KeyError:
        raise ValueError(f"unknown pooling scale {scale!r}; use one of {', '.join(POOL_SCALES)}") \
            from None


MATMUL_POOL_MAX = 64   # maps up to this size pool by the separable matrices (see below)
POOL_PATHS = ("auto", "matmul", "rfft2", "fft2")


def _axis_pool_basis64(n_in: int, n_out: int, fold_c: float, scale: str) -> np.ndarray:
    """E (n_out, n_out, n_in), float64: the 1-D spectral pooling of one axis split by
    output frequency k, E[k] = Re(g_k (C F)_k), with F the n_in-point DFT, C the crop and
    Nyquist fold (`_crop_matrix`), g_k column k of the n_out-point inverse DFT, each scaled
    as `scale` prescribes for that axis. For a symmetric mask m (m_k = m_-k) the masked
    operator P_m = sum_k m_k E[k] maps real signals to real signals (its imaginary part is
    0), so the real part is the whole operator."""
    norm = _pool_norm(scale)
    f = _dft_matrix64(n_in, n_in, n_in, False)
    g = _dft_matrix64(n_out, n_out, n_out, True)
    if norm == "ortho":
        f, g = f / math.sqrt(n_in), g / math.sqrt(n_out)
    elif norm == "forward":
        f = f / n_in
    else:
        g = g / n_out
    cf = _crop_matrix(n_in, n_out, fold_c) @ f               # (n_out, n_in)
    return (g.T[:, :, None] * cf[:, None, :]).real           # [k, j, i] = g[j, k] cf[k, i]


def _axis_pool_basis(n_in, n_out, fold_c, scale, dtype, device) -> torch.Tensor:
    return cached_constant(("pool-basis", n_in, n_out, float(fold_c), scale),
                           lambda: _axis_pool_basis64(n_in, n_out, fold_c, scale), dtype, device)


def _axis_pool_matrix(n_in, n_out, fold_c, scale, dtype, device) -> torch.Tensor:
    """The unmasked 1-D pooling operator P (n_out x n_in) = sum_k E[k], cached."""
    return cached_constant(("pool-matrix", n_in, n_out, float(fold_c), scale),
                           lambda: _axis_pool_basis64(n_in, n_out, fold_c, scale).sum(0),
                           dtype, device)


def _masked_axis_matrix(m: torch.Tensor, n_in, n_out, fold_c, scale, dtype, device):
    basis = _axis_pool_basis(n_in, n_out, fold_c, scale, dtype, device)
    return (m.to(dtype) @ basis.view(n_out, n_out * n_in)).view(n_out, n_in)


def spectral_pool(x: torch.Tensor, size, *, fold_c: float = 0.5, scale: str = "ortho",
                  onesided: bool = True, mask=None, path: str = "auto") -> torch.Tensor:
    """Spectral pooling of real maps (..., M, N) -> (..., H, W): Re(iDFT(mask * crop(DFT(x)))).

    `spectral_crop` does the crop and Nyquist fold; `scale` the normalization (see
    `_pool_norm`); `mask` (FFT order, e.g. `frequency_mask`) is applied to the cropped
    spectrum (frequency dropout): an H x W tensor, or a separable pair (rows (H,), cols
    (W,)) of symmetric 1-D masks, meaning their outer product.

    `path` picks the computation; every path is the same linear operator
    (tests/test_fourier_pooling.py proves each against independent references):
    - "fft2" (also `onesided=False`): the definition, fft2 -> crop -> mask -> ifft2 -> Re.
    - "rfft2": rfft2, rows cropped and folded as in the reference, the one-sided columns
      0..W//2 kept and, for even W < N, the Nyquist column folded explicitly using
      Hermitian symmetry, Y[k, W/2] = c (R[k, W/2] + conj(R[-k mod H, W/2])), then irfft2
      (a naive rfft crop without that fold is off by O(1)).
    - "matmul": the operator is separable and real: x -> P x Q^T with P (H x M) and Q
      (W x N) the 1-D poolings of each axis (`_axis_pool_basis`; a separable mask enters
      as P = sum_k m_k E_k). Two real GEMMs per batch instead of two FFTs, a crop and a
      fold: ~2 (HMN + HNW) MACs per map, which beats pocketfft/cuFFT on small maps.
    - "auto" (default, `onesided=True`): "matmul" for maps up to MATMUL_POOL_MAX pixels a
      side unless `mask` is a full 2-D tensor, else "rfft2".
    """
    if x.is_complex():
        raise ValueError("spectral_pool takes real maps; use spectral_crop on spectra")
    h, w = _size2(size)
    m, n = (int(v) for v in x.shape[-2:])       # plain ints (the tracer hands out tensors)
    if not (1 <= h <= m and 1 <= w <= n):
        raise ValueError(f"cannot pool {m}x{n} maps to {h}x{w}")
    if path not in POOL_PATHS:
        raise ValueError(f"unknown pooling path {path!r}; use one of {', '.join(POOL_PATHS)}")
    norm = _pool_norm(scale)
    separable = isinstance(mask, (tuple, list))
    if not onesided:
        path = "fft2"
    elif path == "auto":
        path = "matmul" if (max(m, n) <= MATMUL_POOL_MAX and (mask is None or separable)) \
            else "rfft2"
    if separable and path != "matmul":
        mask = mask[0][:, None] * mask[1][None, :]
    if path == "matmul":
        if mask is not None and not separable:
            raise ValueError("the matmul pooling path takes a separable mask (rows, cols)")
        args = (fold_c, scale, x.dtype, x.device)
        if mask is None:
            p, q = _axis_pool_matrix(m, h, *args), _axis_pool_matrix(n, w, *args)
        else:
            p, q = _masked_axis_matrix(mask[0], m, h, *args), \
                _masked_axis_matrix(mask[1], n, w, *args)
        return torch.matmul(p, torch.matmul(x, q.mT))
    if path == "fft2":
        y = spectral_crop(torch.fft.fft2(x, norm=norm), (h, w), fold_c=fold_c)
        if mask is not None:
            y = y * mask
        return torch.fft.ifft2(y, norm=norm).real
    r = _crop_axis(torch.fft.rfft2(x, norm=norm), -2, h, fold_c)   # (..., h, n//2 + 1)
    if w < n:
        half = w // 2
        if w % 2 == 0:
            col = r.narrow(-1, half, 1)
            partner = torch.roll(torch.flip(col, dims=(-2,)), shifts=1, dims=-2).conj()
            r = torch.cat([r.narrow(-1, 0, half), fold_c * (col + partner)], -1)
        else:
            r = r.narrow(-1, 0, half + 1)
    if mask is not None:
        r = r * mask[..., :w // 2 + 1]
    return torch.fft.irfft2(r, s=(h, w), norm=norm)


def signed_frequency(n: int, *, device=None) -> torch.Tensor:
    """|signed frequency| of each FFT-order index 0..n-1: min(k, n - k)."""
    k = torch.arange(n, device=device)
    return torch.minimum(k, n - k)


def frequency_mask(size, cutoff: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Frequency-dropout mask (H x W, FFT order): 1 where the central square of side `cutoff`
    holds the bin, i.e. 2 * max(|k|, |l|) <= cutoff (signed frequencies, L-inf ball), else 0.

    Symmetric under (k, l) -> (-k, -l), so it keeps spectra of real maps Hermitian (real
    output). cutoff >= max(H, W) keeps every bin (no dropout); the DC bin is always kept.
    """
    h, w = _size2(size)
    kh = signed_frequency(h, device=device)
    kw = signed_frequency(w, device=device)
    radius = torch.maximum(kh[:, None], kw[None, :])
    return (2 * radius <= cutoff).to(dtype)


def sample_cutoff(n: int, low_fraction: float, generator: torch.Generator | None = None) -> float:
    """One frequency-dropout cutoff (side of the kept square), R ~ U[low_fraction * n, n].

    Drawn on the CPU from `generator` (default: the global torch generator, which the harness
    seeds), so runs are seed-deterministic. One draw per call: per mini-batch in the layers.
    """
    u = torch.rand((), generator=generator).item()
    return low_fraction * n + u * (1.0 - low_fraction) * n


def sample_cutoff_tensor(n: int, low_fraction: float, *, device=None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """`sample_cutoff` drawn and kept on `device` (a 0-dim float32 tensor): no host sync,
    so a CUDA graph can replay it (the default CUDA generator advances per replay). On the
    CPU it consumes the global generator exactly as `sample_cutoff` does."""
    u = torch.rand((), device=device, generator=generator)
    return u * ((1.0 - low_fraction) * n) + low_fraction * n


def frequency_mask_1d(n: int, cutoff, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """One axis of `frequency_mask`: 1 where 2 |k| <= cutoff (signed frequency k, FFT
    order). The L-inf square is separable: frequency_mask = outer(rows, cols)."""
    two_k = cached_constant(("two-k", n), lambda: 2 * np.minimum(np.arange(n), n - np.arange(n)),
                            torch.int64, device)
    return (two_k <= cutoff).to(dtype)


def dropout_fraction(m: int, num_layers: int, alpha: float, beta: float) -> float:
    """Rippel's layer-dependent lower fraction c_m = alpha + (m / M) (beta - alpha), m = 1..M."""
    return alpha + (m / num_layers) * (beta - alpha)


__all__ = ["POOL_SCALES", "POOL_PATHS", "spectral_crop", "spectral_pad", "spectral_pool",
           "signed_frequency", "frequency_mask", "frequency_mask_1d", "sample_cutoff",
           "sample_cutoff_tensor", "dropout_fraction"]
