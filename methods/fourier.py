"""Shared spectral primitives: one implementation each, tested once (tests/test_fourier.py;
the pooling half, `methods.fourier_pooling`: tests/test_fourier_pooling.py).

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
  (the CEMNet EM contraction and the FCNN Fourier convolution); `spectral_matmul_planar`
  the same with a planar result (and planar input allowed), completing a one-sided
  Hermitian product to the full grid in the same pass; `spectral_matmul_fm` the raw
  frequency-major GEMM output (what `methods.freq_stage` consumes).
- `hermitian_fill`: the full spectrum from its one-sided half (real-signal symmetry).
- `wf_project`: projection onto spectra of real kernels with K x K top-left support.
- `spectral_maxpool`: the pool "sandwich" fft2(maxpool(Re(ifft2(Y)))).
- `to_planar` / `from_planar`: complex (B, C, H, W) <-> real "planar" (B, 2C, H, W) with
  the real parts in channels [0, C) and the imaginary parts in [C, 2C). Per-part layers
  (the "two-branch" BN, split activations, noise) are then ordinary fast real layers.
- `fp32`: a real tensor that autocast made half or bfloat16, back in float32 (for FFTs).
- `cached_constant`: DFT matrices, pooling operators and index maps, built once per
  (size, dtype, device), so that no training step builds a tensor on the host (a CUDA
  graph can capture every layer here; tests/test_capturable.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["pad_kernel", "support_mask", "kernel_spectrum", "spectral_matmul",
           "spectral_matmul_fm", "spectral_matmul_planar", "hermitian_fill",
           "wf_project", "spectral_maxpool", "to_planar", "from_planar", "cached_constant",
           "dft_matrix", "fp32"]


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


# Constants (DFT matrices, pooling operators, index maps) are built once per (what, size,
# dtype, device), in float64 on the host, and cached in the compute dtype on the device.
# A training step then creates no tensor on the host, copies nothing to the device and
# casts no float64 constant: what a CUDA graph needs (tests/test_capturable.py), and what
# the old per-call `dft_matrix` wasted on every forward pass.
_CONSTANTS: dict = {}


def cached_constant(key: tuple, build, dtype: torch.dtype, device) -> torch.Tensor:
    """`build()` (a numpy array or a host tensor, typically float64/complex128) cast to
    (dtype, device), computed once per (key, dtype, device) and shared: callers must not
    modify it. Build with numpy (or integer torch ops): op counters must not charge the
    construction to the model."""
    device = torch.device(device if device is not None else "cpu")
    full = (key, dtype, device)
    t = _CONSTANTS.get(full)
    if t is None:
        value = build()
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        with torch.inference_mode(False), torch.no_grad():
            t = value.to(device=device, dtype=dtype).contiguous()
        _CONSTANTS[full] = t
    return t


def fp32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32 if it is float16 or bfloat16 (an output of an autocast op), else `x`.
    For the inputs of FFTs and complex views under mixed precision (harness/device.py):
    torch's FFTs take no bfloat16 and float16 only on CUDA for power-of-two sizes. CPU
    autocast casts FFT inputs itself; CUDA autocast does not."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _dft_matrix64(n: int, rows: int, cols: int, inverse: bool) -> np.ndarray:
    """numpy, complex128 (constants are built outside torch, so that no op counter or
    tracer sees their construction)."""
    rc = np.remainder(np.arange(rows)[:, None] * np.arange(cols)[None, :], n)
    return np.exp((1j if inverse else -1j) * (2 * np.pi / n) * rc)


def dft_matrix(n: int, rows: int, cols: int, *, dtype=torch.complex64, device=None,
               inverse: bool = False) -> torch.Tensor:
    """The first `rows` x `cols` block of the n-point DFT matrix exp(-+2 pi i r c / n)
    (unnormalized; `inverse` flips the sign). Computed in float64, cached per
    (n, rows, cols, inverse, dtype, device): shared, do not modify."""
    return cached_constant(("dft", n, rows, cols, inverse),
                           lambda: _dft_matrix64(n, rows, cols, inverse), dtype, device)


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


def _fm_to_planar(y: torch.Tensor, conj: bool = False) -> torch.Tensor:
    """Frequency-major complex (F, B, C) -> planar real (B, 2, C, F), contiguous (of conj(y)
    with `conj`). Two passes, a complex transpose then the re/im split, beat one 4-D
    transpose of the real view on CPU (whose innermost source stride is 2 floats)."""
    f, b, c = y.shape
    z = torch.empty((b, c, f), dtype=y.dtype, device=y.device)
    if conj:
        torch.conj_physical(y.permute(1, 2, 0), out=z)
    else:
        z.copy_(y.permute(1, 2, 0))
    return torch.view_as_real(z).permute(0, 3, 1, 2).contiguous()


def _planar_to_fm(p: torch.Tensor, conj: bool = False) -> torch.Tensor:
    """Planar real (B, 2, C, F) -> frequency-major complex (F, B, C), contiguous (of the
    conjugate with `conj`); the inverse of `_fm_to_planar`."""
    b, _, c, f = p.shape
    z = torch.view_as_complex(p.permute(0, 2, 3, 1).contiguous())       # (B, C, F)
    out = torch.empty((f, b, c), dtype=z.dtype, device=z.device)
    if conj:
        torch.conj_physical(z.permute(2, 0, 1), out=out)
    else:
        out.copy_(z.permute(2, 0, 1))
    return out


class _SpectralMatmul(torch.autograd.Function):
    """Y[f, b, o] = sum_i op(X[b, i, f]) * W[f, i, o], op = conj or identity, as one batched
    complex GEMM over frequencies f: (F, B, Cin) @ (F, Cin, Cout). Returns the contiguous
    frequency-major product (F, B, Cout).

    X is complex NCHW (B, Cin, H, W) or planar real (B, 2 Cin, H, W) (`to_planar` layout).
    Layout: every GEMM operand is made contiguous (`reshape` of a permuted NCHW tensor can
    return a strided view). X is copied once into a contiguous frequency-major (F, B, Cin)
    buffer, the conjugation (and, for planar input, the re/im interleave) fused into that
    copy; W is used in place when it is already a view of a frequency-major buffer
    (`kernel_spectrum`). A contiguous layout matters: torch's complex `bmm` on CPU falls
    back to one copy per frequency matrix on strided inputs, which is what makes the naive
    `einsum` slow. Backward uses the same buffers: grad_W = A^H G and grad_A = G W^H with
    A = op(X), grad_X = op(grad_A), returned in X's layout.
    """

    @staticmethod
    def forward(ctx, x, w, conj_input: bool):
        planar = not x.is_complex()
        if planar:
            b, c2, h, w_ = x.shape
            cin = c2 // 2
            ctype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        else:
            b, cin, h, w_ = x.shape
            ctype = x.dtype
        cout = w.shape[1]
        if planar:
            a = _planar_to_fm(x.reshape(b, 2, cin, h * w_), conj=conj_input)
        else:
            a = torch.empty((h, w_, b, cin), dtype=ctype, device=x.device)
            if conj_input:
                torch.conj_physical(x.permute(2, 3, 0, 1), out=a)
            else:
                a.copy_(x.permute(2, 3, 0, 1))
            a = a.view(h * w_, b, cin)
        wm = w.permute(2, 3, 0, 1).reshape(h * w_, cin, cout).contiguous()
        y = torch.bmm(a, wm)
        ctx.save_for_backward(a, wm)
        ctx.conj_input, ctx.planar = conj_input, planar
        ctx.dims = (b, cin, h, w_, cout)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        a, wm = ctx.saved_tensors
        b, cin, h, w_, cout = ctx.dims
        gm = g.contiguous()
        gx = gw = None
        if ctx.needs_input_grad[0]:
            ga = torch.bmm(gm, wm.mH)                              # (F, B, Cin)
            if ctx.planar:
                gx = _fm_to_planar(ga, conj=ctx.conj_input).view(b, 2 * cin, h, w_)
            else:
                ga = ga.view(h, w_, b, cin).permute(2, 3, 0, 1)
                gx = torch.conj_physical(ga) if ctx.conj_input else ga
        if ctx.needs_input_grad[1]:
            gw = torch.bmm(a.mH, gm).view(h, w_, cin, cout).permute(2, 3, 0, 1)
        return gx, gw, None


def _check_matmul_shapes(x, w):
    if x.dim() != 4 or w.dim() != 4:
        raise ValueError(f"expected x (B,Cin,H,W) and w (Cin,Cout,H,W), got {tuple(x.shape)} "
                         f"and {tuple(w.shape)}")
    cin = x.shape[1] if x.is_complex() else x.shape[1] // 2
    if cin != w.shape[0] or x.shape[-2:] != w.shape[-2:]:
        raise ValueError(f"shape mismatch: x {tuple(x.shape)} vs w {tuple(w.shape)}")


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
    _check_matmul_shapes(x, w)
    dtype = torch.promote_types(x.dtype, w.dtype)
    b, _, h, w_ = x.shape
    y = _SpectralMatmul.apply(x.to(dtype), w.to(dtype), conj_input)
    return y.view(h, w_, b, -1).permute(2, 3, 0, 1)


def spectral_matmul_fm(x: torch.Tensor, w: torch.Tensor, *, conj_input: bool = False
                       ) -> torch.Tensor:
    """`spectral_matmul`'s product as the batched GEMM writes it: frequency-major
    (F, B, Cout), contiguous, F = H*W of x's grid (e.g. a one-sided half). x: complex
    (B, Cin, H, W) or planar real (B, 2 Cin, H, W); w: complex (Cin, Cout, H, W)."""
    _check_matmul_shapes(x, w)
    if x.is_complex():
        x = x.to(torch.promote_types(x.dtype, w.dtype))
    ctype = x.dtype if x.is_complex() else (torch.complex128 if x.dtype == torch.float64
                                            else torch.complex64)
    return _SpectralMatmul.apply(x, w.to(ctype), conj_input)


def spectral_matmul_planar(x: torch.Tensor, w: torch.Tensor, *, conj_input: bool = False,
                           full_width: int | None = None) -> torch.Tensor:
    """`spectral_matmul` with a planar real result (B, 2 Cout, H, W) (`to_planar` layout),
    written straight from the frequency-major GEMM output (one pass, no complex NCHW
    intermediate). x: complex (B, Cin, H, W') or planar real (B, 2 Cin, H, W'); w: complex
    (Cin, Cout, H, W').

    `full_width` = W: x and w are one-sided halves (W' = W//2 + 1) of the spectra of real
    signals, so the product is the one-sided half of a Hermitian spectrum; the output is
    the full H x W spectrum, completed by Y[-k] = conj(Y[k]) in the same pass (as
    `hermitian_fill`, whose math this is)."""
    _check_matmul_shapes(x, w)
    if x.is_complex():
        x = x.to(torch.promote_types(x.dtype, w.dtype))
    ctype = x.dtype if x.is_complex() else (torch.complex128 if x.dtype == torch.float64
                                            else torch.complex64)
    h, w_ = (int(n) for n in x.shape[-2:])      # plain ints: traced sizes break the tracer
    y = _SpectralMatmul.apply(x, w.to(ctype), conj_input)        # (F', B, Cout)
    width = full_width or w_
    return _FreqMajorToPlanar.apply(y, _grid_maps(h, width, y.device), h, width)


# ------------------------------------------------------------------------------------------
# Index maps of the H x W grid (FFT order), cached per (H, W, device).
# ------------------------------------------------------------------------------------------
def _grid_maps64(h: int, w: int) -> np.ndarray:
    """(4, H*W) int64 rows (flattened row-major; wf = W//2 + 1; a half index is
    j = k*wf + l for l < wf; rows of half length are padded with 0):
    0 src:      full position q = (k, l) -> the half index holding Y[q] (l < wf) or its
                conjugate Y[-q] (l >= wf);
    1 half_q:   half index j -> its full position;
    2 pre:      half index j -> the mirrored full position whose src is j (0 if none);
    3 has_pre:  1 where row 2 is a real preimage, else 0."""
    wf = w // 2 + 1
    k = np.arange(h)[:, None]
    l = np.arange(w)[None, :]
    direct = np.broadcast_to(l < wf, (h, w))
    out = np.zeros((4, h * w), dtype=np.int64)
    out[0] = np.where(direct, k * wf + l, ((-k) % h) * wf + (-l) % w).reshape(-1)
    kh, lh = np.broadcast_to(k, (h, wf)), np.broadcast_to(l[:, :wf], (h, wf))
    out[1, :h * wf] = (kh * w + lh).reshape(-1)
    has = (lh >= 1) & (w - lh >= wf)
    out[2, :h * wf] = np.where(has, ((-kh) % h) * w + (w - lh) % w, 0).reshape(-1)
    out[3, :h * wf] = has.reshape(-1)
    return out


def _grid_maps(h: int, w: int, device) -> torch.Tensor:
    return cached_constant(("grid-maps", h, w), lambda: _grid_maps64(h, w), torch.int64, device)


def _fill_adjoint_sign(h: int, w: int, dtype, device) -> torch.Tensor:
    """(1, 2, 1, H*wf): the weight of the mirrored preimage in the adjoint of the Hermitian
    completion: +1 (Re) / -1 (Im) where a half entry has a mirror, 0 where it has none."""
    def build():
        has = _grid_maps64(h, w)[3, :h * (w // 2 + 1)].astype(np.float64)
        return np.stack([has, -has]).reshape(1, 2, 1, -1)
    return cached_constant(("fill-adjoint-sign", h, w), build, dtype, device)


class _FreqMajorToPlanar(torch.autograd.Function):
    """Frequency-major complex (F', B, C) -> planar real (B, 2C, H, W).

    F' = H*W: a transpose. F' = H*(W//2+1): the one-sided half of a Hermitian spectrum,
    completed in the same pass by a gather (index `src`) and a sign flip of the mirrored
    imaginary parts. Backward: the adjoint (each half entry has at most two preimages: its
    own position and its mirror), returned contiguous frequency-major for the GEMM.
    `maps` = `_grid_maps(h, w)` (an input, not a closure, so that the TorchScript tracer
    of the op counter sees it)."""

    @staticmethod
    def forward(ctx, y, maps, h: int, w: int):
        fp, b, c = y.shape
        half = fp != h * w
        ctx.dims, ctx.half = (fp, b, c, h, w), half
        ctx.save_for_backward(maps)
        planar = _fm_to_planar(y)                                        # (B, 2, C, F')
        if not half:
            return planar.view(b, 2 * c, h, w)
        out = planar.view(b * 2 * c, fp).index_select(1, maps[0]).view(b, 2, c, h, w)
        wf = w // 2 + 1
        out[:, 1, :, :, wf:].neg_()
        return out.view(b, 2 * c, h, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        fp, b, c, h, w = ctx.dims
        (maps,) = ctx.saved_tensors
        g = g.contiguous().view(b, 2, c, h * w)
        if ctx.half:
            flat = g.view(b * 2 * c, h * w)
            direct = flat.index_select(1, maps[1, :fp]).view(b, 2, c, fp)
            mirrored = flat.index_select(1, maps[2, :fp]).view(b, 2, c, fp)
            g = direct.addcmul_(mirrored, _fill_adjoint_sign(h, w, g.dtype, g.device))
        return _planar_to_fm(g), None, None, None


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
    size = tuple(w.shape[-2:])
    kh, kw = (k, k) if isinstance(k, int) else k

    def build():
        m = np.zeros(size)
        m[:kh, :kw] = 1.0
        return m

    mask = cached_constant(("support", size, kh, kw), build, spatial.dtype, w.device)
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
