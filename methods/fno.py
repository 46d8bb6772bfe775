"""Fourier Neural Operator layers (Li et al., "Fourier Neural Operator for Parametric Partial
Differential Equations", ICLR 2021; the `SpectralConv2d` of the authors' fourier_2d.py and
of the neuraloperator library) in place of the cnn's convolutions.

SpectralConv2d: X = rfft2(x); on the kept modes -- rows 0..m1-1 and the m1 negative rows
-m1..-1 (FFT order: the first and the last m1 rows), columns 0..m2-1 of the one-sided
spectrum -- Y[b, o, k] = sum_i X[b, i, k] R[i, o, k] with a free complex weight R per
(i, o, k); every other frequency is zero; y = irfft2(Y, s=(H, W)). Two weight blocks, as in
the reference code: R1 for the positive rows, R2 for the negative rows. The layer is
resolution-invariant: its weights do not depend on H x W, and with the default (unscaled
forward, 1/(HW) inverse) FFT normalization, a band-limited input sampled on a finer grid
gives the same band-limited output sampled on that grid (tests/test_fno.py).

Equivalently (tests/test_fno.py), for real x the layer is a circular convolution with the
real kernel g = Re(ifft2(c * R_full)), R_full the kept weights placed in the full H x W grid
and c = 2 on columns 0 < l < W/2 (each stands for itself and its mirror -l) and 1 on column 0
and the Nyquist column: a kernel band-limited to the kept modes.

FNO's Fourier layer (the paper's Eq. 2) is v -> sigma(W v + K v): the spectral convolution K
plus a pointwise linear map W (a 1 x 1 conv with bias). Here sigma is the cnn's
BN -> LeakyReLU that follows every conv.

Choices (ours, documented):
- `modes` (default 12, the paper's 2-D setting) is clamped per layer to the map:
  m1 = min(modes, H // 2) rows of each sign and m2 = min(modes, W // 2 + 1) columns, so the
  two row blocks never overlap (on 14 x 14 and smaller maps every frequency is kept; for
  odd H the positive frequency (H-1)/2 is then dropped, as in the reference code).
- `bypass`: "linear" (default; the Fourier layer W + K, W a 1 x 1 conv with bias) or "none"
  (the bare SpectralConv2d, plus a bias per output channel as the conv it replaces has).
- Initialization as the reference code: R = (1 / (Cin Cout)) * (U + i U'), U, U' ~ U[0, 1).
- The complex channel mix is `methods.fourier.spectral_matmul` (one batched complex GEMM
  over the kept frequencies, the same contraction as FCNN's Fourier conv).
- The conv's kernel size k is ignored: the spectral conv's receptive field is the whole
  map (band-limited).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from methods import Option, register, skeleton
from methods.fourier import spectral_matmul

BYPASSES = ("linear", "none")


def kept_modes(size: tuple[int, int], modes: int) -> tuple[int, int]:
    """(m1, m2): rows of each sign and one-sided columns kept on an H x W map."""
    h, w = size
    return max(1, min(modes, h // 2)), min(modes, w // 2 + 1)


class SpectralConv2d(nn.Module):
    """FNO's spectral convolution: rfft2 -> complex channel mix on the kept modes -> irfft2."""

    def __init__(self, cin: int, cout: int, modes1: int, modes2: int):
        super().__init__()
        self.cin, self.cout, self.modes1, self.modes2 = cin, cout, modes1, modes2
        scale = 1.0 / (cin * cout)
        shape = (cin, cout, modes1, modes2)
        self.weight1 = nn.Parameter(scale * torch.complex(torch.rand(shape), torch.rand(shape)))
        self.weight2 = nn.Parameter(scale * torch.complex(torch.rand(shape), torch.rand(shape)))

    def forward(self, x):
        b = x.shape[0]
        h, w = int(x.shape[-2]), int(x.shape[-1])   # Python ints: the op count's trace needs them
        m1, m2 = self.modes1, self.modes2
        if 2 * m1 > h or m2 > w // 2 + 1:
            raise ValueError(f"{m1}+{m1} x {m2} modes do not fit a {h}x{w} map")
        xf = torch.fft.rfft2(x)
        kept = torch.cat([xf[:, :, :m1, :m2], xf[:, :, h - m1:, :m2]], dim=-2)
        yk = spectral_matmul(kept, torch.cat([self.weight1, self.weight2], dim=-2))
        # Zero rows between the two blocks; irfft2 zero-fills the columns m2 .. W//2.
        gap = yk.new_zeros(b, self.cout, h - 2 * m1, m2)
        yf = torch.cat([yk[:, :, :m1], gap, yk[:, :, m1:]], dim=-2)
        return torch.fft.irfft2(yf, s=(h, w))

    def extra_repr(self):
        return f"{self.cin}, {self.cout}, modes=({self.modes1}, {self.modes2})"


class FourierLayer(nn.Module):
    """FNO's Fourier layer without its activation: K v + W v (W a 1x1 conv), or K v + bias."""

    def __init__(self, cin: int, cout: int, size: tuple[int, int], modes: int,
                 bypass: str = "linear"):
        super().__init__()
        self.size = tuple(size)
        m1, m2 = kept_modes(self.size, modes)
        self.spectral = SpectralConv2d(cin, cout, m1, m2)
        self.bypass = nn.Conv2d(cin, cout, 1) if bypass == "linear" else None
        self.bias = None if self.bypass is not None else nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        y = self.spectral(x)
        if self.bypass is not None:
            return y + self.bypass(x)
        return y + self.bias.view(1, -1, 1, 1)

    def describe(self) -> dict:
        s = self.spectral
        return {"layer": "fno", "map": list(self.size), "modes": [s.modes1, s.modes2],
                "kept_fraction": 2 * s.modes1 * s.modes2 / (self.size[0] * (self.size[1] // 2 + 1)),
                "bypass": "linear" if self.bypass is not None else "none"}


OPTIONS = {"modes": Option(12, interval="[1, inf)", use="at least 1 mode (e.g. --set modes=12)"),
           "bypass": Option("linear", choices=BYPASSES)}


@register("fno", archs=skeleton.ARCHS, options=skeleton.options(OPTIONS),
          default_arch=skeleton.default_arch,
          description="FNO Fourier layer (Li et al. 2021): rfft2 -> complex channel mixing on "
                      "the lowest modes -> irfft2, plus a 1x1 bypass, inside the cnn skeleton")
def build_fno(arch, input_shape, num_classes, *, dropout_conv, dropout_fc, modes, bypass):
    def conv(cin, cout, k, size):
        return FourierLayer(cin, cout, size, modes, bypass)

    return skeleton.build(arch, input_shape, num_classes, dropout_conv, dropout_fc, conv,
                          {"method": "fno", "modes": modes, "bypass": bypass,
                           "source": "Li et al. ICLR 2021, SpectralConv2d (fourier_2d.py)"})
