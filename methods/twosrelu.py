"""2SReLU (Watanabe & Wolf, Appl. Soft Comput. 112:107851, 2021; arXiv 2006.10853): a
RECONSTRUCTION. Method `2srelu`.

The paper's formula, parameters, architecture and recipe are not available to us (docs/methods.md,
"2SReLU": only the abstract and CEMNet's one-line description were readable; the GitLab
code was not). What we know [P]: a
"second harmonics superposition" activation that "preserves high frequency components";
a convolution-free network trained in the frequency domain on MNIST (3.08 % test error,
as quoted by CEMNet Table 1) and AT&T faces. Everything else below is our reconstruction
[INF], following the reasoning of docs/methods.md and labelled as such in the registry
(`reconstruction=True`) and in every run record (`describe()`).

Activation, y = alpha * X + beta * S(X), with learnable real alpha and beta per channel:
ReLU applied to a tone A cos(theta) gives A/pi + (A/2) cos(theta) + (2A/(3pi)) cos(2 theta)
+ ...; the largest extra term is the second harmonic, at twice the frequency with twice
the phase. S is that second-harmonic term (`candidate`):
  1 (default)  S[2k] = X[k]^2 / |X[k]| = |X[k]| e^{2i arg X[k]}: magnitude kept, phase doubled,
               exactly how ReLU acts on one tone. Positively homogeneous of degree 1 (like
               ReLU): f(cX) = c f(X) for c > 0.
  2            S[2k] = X[k]^2: squaring restricted to self-terms (degree 2, not homogeneous).
  3            S = DFT(x^2), x = iDFT(X): the exact spectrum of the squared map (all cross /
               intermodulation terms), i.e. (X circ-conv X) / N with the unnormalised DFT;
               computed with one inverse and one forward FFT in the network's convention.
For candidates 1 and 2 the map k -> 2k uses signed frequencies per axis; a frequency whose
double would reach or pass the Nyquist bin (|2k| >= N/2 on either axis) has no second
harmonic (dropped), so the kept set is symmetric in k and -k and the map is injective:
a Hermitian input (spectrum of a real map) gives a Hermitian output. No DC term is added.
Initialisation [INF]: alpha = 1, beta = 4/(3 pi) ~ 0.424, the ReLU ratio of second harmonic
to fundamental ((2/(3pi)) / (1/2)).

Network (`2srelu`, arch `lenet5`), convolution-free, in the spirit of the paper: fft2 once at
the input (norm="ortho", as FCNN), then per block the FCNN Fourier convolution
(`methods.fcnn.FourierConv2d`: element-wise complex weights mixing channels, free complex
H x W weights initialised from He-normal K x K kernels) -> 2SReLU -> pooling, then [Re, Im]
flattened into an FC head (FC120 -> FC84 -> classes, ReLU, as FCNN). Pooling (`pool`):
"crop" (default) is the shared spectral crop to half size (`methods.fcnn.FourierPool2d` ->
`methods.fourier_pooling.spectral_crop`, Nyquist fold c = 1/2); "freq-avg" is the frequency-domain
2 x 2 average pool of `methods.freqpool`. Blocks: 6 and 16 channels with K = 5 (the LeNet
plan of `methods.fcnn.plan`). No inverse FFT anywhere (except inside candidate 3).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from methods import Option, register
from methods.fcnn import fourier_features, plan, spectrum_head

CANDIDATES = (1, 2, 3)
POOLS = ("crop", "freq-avg")
BETA_INIT = 4.0 / (3.0 * math.pi)
RECONSTRUCTION_NOTE = (
    "RECONSTRUCTION (2SReLU formula not public): y = alpha*X + beta*S(X) per channel, S the "
    "second harmonic (candidate 1: |X[k]| e^{2i arg X[k]} placed at 2k; 2: X[k]^2 at 2k; 3: "
    "DFT(x^2)); convolution-free net = fft2(ortho) + FCNN Fourier conv + 2SReLU + spectral "
    "crop pooling + FC head. See methods/twosrelu.py and docs/methods.md.")


# --------------------------------------------------------------------------- the activation

def harmonic_index(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(src, dst) indices along an axis of length n: every signed frequency k with |2k| < n/2
    (listed in FFT order 0..m, -m..-1), and the bin of 2k. Symmetric in k and -k; dst is
    injective."""
    m = max(k for k in range(n) if 4 * k < n)          # |2k| < n/2  <=>  |k| <= m
    ks = list(range(0, m + 1)) + list(range(-m, 0))     # FFT order: 0..m, -m..-1
    src = torch.tensor([k % n for k in ks], dtype=torch.long)
    dst = torch.tensor([(2 * k) % n for k in ks], dtype=torch.long)
    return src, dst


def _low_block(x: torch.Tensor, dim: int, count: int) -> torch.Tensor:
    """The `count` (odd) lowest signed frequencies 0..m, -m..-1 of `dim`, in FFT order: the
    `src` of `harmonic_index` (narrow + cat, i.e. slices, rather than a gather)."""
    m = count // 2
    n = x.shape[dim]
    return torch.cat([x.narrow(dim, 0, m + 1), x.narrow(dim, n - m, m)], dim) if m else \
        x.narrow(dim, 0, 1)


def place_second_harmonic(values: torch.Tensor, size: tuple[int, int], index) -> torch.Tensor:
    """Put values (..., len(src_r), len(src_c)) at the doubled frequencies of an H x W grid."""
    (_, dst_r), (_, dst_c) = index
    h, w = size
    rows = values.new_zeros((*values.shape[:-2], h, values.shape[-1])).index_copy(-2, dst_r, values)
    return rows.new_zeros((*values.shape[:-2], h, w)).index_copy(-1, dst_c, rows)


def second_harmonic(x: torch.Tensor, candidate: int = 1, index=None, norm: str = "ortho"
                    ) -> torch.Tensor:
    """S(X) over the last two dims of a complex spectrum (..., H, W) (FFT order).

    candidate 1: S[2k] = X[k] * sgn(X[k]) = X[k]^2/|X[k]| (0 where X[k] = 0);
    candidate 2: S[2k] = X[k]^2; candidate 3: fft2(ifft2(X)^2) in the DFT convention `norm`.
    `index`: ((src_r, dst_r), (src_c, dst_c)) from `harmonic_index` (computed if None)."""
    h, w = x.shape[-2:]
    if candidate == 3:
        spatial = torch.fft.ifft2(x, norm=norm)
        return torch.fft.fft2(spatial * spatial, norm=norm)
    if index is None:
        index = (harmonic_index(h), harmonic_index(w))
    z = _low_block(_low_block(x, -2, len(index[0][0])), -1, len(index[1][0]))
    if candidate == 1:
        s = z * torch.sgn(z)
    elif candidate == 2:
        s = z * z
    else:
        raise ValueError(f"unknown 2SReLU candidate {candidate!r}; use one of {CANDIDATES}")
    index = tuple((a.to(x.device), b.to(x.device)) for a, b in index)
    return place_second_harmonic(s, (h, w), index)


class TwoSReLU(nn.Module):
    """y = alpha * X + beta * S(X), alpha and beta learnable real numbers per channel.

    Input/output: complex (B, C, H, W) full spectra on the grid `size`."""

    def __init__(self, channels: int, size: tuple[int, int], candidate: int = 1, *,
                 alpha: float = 1.0, beta: float = BETA_INIT, norm: str = "ortho"):
        super().__init__()
        if candidate not in CANDIDATES:
            raise ValueError(f"unknown 2SReLU candidate {candidate!r}; use one of {CANDIDATES}")
        self.candidate, self.size, self.norm = candidate, tuple(size), norm
        self.alpha = nn.Parameter(torch.full((channels,), float(alpha)))
        self.beta = nn.Parameter(torch.full((channels,), float(beta)))
        (sr, dr), (sc, dc) = harmonic_index(size[0]), harmonic_index(size[1])
        for name, t in (("src_r", sr), ("dst_r", dr), ("src_c", sc), ("dst_c", dc)):
            self.register_buffer(name, t, persistent=False)

    def forward(self, x):
        index = ((self.src_r, self.dst_r), (self.src_c, self.dst_c))
        s = second_harmonic(x, self.candidate, index, self.norm)
        a = self.alpha.view(-1, 1, 1)
        b = self.beta.view(-1, 1, 1)
        return x * a + s * b

    def extra_repr(self):
        return f"channels={self.alpha.numel()}, size={self.size}, candidate={self.candidate}"


# --------------------------------------------------------------------------- the network

class TwoSReLUNet(nn.Module):
    """fft2(ortho) -> [FCNN Fourier conv -> 2SReLU -> pool] x n -> [Re, Im] -> FC head."""

    def __init__(self, arch, input_shape, num_classes, *, candidate, pool, fold_c, dropout_fc):
        super().__init__()
        convs, hidden = plan(arch)
        self.features, sizes, (c, h, w) = fourier_features(
            input_shape, convs, lambda cout, size: TwoSReLU(cout, size, candidate),
            pool, fold_c, name=f"2srelu {arch}")
        self.head = spectrum_head(2 * c * h * w, hidden, num_classes, dropout_fc)
        self.info = {"reconstruction": True, "reconstruction_note": RECONSTRUCTION_NOTE,
                     "arch": arch, "candidate": candidate, "pool": pool, "fold_c": fold_c,
                     "dropout_fc": dropout_fc, "alpha_init": 1.0, "beta_init": BETA_INIT,
                     "input_fft": "fft2, norm=ortho (once)", "map_sizes": [list(s) for s in sizes],
                     "paper_mnist_test_error": 0.0308}

    def forward(self, x):
        z = self.features(torch.fft.fft2(x, norm="ortho"))
        return self.head(torch.cat([z.real, z.imag], dim=1))

    def activations(self) -> list[TwoSReLU]:
        return [m for m in self.features if isinstance(m, TwoSReLU)]

    def describe(self) -> dict:
        return dict(self.info)


OPTIONS = {"candidate": Option(1, choices=CANDIDATES),
           "pool": Option("crop", choices=POOLS),
           "fold_c": Option(0.5, interval="(0, inf)"),
           "dropout_fc": Option(0.0, interval="[0, 1)")}


@register("2srelu", archs=("lenet5",), options=OPTIONS, reconstruction=True,
          description="2SReLU (Watanabe & Wolf 2021), RECONSTRUCTION: conv-free frequency-domain "
                      "net, FCNN Fourier layers + second-harmonic activation + spectral crop")
def build_twosrelu(arch, input_shape, num_classes, *, candidate, pool, fold_c, dropout_fc):
    return TwoSReLUNet(arch, tuple(input_shape), num_classes, candidate=candidate, pool=pool,
                       fold_c=fold_c, dropout_fc=dropout_fc)
