"""Reference forms of the spectral layers that issue 26 rewrote for speed, kept here as
the complex / planar formulas the old code computed, written with plain torch ops and
nothing from `methods` (so that they stay independent of the code they check).

- `hermitian_complete`: the full H x W spectrum from its one-sided half, Y[-k] = conj(Y[k]),
  by explicit index arithmetic.
- `cem_stage`: the CEMNet block after its EM product, as the layers ran one after the
  other: to planar (B, 2C, H, W) -> BatchNorm2d(2C) in training mode -> times a planar
  noise factor -> back to complex.
- `cem_block`: the whole CEMNet block in training mode from its input spectrum: the EM
  product sum_cin conj(X) * fft2(pad_topleft(w)) on the full grid, then `cem_stage`.
- `planar_noise`: the block's noise draws as the old layers drew them (N(1, std) per
  element of the planar spectrum, one full tensor per std, in order).
- `split_complex_relu`: FCNN's split-complex ReLU through the Re/Im split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hermitian_complete(half: torch.Tensor, width: int) -> torch.Tensor:
    """(..., H, W//2+1) -> (..., H, W): Y[k, l] = half[k, l] for l <= W//2, else
    conj(half[-k mod H, W - l])."""
    h = half.shape[-2]
    wf = width // 2 + 1
    rows = torch.arange(h)
    full = [half[..., :, l] if l < wf else half[..., (-rows) % h, width - l].conj()
            for l in range(width)]
    return torch.stack(full, -1)


def planar_noise(b: int, c: int, h: int, w: int, stds, dtype=torch.float64) -> torch.Tensor:
    """The product of N(1, std) draws, one (B, 2C, H, W) tensor per std, in order."""
    noise = torch.ones(b, 2 * c, h, w, dtype=dtype)
    for std in stds:
        noise = noise * torch.empty(b, 2 * c, h, w, dtype=dtype).normal_(1.0, std)
    return noise


def cem_stage(y_full: torch.Tensor, bn_params, noise) -> torch.Tensor:
    """noise * BN(planar(y_full)) as complex (B, C, H, W).

    bn_params: None or (weight, bias, running_mean, running_var, momentum, eps) (the
    running statistics are updated in place, as nn.BatchNorm2d does); noise: None or
    planar (B, 2C, H, W)."""
    planar = torch.cat([y_full.real, y_full.imag], 1)
    if bn_params is not None:
        weight, bias, rmean, rvar, momentum, eps = bn_params
        planar = F.batch_norm(planar, rmean, rvar, weight, bias, True, momentum, eps)
    if noise is not None:
        planar = planar * noise
    c = planar.shape[1] // 2
    return torch.complex(planar[:, :c], planar[:, c:])


def kernel_spectrum_full(w: torch.Tensor, size) -> torch.Tensor:
    """fft2 of the (Cout, Cin, kh, kw) kernel zero-padded top-left, as (Cin, Cout, H, W)."""
    kh, kw = w.shape[-2:]
    padded = F.pad(w, (0, size[1] - kw, 0, size[0] - kh))
    return torch.fft.fft2(padded).transpose(0, 1)


def cem_block(x: torch.Tensor, weight: torch.Tensor, size, *, onesided: bool, bn_params,
              noise) -> torch.Tensor:
    """The CEMNet block in training mode: EM product (conj(X) * W summed over input
    channels, full grid), then `cem_stage`. x: complex (B, Cin, H, W), or its one-sided
    half with `onesided`; weight: the real (Cout, Cin, k, k) kernel."""
    if onesided:
        x = hermitian_complete(x, size[1])
    y = torch.einsum("bihw,iohw->bohw", x.conj(), kernel_spectrum_full(weight, size))
    return cem_stage(y, bn_params, noise)


def split_complex_relu(z: torch.Tensor) -> torch.Tensor:
    """FCNN's split-complex ReLU as it was written: relu(Re z) + i relu(Im z)."""
    return torch.complex(F.relu(z.real), F.relu(z.imag))
