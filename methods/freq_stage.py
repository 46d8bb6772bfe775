"""The element-wise stage of a CEMNet training block in one autograd Function (issue 26):
Hermitian completion of the EM product, frequency BatchNorm and multiplicative noise.

What it computes (the math of `methods.cemnet`'s eval-mode layer chain; tests/
test_freq_stage.py compares it with the plain-torch reference in tests/reference_layers.py
in float64, values and gradients):

    Z = noise * BN(complete(Y)),   returned as Z, or as the one-sided half of its
                                   Hermitian part (Z[q] + conj(Z[-q])) / 2

- Y: the EM product as the GEMM writes it, frequency-major (F', B, C) complex: F' = H*W
  (the full grid) or H*(W//2+1) (the one-sided half of a Hermitian spectrum, which
  `complete` fills in by Y[-q] = conj(Y[q]), the math of `methods.fourier.hermitian_fill`).
- BN: the two-branch frequency BatchNorm in training mode: one BatchNorm2d per channel and
  part (Re, Im), statistics over (batch, H, W) of the full grid, affine parameters and
  running statistics in the planar order of `FreqBatchNorm` (Re channels, then Im);
  optional.
- noise: a real factor per real number of Z, frequency-major (H*W, B, C, 2); optional.
- output: Z as complex NCHW (B, C, H, W), or (`hermitian_half`) its Hermitian part's
  one-sided half (B, C, H, W//2+1), the spectrum of Re(ifft2(Z)): `torch.fft.irfft2` of
  it is the real map the max pool reads, at half the transform work of ifft2 and without
  a complex spatial map or its gradient.

How (the design goal is few passes over full-size memory and few fresh full-size
buffers; `python -m measure.steps --methods cnn,cemnet` measures the result):
- the batch statistics come from the half grid with the multiplicities of the completion
  (a half column with a mirror counts twice; its mirrored imaginary part has the opposite
  sign), as small GEMVs over the GEMM output, two-pass for the variance;
- the completion is a gather of whole frequency rows, the conjugation of the mirrored
  columns an in-place complex conj, then the affine map and the noise in place;
- layout changes are 2-D complex transposes (torch's blocked transpose copy) of the
  smallest tensor that needs one (the half grid with `hermitian_half`);
- the backward is the adjoint, taken back to the half grid by two row gathers, where the
  BatchNorm backward is done, using <g, complete(y)> = <complete^T(g), y>;
- temporaries are fresh tensors: on the CPU the allocator policy (`harness.allocator`)
  keeps freed blocks in the process, so they cost no page faults.

In eval mode the model does not call this (running statistics, no noise): the op counts
(harness.ops, eval mode) still see the layers they always counted.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from methods.fourier import _grid_maps64, cached_constant

__all__ = ["complete_norm_noise"]


def _constants(h: int, w: int, half: bool, dtype, device) -> SimpleNamespace:
    """The index maps and weights of the completion on an H x W grid (cached)."""
    maps = cached_constant(("grid-maps", h, w), lambda: _grid_maps64(h, w), torch.int64, device)
    fp = h * (w // 2 + 1) if half else h * w

    def has64():
        return _grid_maps64(h, w)[3, :fp].astype(np.float64) if half else np.zeros(fp)

    def build():
        has = has64()
        # statistics weights: multiplicity of a half entry in the full grid (Re; Im in the
        # second moment), its weight in the Im mean (a mirrored pair cancels), the mirror
        # flag; then the adjoint of the completion applied to ones, A^T(1) = (1+has, 1-has)
        stat = np.stack([1 + has, 1 - has, has])
        ones_adj = np.stack([1 + has, 1 - has], -1)
        return np.concatenate([stat.reshape(-1), ones_adj.reshape(-1)])

    ctype = torch.complex128 if dtype == torch.float64 else torch.complex64
    flat = cached_constant(("freq-stage", h, w, half), build, dtype, device)
    has_c = cached_constant(("freq-stage-has", h, w, half), has64, ctype, device)
    stat, ones_adj = torch.split(flat, [3 * fp, 2 * fp])
    stat = stat.view(3, fp)
    return SimpleNamespace(
        src=maps[0], half_q=maps[1, :fp], pre=maps[2, :fp], stat=stat, has_c=has_c.view(fp, 1),
        ones_adj=ones_adj.view(fp, 1, 1, 2),
        mult=stat[0].view(fp, 1, 1, 1), fp=fp)


def _per_part(v: torch.Tensor, b: int, c: int) -> torch.Tensor:
    """(B*C*2,) sums over rows -> (C, 2) sums over the batch too."""
    return v.view(b, c, 2).sum(0)


def _to_cp(p: torch.Tensor, c: int) -> torch.Tensor:
    """Planar order (2C,) [Re channels, Im channels] -> (C, 2), contiguous (a transposed
    operand would make every element-wise op below fall off its vectorized path)."""
    return p.view(2, c).t().contiguous()


def _to_planar_order(cp: torch.Tensor) -> torch.Tensor:
    return cp.t().reshape(-1)


def _transpose(z: torch.Tensor) -> torch.Tensor:
    """A contiguous 2-D complex transpose: torch's blocked transpose copy of 8-byte
    elements (a permuted element-wise op over (.., 2) floats runs a strided loop)."""
    return z.t().contiguous()


def _herm_maps(h: int, w: int, device) -> SimpleNamespace:
    """Index maps of the Hermitian part's one-sided half on an H x W grid (cached):
    `src` and `half_q` as in `methods.fourier._grid_maps64` (rows 0 and 1), `neg` the full
    position of -q for each half position q; `corr_q`, `corr_src` the
    full positions on the columns 0 and W/2 (whose mirror is in the half too) and the half
    index of their mirror."""
    wf = w // 2 + 1

    def build():
        k, l = np.divmod(_grid_maps64(h, w)[1, :h * wf], w)
        neg = ((-k) % h) * w + (-l) % w
        cols = [0] + ([w // 2] if w % 2 == 0 and w > 1 else [])
        kk, ll = np.meshgrid(np.arange(h), cols, indexing="ij")
        corr_q = (kk * w + ll).reshape(-1)
        corr_src = (((-kk) % h) * wf + (-ll) % w).reshape(-1)
        return np.concatenate([neg, corr_q, corr_src])

    flat = cached_constant(("herm-maps", h, w), build, torch.int64, device)
    n = flat.numel() - h * wf
    neg, corr_q, corr_src = torch.split(flat, [h * wf, n // 2, n // 2])
    maps = cached_constant(("grid-maps", h, w), lambda: _grid_maps64(h, w), torch.int64, device)
    return SimpleNamespace(src=maps[0], half_q=maps[1, :h * wf], neg=neg, corr_q=corr_q,
                           corr_src=corr_src)


def _conj_right_columns(z: torch.Tensor, h: int, w: int) -> None:
    """In place on frequency-major (H*W, N) complex rows: conjugate the columns right of
    the half (l > W//2), which hold conj(Y[-q]) after a gather by `src` (as complex
    numbers, vectorized, rather than a sign on every other float)."""
    z.view(h, w, -1)[:, w // 2 + 1:].conj_physical_()


def _full_precision(fn):
    """Run `fn` with autocast off: the spectral stage (complex arithmetic, BatchNorm
    statistics by GEMVs) stays in the dtype of its inputs under mixed precision."""
    def wrapped(ctx, *args):
        device = args[0].device.type
        with torch.autocast(device_type=device, enabled=False):
            return fn(ctx, *args)
    return wrapped


class _CompleteNormNoise(torch.autograd.Function):
    @staticmethod
    @_full_precision
    def forward(ctx, y, weight, bias, noise, h: int, w: int, eps: float, herm: bool):
        fp, b, c = y.shape
        f = h * w
        half = fp != f
        yr = torch.view_as_real(y)                                       # (F', B, C, 2)
        k = _constants(h, w, half, yr.dtype, y.device)
        rows = yr.view(fp, b * c * 2)
        bn = weight is not None
        mean = invstd = scale = None
        if bn:
            m = b * f
            s = k.stat[:2] @ rows                                          # (2, B*C*2)
            mean = torch.stack((_per_part(s[0], b, c)[:, 0], _per_part(s[1], b, c)[:, 1]),
                               -1) / m                                     # (C, 2)
            d = (yr - mean).view(fp, -1)                                   # two-pass variance
            if half:  # a mirrored Im part enters as -Im: (-y - mu)^2 = d^2 + 4 mu d + 4 mu^2
                mu_im = mean[:, 1]
                sd = _per_part(k.stat[2] @ d, b, c)[:, 1]
                n_has = k.stat[2].sum() * b
            ss = _per_part(k.stat[0] @ d.square_(), b, c)                  # sum w d^2
            if half:
                ss = torch.stack((ss[:, 0], ss[:, 1] + 4 * mu_im * sd
                                  + 4 * mu_im.square() * n_has), -1)
            var = ss / m
            invstd = torch.rsqrt(var + eps)
            scale = _to_cp(weight, c) * invstd                             # (C, 2)
            shift = _to_cp(bias, c) - mean * scale
            # the Hermitian part's 1/2, folded into the affine map (no extra pass)
            hs = 0.5 if herm else 1.0
        # Z = noise * BN(complete(y)), frequency-major (F, B*C) complex, in place once the
        # tensor is fresh
        if half:
            z = torch.view_as_complex(rows.index_select(0, k.src).view(f, b * c, 2))
            _conj_right_columns(z, h, w)
            if bn:
                zr = torch.view_as_real(z).view(f, b, c, 2)
                torch.addcmul(shift * hs, zr, scale * hs, out=zr)
        elif bn:
            z = torch.view_as_complex(torch.addcmul(shift * hs, yr, scale * hs))
        else:
            z = y
        z = z.view(f, b * c)
        if noise is not None:
            if half or bn:      # z is a fresh buffer
                torch.view_as_real(z).mul_(noise.reshape(f, b * c, 2))
            else:
                z = torch.view_as_complex(torch.view_as_real(z) * noise.reshape(f, b * c, 2))
        if herm:   # the one-sided half of (Z[q] + conj(Z[-q])) / 2
            hm = _herm_maps(h, w, y.device)
            zh = z.index_select(0, hm.half_q)
            zh.add_(z.index_select(0, hm.neg).conj_physical_())
            if not bn:
                zh.mul_(0.5)
            out = _transpose(zh).view(b, c, h, w // 2 + 1)
        else:
            out = _transpose(z).view(b, c, h, w)
        ctx.save_for_backward(y, noise, mean, invstd, scale)
        ctx.dims, ctx.bn, ctx.herm = (fp, b, c, h, w), bn, herm
        outs = (out,)
        if bn:
            stats = (_to_planar_order(mean), _to_planar_order(var))
            ctx.mark_non_differentiable(*stats)
            outs += stats
        return outs

    @staticmethod
    @torch.autograd.function.once_differentiable
    @_full_precision
    def backward(ctx, g, *_):
        y, noise, mean, invstd, scale = ctx.saved_tensors
        fp, b, c, h, w = ctx.dims
        f = h * w
        half = fp != f
        yr = torch.view_as_real(y)
        k = _constants(h, w, half, yr.dtype, y.device)
        g = g.resolve_conj().resolve_neg().contiguous().view(b * c, -1)
        if ctx.herm:   # adjoint of the Hermitian half: complete it, plus conj(g[-q]) on the
            # columns 0 and W/2 (their mirror is in the half too); the 1/2 comes below
            hm = _herm_maps(h, w, y.device)
            gh = _transpose(g)                                             # (F', B*C)
            gz = gh.index_select(0, hm.src)
            _conj_right_columns(gz, h, w)
            gz.index_add_(0, hm.corr_q, gh.index_select(0, hm.corr_src).conj_physical_())
        else:
            gz = _transpose(g)                                             # (F, B*C)
        if noise is not None:                       # d(Z)/d(bn out) = noise
            torch.view_as_real(gz).mul_(noise.reshape(f, b * c, 2))
        hs = 0.5 if ctx.herm else 1.0
        if half:   # the adjoint of the completion: own position + conj(mirrored position)
            adj = gz.index_select(0, k.half_q)
            mirror = gz.index_select(0, k.pre)
            if ctx.bn:  # sum over the full grid: own + mirrored position, both with sign +1
                sum_g = _per_part(torch.view_as_real(adj).view(fp, -1).sum(0)
                                  + k.stat[2] @ torch.view_as_real(mirror).view(fp, -1), b, c)
            adj.addcmul_(mirror.conj_physical_(), k.has_c)
        else:
            adj = gz
            if ctx.bn:
                sum_g = _per_part(torch.view_as_real(adj).view(fp, -1).sum(0), b, c)
        adj_r = torch.view_as_real(adj).view(fp, b, c, 2)
        gw = gb = None
        if ctx.bn:
            m = b * f
            sum_g = sum_g * hs
            prod = adj_r * yr
            dot = _per_part(prod.view(fp, -1).sum(0), b, c) * hs           # <g, complete(y)>
            sum_gxhat = invstd * (dot - mean * sum_g)
            m1, m2 = sum_g / m, sum_gxhat / m
            k1 = scale * hs
            k2 = -scale * m2 * invstd
            k3 = scale * (m2 * invstd * mean - m1)
            gy = torch.empty((fp, b, c, 2), dtype=yr.dtype, device=yr.device)
            torch.addcmul(k.ones_adj * k3, yr, k.mult * k2, out=gy)
            gy.addcmul_(adj_r, k1)
            gw, gb = _to_planar_order(sum_gxhat), _to_planar_order(sum_g)
            gy = torch.view_as_complex(gy)
        else:
            gy = adj.view(fp, b, c)
            if ctx.herm:
                gy.mul_(0.5)                                    # a fresh buffer
        return gy, gw, gb, None, None, None, None, None


def complete_norm_noise(y: torch.Tensor, h: int, w: int, *, bn=None, noise=None,
                        hermitian_half: bool = False) -> torch.Tensor:
    """Z = noise * BN(complete(y)) (see the module docstring): complex (B, C, H, W), or
    with `hermitian_half` the one-sided half (B, C, H, W//2 + 1) of its Hermitian part
    (Z[q] + conj(Z[-q])) / 2, the spectrum of Re(ifft2(Z)), which `torch.fft.irfft2`
    turns into that real map with half the transform work of ifft2 (and no complex
    spatial map, nor its gradient).

    y: frequency-major (F', B, C) complex, F' = H*W or H*(W//2 + 1) (one-sided half).
    bn: a `BatchNorm2d(2C)` in training mode (its running statistics and
    `num_batches_tracked` are updated as `nn.BatchNorm2d` updates them), or None.
    noise: real, frequency-major (H*W, B, C, 2) (`noise[h*W + w, b, c, part]` multiplies
    part (Re, Im) of Z[b, c, h, w]), or None."""
    if bn is None:
        return _CompleteNormNoise.apply(y, None, None, noise, h, w, 0.0, hermitian_half)[0]
    if bn.momentum is None or not bn.track_running_stats or not bn.affine:
        raise ValueError("complete_norm_noise needs an affine BatchNorm with a momentum and "
                         "running statistics")
    z, mean, var = _CompleteNormNoise.apply(y, bn.weight, bn.bias, noise, h, w, bn.eps,
                                            hermitian_half)
    n = y.shape[1] * h * w
    with torch.no_grad():
        bn.running_mean.mul_(1 - bn.momentum).add_(mean, alpha=bn.momentum)
        bn.running_var.mul_(1 - bn.momentum).add_(var * (n / max(n - 1, 1)), alpha=bn.momentum)
        bn.num_batches_tracked.add_(1)
    return z
