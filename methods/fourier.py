"""Shared spectral primitives: one implementation each, tested once (tests/test_cemnet.py,
tests/test_fourier_pooling.py).

Conventions (DESIGN.md): NCHW; complex feature maps are complex tensors; the DFT is the
unnormalized forward `torch.fft.fft2` with 1/(H*W) on the inverse; FFT order, no fftshift
(DC at index [0, 0]). A "spectrum" below is the full H x W `fft2` unless a function says
it takes the one-sided (`rfft2`, last dim W//2 + 1) half.

Contents
- `pad_kernel`: zero-pad a K x K kernel to H x W, kernel at the top-left.
- `support_mask`: the 0/1 top-left K x K mask (the "Weight Fixation matrix V").
- `kernel_spectrum`: fft2 of the padded kernel, by truncated DFT matrices, laid out
  frequency-major for `spectral_matmul`.
- `spectral_matmul`: the per-frequency complex channel mix, Y[f] = op(X[f]) @ W[f]
  (the CEMNet EM contraction and the FCNN Fourier convolution).
- `hermitian_fill`: the full spectrum from its one-sided half (real-signal symmetry).
- `wf_project`: projection onto spectra of real kernels with K x K top-left support.
- `spectral_maxpool`: the pool "sandwich" fft2(maxpool(Re(ifft2(Y)))).
- `to_planar` / `from_planar`: complex (B, C, H, W) <-> real "planar" (B, 2C, H, W) with
  the real parts in channels [0, C) and the imaginary parts in [C, 2C). Per-part layers
  (the "two-branch" BN, split activations, noise) are then ordinary fast real layers.
- `spectral_crop` / `spectral_pad`: THE spectral-pooling crop (FFT order, any parity, exact
  Nyquist fold with constant c) and its right inverse (zero-padding); tests in
  tests/test_fourier_pooling.py.
- `spectral_pool`: Rippel's spectral pooling of real maps (scale ortho/mean/none), with the
  rfft2 fast path proven equal to the fft2 reference.
- `frequency_mask` / `sample_cutoff` / `dropout_fraction`: frequency dropout (Rippel A.3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["pad_kernel", "support_mask", "kernel_spectrum", "spectral_matmul", "hermitian_fill",
           "wf_project", "spectral_maxpool", "to_planar", "from_planar"]


def pad_kernel(w: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the last two dims of `w` (..., kh, kw) to (..., H, W), kernel at the top-left.

    This is the paper's W_p (CEMNet Eq. 4): the kernel occupies rows [0, kh) and columns
    [0, kw); the rest is zero. `fft2(pad_kernel(w, (H, W)))` is the kernel's spectrum on the
    H x W grid.
    """
    h, w_ = size
    kh, kw = w.shape[-2:]
    if kh > h or kw > w_:
        raise ValueError(f"kernel {kh}x{kw} is larger than the {h}x{w_} grid")
    return F.pad(w, (0, w_ - kw, 0, h - kh))


def support_mask(size: tuple[int, int], k: int | tuple[int, int], *, device=None,
                 dtype=torch.float32) -> torch.Tensor:
    """H x W tensor with ones in the top-left kh x kw block (kh = min(k, H)) and zeros elsewhere."""
    h, w_ = size
    kh, kw = (k, k) if isinstance(k, int) else k
    m = torch.zeros(h, w_, device=device, dtype=dtype)
    m[:min(kh, h), :min(kw, w_)] = 1
    return m


def dft_matrix(n: int, rows: int, cols: int, *, dtype=torch.complex64, device=None,
               inverse: bool = False) -> torch.Tensor:
    """The first `rows` x `cols` block of the n-point DFT matrix exp(-+2 pi i r c / n)
    (unnormalized; `inverse` flips the sign)."""
    r = torch.arange(rows, dtype=torch.float64)[:, None]
    c = torch.arange(cols, dtype=torch.float64)[None, :]
    ang = (2 * math.pi / n) * torch.remainder(r * c, n) * (1 if inverse else -1)
    return torch.polar(torch.ones_like(ang), ang).to(device=device, dtype=dtype)


def kernel_spectrum(w: torch.Tensor, size: tuple[int, int], *, onesided: bool = False
                    ) -> torch.Tensor:
    """fft2 of the real kernel w (Cout, Cin, kh, kw) zero-padded to `size` at the top-left.

    Returns (Cin, Cout, H, Wf) complex, Wf = W (or W//2 + 1 with `onesided`: the rfft2
    half), as a view of a contiguous frequency-major (H, Wf, Cin, Cout) buffer, the layout
    `spectral_matmul` uses. Computed with the truncated DFT matrices (H x kh, Wf x kw): no
    padding, and no FFT plans over Cin*Cout tiny transforms.
    """
    h, w_ = size
    kh, kw = w.shape[-2:]
    if kh > h or kw > w_:
        raise ValueError(f"kernel {kh}x{kw} is larger than the {h}x{w_} grid")
    ctype = torch.complex128 if w.dtype == torch.float64 else torch.complex64
    a = dft_matrix(h, h, kh, dtype=ctype, device=w.device)
    b = dft_matrix(w_, w_ // 2 + 1 if onesided else w_, kw, dtype=ctype, device=w.device)
    spec = torch.einsum("hk,wl,oikl->hwio", a, b, w.to(ctype))
    return spec.permute(2, 3, 0, 1)


class _SpectralMatmul(torch.autograd.Function):
    """Y[b, o, f] = sum_i op(X[b, i, f]) * W[i, o, f], op = conj or identity, as one batched
    complex GEMM over frequencies f: (F, B, Cin) @ (F, Cin, Cout).

    Layout: every GEMM operand is made contiguous (`reshape` of a permuted NCHW tensor can
    return a strided view). X is copied once into a contiguous frequency-major (F, B, Cin)
    buffer, the conjugation fused into that copy; W is used in place when it is already a
    view of a frequency-major buffer (`kernel_spectrum`). A contiguous layout matters:
    torch's complex `bmm` on CPU falls back to one copy per frequency matrix on strided
    inputs, which is what makes the naive `einsum` slow. Backward uses the same buffers:
    grad_W = A^H G and grad_A = G W^H with A = op(X), grad_X = op(grad_A).
    """

    @staticmethod
    def forward(ctx, x, w, conj_input: bool):
        b, cin, h, w_ = x.shape
        cout = w.shape[1]
        a = torch.empty((h, w_, b, cin), dtype=x.dtype, device=x.device)
        if conj_input:
            torch.conj_physical(x.permute(2, 3, 0, 1), out=a)
        else:
            a.copy_(x.permute(2, 3, 0, 1))
        a = a.view(h * w_, b, cin)
        wm = w.permute(2, 3, 0, 1).reshape(h * w_, cin, cout).contiguous()
        y = torch.bmm(a, wm)
        ctx.save_for_backward(a, wm)
        ctx.conj_input = conj_input
        ctx.dims = (b, cin, h, w_, cout)
        return y.view(h, w_, b, cout).permute(2, 3, 0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        a, wm = ctx.saved_tensors
        b, cin, h, w_, cout = ctx.dims
        gm = g.permute(2, 3, 0, 1).reshape(h * w_, b, cout).contiguous()
        gx = gw = None
        if ctx.needs_input_grad[0]:
            ga = torch.bmm(gm, wm.mH).view(h, w_, b, cin).permute(2, 3, 0, 1)
            gx = torch.conj_physical(ga) if ctx.conj_input else ga
        if ctx.needs_input_grad[1]:
            gw = torch.bmm(a.mH, gm).view(h, w_, cin, cout).permute(2, 3, 0, 1)
        return gx, gw, None


def spectral_matmul(x: torch.Tensor, w: torch.Tensor, *, conj_input: bool = False) -> torch.Tensor:
    """Per-frequency complex channel mixing.

    x: (B, Cin, H, W) complex; w: (Cin, Cout, H, W) complex (same frequency grid; any grid,
    e.g. a one-sided half). Returns (B, Cout, H, W) with
        Y[b, o] = sum_i conj(X[b, i]) * W[i, o]   if conj_input   (CEMNet EM layer)
        Y[b, o] = sum_i       X[b, i]  * W[i, o]  otherwise       (circular convolution)
    element-wise over frequencies. Never materializes B x Cin x Cout x H x W. The result is a
    (non-contiguous) NCHW view of a frequency-major buffer.

    Gradients, in PyTorch's complex convention (dL/dRe + i dL/dIm), with upstream G:
    conj_input: grad_W[i,o] = sum_b X[b,i] G[b,o];        grad_X[b,i] = sum_o conj(G[b,o]) W[i,o]
    otherwise:  grad_W[i,o] = sum_b conj(X[b,i]) G[b,o];  grad_X[b,i] = sum_o G[b,o] conj(W[i,o])
    """
    if x.dim() != 4 or w.dim() != 4:
        raise ValueError(f"expected x (B,Cin,H,W) and w (Cin,Cout,H,W), got {tuple(x.shape)} "
                         f"and {tuple(w.shape)}")
    if x.shape[1] != w.shape[0] or x.shape[-2:] != w.shape[-2:]:
        raise ValueError(f"shape mismatch: x {tuple(x.shape)} vs w {tuple(w.shape)}")
    dtype = torch.promote_types(x.dtype, w.dtype)
    return _SpectralMatmul.apply(x.to(dtype), w.to(dtype), conj_input)


def hermitian_fill(half: torch.Tensor, width: int) -> torch.Tensor:
    """Full H x `width` spectrum from its one-sided half (..., H, width//2 + 1).

    The missing columns come from Y[-k] = conj(Y[k]), the symmetry of the spectrum of a
    real signal (as `irfft2` assumes). Returns a new contiguous tensor.
    """
    wh = width // 2 + 1
    if half.shape[-1] != wh:
        raise ValueError(f"expected a one-sided last dim of {wh} for width {width}, "
                         f"got {half.shape[-1]}")
    tail = half[..., 1:(width + 1) // 2]  # columns 1 .. ceil(W/2)-1, mirrored to W-1 .. W//2+1
    mirrored = torch.roll(torch.flip(tail, dims=(-2, -1)), shifts=1, dims=-2).conj()
    return torch.cat([half, mirrored], dim=-1)


def wf_project(w: torch.Tensor, k: int | tuple[int, int]) -> torch.Tensor:
    """Weight Fixation projector P(W) = fft2(V * Re(ifft2(W))) over the last two dims.

    V is the top-left kh x kw support mask (kh = min(k, H)). P is linear and idempotent; its
    output is the spectrum of a real kernel supported on V, hence Hermitian. This is the
    projection the CEMNet MNIST code applies to its frequency-domain weights every step.
    """
    spatial = torch.fft.ifft2(w).real
    mask = support_mask(tuple(w.shape[-2:]), k, device=w.device, dtype=spatial.dtype)
    return torch.fft.fft2(spatial * mask)


def spectral_maxpool(y: torch.Tensor, kernel: int = 2, *, onesided: bool = False) -> torch.Tensor:
    """fft2(max_pool2d(Re(ifft2(Y)), kernel)): CEMNet's pool, computed in the spatial domain.

    Y: (B, C, H, W) complex spectrum. Taking Re() discards the anti-Hermitian part that
    frequency-domain BN shifts, split activations and noise introduce. Output: the (full,
    Hermitian) spectrum of the pooled real map, (B, C, H//k, W//k) (floor, as max_pool2d);
    with `onesided`, only its rfft2 half (last dim W//k//2 + 1), which `hermitian_fill`
    completes.
    """
    spatial = torch.fft.ifft2(y).real
    pooled = F.max_pool2d(spatial, kernel)
    return torch.fft.rfft2(pooled) if onesided else torch.fft.fft2(pooled)


def to_planar(z: torch.Tensor) -> torch.Tensor:
    """Complex (B, C, H, W) -> real (B, 2C, H, W): [Re(z) channels, Im(z) channels]."""
    b, c = z.shape[:2]
    return torch.view_as_real(z).movedim(-1, 1).reshape(b, 2 * c, *z.shape[2:])


def from_planar(p: torch.Tensor) -> torch.Tensor:
    """Real (B, 2C, H, W) planar -> complex (B, C, H, W); inverse of `to_planar`."""
    b, c2 = p.shape[:2]
    parts = p.reshape(b, 2, c2 // 2, *p.shape[2:]).movedim(1, -1)
    return torch.view_as_complex(parts.contiguous())  # one copy; no zero-filled slice grads


# ------------------------------------------------------------------------------------------
# Spectral pooling (Rippel et al. 2015) and frequency dropout: reference note part A.2-A.3.
# One crop operator for every method that crops spectra (spectral pooling, FCNN pooling).
# ------------------------------------------------------------------------------------------

POOL_SCALES = ("ortho", "mean", "none")


def _crop_axis(x: torch.Tensor, dim: int, n_out: int, fold_c: float) -> torch.Tensor:
    """Keep signed frequencies -floor(n_out/2) .. ceil(n_out/2)-1 of `dim` (FFT order in and out).

    For even n_out < n_in the output Nyquist bin n = n_out/2 receives both input bins +-n:
    Y[n] = fold_c * (X[n] + X[-n]). n_out == n_in is the identity (no fold).
    """
    n_in = x.shape[dim]
    if n_out == n_in:
        return x
    if not 1 <= n_out < n_in:
        raise ValueError(f"cannot crop a spectrum axis of {n_in} to {n_out}; need 1 <= size <= {n_in}")
    pos, neg = (n_out + 1) // 2, n_out // 2          # bins 0..pos-1 and -neg..-1
    parts = [x.narrow(dim, 0, pos)]
    if n_out % 2 == 0:                                # pos == neg == n: fold +-n into bin n
        parts.append(fold_c * (x.narrow(dim, pos, 1) + x.narrow(dim, n_in - neg, 1)))
        if neg > 1:
            parts.append(x.narrow(dim, n_in - neg + 1, neg - 1))
    elif neg:
        parts.append(x.narrow(dim, n_in - neg, neg))
    return torch.cat(parts, dim)


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


def spectral_pool(x: torch.Tensor, size, *, fold_c: float = 0.5, scale: str = "ortho",
                  onesided: bool = True, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Spectral pooling of real maps (..., M, N) -> (..., H, W): Re(iDFT(mask * crop(DFT(x)))).

    `spectral_crop` does the crop and Nyquist fold; `scale` the normalization (see
    `_pool_norm`); `mask` (H x W, FFT order, e.g. `frequency_mask`) is applied to the cropped
    spectrum (frequency dropout). `onesided=True` is the fast path: rfft2, rows cropped and
    folded as in the reference, the one-sided columns 0..W//2 kept and, for even W < N, the
    Nyquist column folded explicitly using Hermitian symmetry,
        Y[k, W/2] = c (R[k, W/2] + conj(R[-k mod H, W/2])),
    then irfft2. It equals the fft2 reference (`onesided=False`) for every parity
    (tests/test_fourier_pooling.py); a naive rfft crop without that fold is off by O(1).
    """
    if x.is_complex():
        raise ValueError("spectral_pool takes real maps; use spectral_crop on spectra")
    h, w = _size2(size)
    m, n = x.shape[-2:]
    if not (1 <= h <= m and 1 <= w <= n):
        raise ValueError(f"cannot pool {m}x{n} maps to {h}x{w}")
    norm = _pool_norm(scale)
    if not onesided:
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


def dropout_fraction(m: int, num_layers: int, alpha: float, beta: float) -> float:
    """Rippel's layer-dependent lower fraction c_m = alpha + (m / M) (beta - alpha), m = 1..M."""
    return alpha + (m / num_layers) * (beta - alpha)


__all__ += ["POOL_SCALES", "spectral_crop", "spectral_pad", "spectral_pool", "signed_frequency",
            "frequency_mask", "sample_cutoff", "dropout_fraction"]
