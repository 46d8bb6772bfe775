"""FCNN (Pratt et al. 2017, "FCNN: Fourier Convolutional Neural Networks"): a RECONSTRUCTION.

The paper's layer formulas, architectures and training recipe are not available to us
(docs/methods.md, "FCNN"), so this is the documented
reconstruction described there, labelled as such in the registry
(`reconstruction=True`) and in every run record (`describe()`). Verified facts it honours:
training entirely in the Fourier domain, Fourier convolution and Fourier pooling layers,
filters learned directly in the Fourier domain, MNIST and CIFAR-10.

Layer by layer (input: real, harness-normalized NCHW images):
- One FFT at the input: X = fft2(x, norm="ortho"). The unitary transform keeps coefficient
  energy equal to pixel energy, so the head sees inputs of the spatial net's scale (the nets
  have no BatchNorm). Nothing ever returns to the pixel domain: no inverse FFT anywhere.
- Fourier convolution: Y[b, o] = sum_i X[b, i] * W[i, o] element-wise over the full H x W
  spectrum at the map size (`methods.fourier.spectral_matmul`). W in C^{Cin x Cout x H x W}
  is a free complex parameter (2 Cin Cout H W real numbers), initialized as
  W = fft2(pad_kernel(w0)) with w0 a He-normal K x K kernel (std sqrt(2 / (Cin K^2)))
  anchored at the top-left, so at step 0 the layer is a circular convolution (not
  correlation) of the image with a real kernel. W is not kept Hermitian during training.
  Optional bias (`bias`="dc"): one real number per output channel added to the DC bin (the
  spectrum of a constant map, i.e. a spatial bias); default "none".
- Nonlinearity (`activation`): "crelu" (default; split-complex ReLU on Re and Im),
  "modrelu" (z * relu(|z| + b) / |z|, a learnable b per channel, initialized at 0, i.e. the
  identity; phase-preserving, hence still translation equivariant), or "none".
- Fourier pooling: the shared crop `methods.fourier_pooling.spectral_crop` to floor(H/2) x floor(W/2)
  (the analogue of the 2 x 2 max pool), FFT order, Nyquist fold with `fold_c` (default 1/2).
  On ortho coefficients the crop is, for a Hermitian spectrum, the unitary spectral pooling.
  `pool` = "freq-avg" instead: the 2 x 2 average pool of the (complex) map, computed in the
  frequency domain (`methods.freqpool`: Dirichlet product + fold, ortho convention kept).
- Head: flatten [Re, Im] of the last pooled spectrum -> real FC layers with ReLU and
  Dropout(`dropout_fc`) -> logits (softmax is in the loss). No BatchNorm anywhere.

Architectures, analogous to `methods.cnn` (same channels, kernels and pool positions):
- `lenet5`: FConv(6, K=5) -> act -> pool -> FConv(16, K=5) -> act -> pool -> FC120 -> FC84.
- `vgg-small`: blocks of 64, 128, 256, 512, 512 channels (K=3), one FConv each, a Fourier
  pool ending each block (32 -> 16 -> 8 -> 4 -> 2 -> 1: the last spectrum is the DC bin,
  like global average pooling), then FC512.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.errors import UserError
from methods import Option, register
from methods.fourier import pad_kernel, spectral_matmul
from methods.fourier_pooling import spectral_crop
from methods.freqpool import FreqAvgPool

ARCHS = ("lenet5", "vgg-small")
ACTIVATIONS = ("crelu", "modrelu", "none")
BIASES = ("none", "dc")
POOLS = ("crop", "freq-avg")
RECONSTRUCTION_NOTE = (
    "RECONSTRUCTION (formulas not public): fft2(ortho) once at the input; Fourier conv with free "
    "complex HxW weights initialized from fft2 of He-normal KxK kernels; configurable complex "
    "nonlinearity; pooling by the shared spectral crop; [Re, Im] flattened into FC layers; no "
    "inverse FFT. See methods/fcnn.py and docs/methods.md.")


def he_normal_kernel(cin: int, cout: int, k: int) -> torch.Tensor:
    """He-normal K x K kernels laid out (Cin, Cout, K, K), std sqrt(2 / (Cin K^2))."""
    return torch.randn(cin, cout, k, k) * math.sqrt(2.0 / (cin * k * k))


class FourierConv2d(nn.Module):
    """Y[b, o] = sum_i X[b, i] * W[i, o] on H x W spectra, W a free complex parameter."""

    def __init__(self, cin: int, cout: int, k: int, size: tuple[int, int], bias: str = "none"):
        super().__init__()
        k = min(k, *size)
        self.size, self.k = tuple(size), k
        self.weight = nn.Parameter(torch.fft.fft2(pad_kernel(he_normal_kernel(cin, cout, k), size)))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias == "dc" else None

    @classmethod
    def from_kernel(cls, w: torch.Tensor, size: tuple[int, int]) -> "FourierConv2d":
        """A layer whose weights are W = fft2(pad_kernel(w)) for a given (Cin, Cout, K, K) w."""
        layer = cls(w.shape[0], w.shape[1], w.shape[-1], size)
        layer.weight = nn.Parameter(torch.fft.fft2(pad_kernel(w, size)))
        return layer

    def forward(self, x):
        y = spectral_matmul(x, self.weight)
        if self.bias is not None:
            h, w = self.size
            y = y + F.pad(self.bias.view(-1, 1, 1), (0, w - 1, 0, h - 1))
        return y

    def extra_repr(self):
        cin, cout, h, w = self.weight.shape
        return f"{cin}, {cout}, size=({h}, {w}), init_kernel={self.k}, bias={self.bias is not None}"


class ComplexReLU(nn.Module):
    """Split-complex ReLU: relu(Re z) + i relu(Im z), as one ReLU over the real view (Re
    and Im are adjacent floats): one pass over memory, and one in the backward, where the
    Re/Im split takes five (two zero-filled complex gradients and their sum)."""

    def forward(self, z):
        return torch.view_as_complex(F.relu(torch.view_as_real(z.resolve_conj())))


class ModReLU(nn.Module):
    """modReLU: z * relu(|z| + b) / |z| with a learnable b per channel (phase preserved)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, z):
        mag = z.abs()
        return z * (F.relu(mag + self.b.view(-1, 1, 1)) / (mag + self.eps))


class FourierPool2d(nn.Module):
    """Fourier pooling: the shared spectral crop to floor(H / factor) x floor(W / factor)."""

    def __init__(self, size: tuple[int, int], fold_c: float = 0.5):
        super().__init__()
        self.size, self.fold_c = tuple(size), fold_c

    def forward(self, z):
        return spectral_crop(z, self.size, fold_c=self.fold_c)

    def extra_repr(self):
        return f"size={self.size}, fold_c={self.fold_c:g}"


def activation_layer(name: str, channels: int) -> nn.Module:
    if name == "crelu":
        return ComplexReLU()
    if name == "modrelu":
        return ModReLU(channels)
    return nn.Identity()


def plan(arch: str) -> tuple[list[tuple[int, int]], tuple[int, ...]]:
    """[(channels, kernel)] per Fourier conv (each followed by a pool) and the hidden FC sizes."""
    if arch == "lenet5":
        return [(6, 5), (16, 5)], (120, 84)
    return [(c, 3) for c in (64, 128, 256, 512, 512)], (512,)


def spectrum_head(fin: int, hidden, num_classes: int, dropout_fc: float) -> nn.Sequential:
    """Flattened [Re, Im] features -> FC layers with ReLU and dropout -> logits."""
    head: list[nn.Module] = [nn.Flatten()]
    for fout in hidden:
        head += [nn.Linear(fin, fout), nn.ReLU(), nn.Dropout(dropout_fc)]
        fin = fout
    head.append(nn.Linear(fin, num_classes))
    return nn.Sequential(*head)


def fourier_features(input_shape, convs, make_activation, pool: str, fold_c: float,
                     bias: str = "none", name: str = "network"):
    """[Fourier conv -> activation -> pool to half size] per (cout, k) in `convs`.

    Returns (nn.Sequential, map sizes, output (C, H, W)); shared by FCNN and 2SReLU.
    """
    c, h, w = input_shape
    blocks: list[nn.Module] = []
    sizes = [(h, w)]
    for cout, k in convs:
        ph, pw = h // 2, w // 2
        if ph < 1 or pw < 1:
            raise UserError(f"input {input_shape[1]}x{input_shape[2]} too small for {name}: "
                            f"{len(convs)} poolings leave no frequencies; use --arch lenet5")
        if pool == "freq-avg" and (h % 2 or w % 2):
            raise UserError(f"pool=freq-avg needs even map sizes, got {h}x{w}; use pool=crop")
        blocks += [FourierConv2d(c, cout, k, (h, w), bias), make_activation(cout, (h, w)),
                   FourierPool2d((ph, pw), fold_c) if pool == "crop" else
                   FreqAvgPool((h, w), 2, real_part=False, norm="ortho")]
        c, h, w = cout, ph, pw
        sizes.append((h, w))
    return nn.Sequential(*blocks), sizes, (c, h, w)


class FCNN(nn.Module):
    """FCNN reconstruction: fft2 once, Fourier conv/act/pool blocks, [Re, Im] -> FC head."""

    def __init__(self, arch, input_shape, num_classes, *, activation, fold_c, bias, dropout_fc,
                 pool="crop"):
        super().__init__()
        convs, hidden = plan(arch)
        self.features, sizes, (c, h, w) = fourier_features(
            input_shape, convs, lambda cout, size: activation_layer(activation, cout),
            pool, fold_c, bias, f"fcnn {arch}")
        self.head = spectrum_head(2 * c * h * w, hidden, num_classes, dropout_fc)
        self.info = {"reconstruction": True, "reconstruction_note": RECONSTRUCTION_NOTE,
                     "arch": arch, "activation": activation, "fold_c": fold_c, "bias": bias,
                     "pool": pool,
                     "input_fft": "fft2, norm=ortho (once)", "inverse_fft": "none",
                     "map_sizes": [list(s) for s in sizes],
                     "fourier_conv_params": [2 * layer.weight.numel() for layer in self.conv_layers()]}

    def conv_layers(self) -> list[FourierConv2d]:
        return [m for m in self.features if isinstance(m, FourierConv2d)]

    def forward(self, x):
        z = self.features(torch.fft.fft2(x, norm="ortho"))
        return self.head(torch.cat([z.real, z.imag], dim=1))

    def describe(self) -> dict:
        return dict(self.info)


def default_arch(input_shape) -> str:
    return "lenet5" if min(input_shape[-2:]) < 32 else "vgg-small"


OPTIONS = {"activation": Option("crelu", choices=ACTIVATIONS),
           "fold_c": Option(0.5, interval="(0, inf)"),
           "bias": Option("none", choices=BIASES),
           "dropout_fc": Option(0.0, interval="[0, 1)"),
           "pool": Option("crop", choices=POOLS)}


@register("fcnn", archs=ARCHS, options=OPTIONS, default_arch=default_arch, reconstruction=True,
          description="FCNN (Pratt et al. 2017), RECONSTRUCTION: Fourier conv with free complex "
                      "weights, spectral-crop pooling, no inverse FFT")
def build_fcnn(arch, input_shape, num_classes, *, activation, fold_c, bias, dropout_fc, pool):
    return FCNN(arch, tuple(input_shape), num_classes, activation=activation, fold_c=fold_c,
                bias=bias, dropout_fc=dropout_fc, pool=pool)
