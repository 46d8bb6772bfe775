"""Rippel, Snoek & Adams, "Spectral Representations for CNNs" (NIPS 2015): spectral pooling,
frequency dropout and spectral parameterization of filters.

Reference: docs/methods.md, "Spectral pooling and spectral parameterization" ([P] paper,
[R] recollection, [C] reimplementations). Registered methods:

    spectral-pooling   the §5.1 classifier (arch `rippel-sp`) with spectral pooling and
                       frequency dropout.
    spectral-param     filters stored as complex K x K coefficients f, spatial filter
                       w = Re(ifft2(f, norm="ortho")) used in an ordinary convolution; on
                       Rippel's §5.2 nets (`rippel-deep`, `rippel-generic`), the §5.1 net
                       (`rippel-sp`) and the `cnn` baselines (`lenet5`, `vgg-small`, `vgg-large`).
    spatial-param      the spatial twin: the same architectures, the same initial function
                       (same seed -> same weights), ordinary real filters.

Operators (one implementation each, in methods/fourier_pooling.py, tested in
tests/test_fourier_pooling.py): `spectral_crop` (FFT order, any parity, Nyquist fold with
constant c, default 1/2), `spectral_pool` (fast paths equal to the fft2 reference: two real
GEMMs with the separable pooling operators on maps up to 64 px, else rfft2),
`frequency_mask` / `sample_cutoff` / `dropout_fraction`.

Choices (the paper's supplement with TREATCORNERCASES is not available to us):
- Pooling scale `scale`: "ortho" (default; the paper's unitary DFT on both sizes, so the
  map's mean grows by sqrt(MN/HW) per layer), "mean" (mean-preserving) or "none" (torch's
  unnormalized forward / 1/(HW) inverse). The nets have no BatchNorm, so this matters.
- Fold constant `fold_c` = 1/2: the orthogonal projection onto real maps; it equals
  Re(iDFT(naive crop)) done axis by axis. (Done in one 2-D step, Re(iDFT(naive crop))
  differs at the single corner bin when both sizes are even: it keeps Re X[-n,-n] instead
  of the mean of the 4 aliased bins, and it is then not equivariant under a flip of one axis.)
- Frequency dropout: one cutoff per mini-batch (per forward call in training mode), the side
  R ~ U[c_m n_m, n_m] of a centred square, keep bins with 2 max(|k|,|l|) <= R (L-inf), with
  n_m the pooled output size and c_m = alpha + (m/M)(beta - alpha), m = 1..M. No rescale of
  the kept bins; identity in eval. (oracleofnj draws a radius in U[c(1+n//2), 1+n//2]; ours is
  the same square in "side" units, whose top value n keeps everything.)
- §5.1 net: (conv KxK, 96+32m filters capped at `max_filters` -> ReLU -> spectral pool to
  floor(gamma H_m) -> ReLU) for m = 1..M, then conv1x1 (96+32M, capped) -> ReLU -> conv1x1
  (classes) -> global average pooling; softmax is in the loss. M = `blocks` (the paper does
  not report it; default 5 as oracleofnj). 'same' padding. No BN, no dropout [R].
- §5.2 nets [R; layer lists as in oracleofnj]: `rippel-deep` C96-C96-MP-C192-C192-C192-MP-
  C192(1x1)-C_classes(1x1)-GA and `rippel-generic` C96-MP-C192-MP-FC1024-FC512-FC_classes;
  K x K convs ('same' padding, K = `kernel`, 3 or 5), MP = 3x3 max pool, stride 2, padding
  1; ReLU after every conv/hidden FC; optional Dropout(`dropout`, default 0) after each max
  pool and hidden FC (the paper trained with dropout and augmentation; the harness has no
  augmentation).
- Initialization of the Rippel nets: He-normal (fan-in, ReLU gain) weights, zero biases (the
  nets have no BN). Spectral parameterization starts from the FFT (ortho) of exactly these
  spatial weights, so step 0 equals the spatial net [V in tests].
- Spectral parameterization = option 1 of docs/methods.md: 2K^2 real numbers per filter (complex
  parameter), w = Re(ifft2(f, ortho)). Its Jacobian J satisfies J J^T = I, so plain SGD
  (also with momentum / weight decay) follows the spatial trajectory exactly; adaptive
  optimizers (Adam, RMSprop: per-coordinate on Re f and Im f) do not, which is what the
  paper's speed-up measures. 1x1 convolutions are left spatial (their ortho DFT is the
  identity on the real part). Linear layers stay spatial.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.errors import UserError
from methods import cnn as cnn_methods
from methods import Option, register
from methods.fourier_pooling import (MATMUL_POOL_MAX, POOL_SCALES, dropout_fraction,
                                     frequency_mask_1d, sample_cutoff_tensor, spectral_pool)

RIPPEL_ARCHS = ("rippel-deep", "rippel-generic", "rippel-sp")
PARAM_ARCHS = RIPPEL_ARCHS + cnn_methods.ARCHS


# ----------------------------------------------------------------------------- layers
class SpectralPool2d(nn.Module):
    """Spectral pooling of real NCHW maps to `size`, with optional frequency dropout.

    `dropout_low` = c_m enables frequency dropout: in training mode one cutoff
    R ~ U[c_m n, n] (n = max(size)) is drawn per forward call (= per mini-batch) from the
    global torch RNG of the input's device and the cropped spectrum is multiplied by
    `frequency_mask(size, R)`. The draw stays on the device (`last_cutoff` is a 0-dim
    tensor) and the mask is applied in its separable form (rows x cols of the L-inf
    square), so the layer has no host sync and a CUDA graph replays a fresh cutoff each
    step. In eval mode no mask is applied.
    """

    def __init__(self, size, *, fold_c: float = 0.5, scale: str = "ortho", onesided: bool = True,
                 dropout_low: float | None = None):
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.fold_c, self.scale, self.onesided, self.dropout_low = fold_c, scale, onesided, dropout_low
        self.last_cutoff: torch.Tensor | None = None

    def forward(self, x):
        mask = None
        if self.training and self.dropout_low is not None:
            h, w = self.size
            cutoff = sample_cutoff_tensor(max(h, w), self.dropout_low, device=x.device)
            self.last_cutoff = cutoff
            mask = (frequency_mask_1d(h, cutoff, device=x.device, dtype=x.dtype),
                    frequency_mask_1d(w, cutoff, device=x.device, dtype=x.dtype))
        return spectral_pool(x, self.size, fold_c=self.fold_c, scale=self.scale,
                             onesided=self.onesided, mask=mask)

    def extra_repr(self):
        return (f"size={self.size}, fold_c={self.fold_c:g}, scale={self.scale}, "
                f"onesided={self.onesided}, dropout_low={self.dropout_low}")


class SpectralParamConv2d(nn.Module):
    """A Conv2d whose kernel is stored as complex coefficients: w = Re(ifft2(f, norm="ortho")).

    Built from an existing `nn.Conv2d` (`from_conv`): f = fft2(w0, norm="ortho"), so the
    layer computes exactly what the conv computed. The bias stays spatial (real).
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError("only zero-padded convolutions can be re-parameterized")
        self.stride, self.padding, self.dilation, self.groups = (
            conv.stride, conv.padding, conv.dilation, conv.groups)
        self.spectrum = nn.Parameter(torch.fft.fft2(conv.weight.detach().clone(), norm="ortho"))
        self.bias = conv.bias

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "SpectralParamConv2d":
        return cls(conv)

    @property
    def weight(self) -> torch.Tensor:
        return torch.fft.ifft2(self.spectrum, norm="ortho").real

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self):
        cout, cin, kh, kw = self.spectrum.shape
        return f"{cin * self.groups}, {cout}, kernel_size=({kh}, {kw}), spectral (ortho)"


def spectral_parameterize(model: nn.Module) -> nn.Module:
    """Replace, in place, every nn.Conv2d with a kernel larger than 1x1 by a
    `SpectralParamConv2d` computing the same function. Returns the model."""
    for name, child in model.named_children():
        if isinstance(child, nn.Conv2d) and max(child.kernel_size) > 1:
            setattr(model, name, SpectralParamConv2d.from_conv(child))
        else:
            spectral_parameterize(child)
    return model


def he_init_(model: nn.Module) -> nn.Module:
    """He-normal (fan-in, ReLU gain) weights and zero biases for every conv and linear layer."""
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
    return model


# ------------------------------------------------------------------------------- nets
class RippelNet(nn.Sequential):
    """nn.Sequential with a `describe()` for the run record."""

    def __init__(self, *layers, info: dict):
        super().__init__(*layers)
        self.info = info

    def describe(self) -> dict:
        info = dict(self.info)
        info["spectral_param_convs"] = sum(isinstance(m, SpectralParamConv2d) for m in self.modules())
        return info


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(-2, -1))


def sp_sizes(h: int, w: int, blocks: int, gamma: float) -> list[tuple[int, int]]:
    """Map sizes after each spectral pooling: floor(gamma * previous), per axis."""
    sizes = []
    for m in range(blocks):
        h, w = math.floor(gamma * h + 1e-9), math.floor(gamma * w + 1e-9)
        if h < 1 or w < 1:
            raise UserError(f"spectral pooling with gamma={gamma} leaves no pixels after block "
                            f"{m + 1}; use fewer blocks (--set blocks=...) or a larger gamma")
        sizes.append((h, w))
    return sizes


def sp_filters(m: int, cap: int) -> int:
    return min(cap, 96 + 32 * m)


def rippel_sp(input_shape, num_classes, *, blocks, gamma, alpha, beta, freq_dropout, fold_c,
              scale, kernel, max_filters, onesided) -> RippelNet:
    """Rippel §5.1: (C_{96+32m}^{KxK} -> SP to floor(gamma H_m))_{m=1..M} -> C^{1x1} -> C_cls^{1x1} -> GA."""
    c, h, w = input_shape
    sizes = sp_sizes(h, w, blocks, gamma)
    layers: list[nn.Module] = []
    lows = []
    for m, size in enumerate(sizes, start=1):
        cout = sp_filters(m, max_filters)
        low = dropout_fraction(m, blocks, alpha, beta) if freq_dropout else None
        lows.append(low)
        layers += [nn.Conv2d(c, cout, kernel, padding=kernel // 2), nn.ReLU(),
                   SpectralPool2d(size, fold_c=fold_c, scale=scale, onesided=onesided,
                                  dropout_low=low), nn.ReLU()]
        c = cout
    top = sp_filters(blocks, max_filters)
    layers += [nn.Conv2d(c, top, 1), nn.ReLU(), nn.Conv2d(top, num_classes, 1), GlobalAvgPool()]
    info = {"arch": "rippel-sp", "map_sizes": [[h, w]] + [list(s) for s in sizes],
            "filters": [sp_filters(m, max_filters) for m in range(1, blocks + 1)] + [top],
            "freq_dropout_low_fraction": lows, "pool_scale": scale, "fold_c": fold_c,
            "pool_path": "fft2" if not onesided else (
                "matmul" if max(h, w) <= MATMUL_POOL_MAX else "rfft2")}
    return he_init_(RippelNet(*layers, info=info))


def max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, padding=1)


def pooled(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 2 - 3) // 2 + 1
    return n


def rippel_deep(input_shape, num_classes, *, kernel, dropout) -> RippelNet:
    c = input_shape[0]

    def conv(cin, cout, k=kernel):
        return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU()]

    layers = [*conv(c, 96), *conv(96, 96), max_pool(), nn.Dropout(dropout),
              *conv(96, 192), *conv(192, 192), *conv(192, 192), max_pool(), nn.Dropout(dropout),
              *conv(192, 192, 1), nn.Conv2d(192, num_classes, 1), GlobalAvgPool()]
    return he_init_(RippelNet(*layers, info={"arch": "rippel-deep", "kernel": kernel}))


def rippel_generic(input_shape, num_classes, *, kernel, dropout) -> RippelNet:
    c, h, w = input_shape
    flat = 192 * pooled(h, 2) * pooled(w, 2)
    layers = [nn.Conv2d(c, 96, kernel, padding=kernel // 2), nn.ReLU(), max_pool(),
              nn.Conv2d(96, 192, kernel, padding=kernel // 2), nn.ReLU(), max_pool(),
              nn.Flatten(), nn.Linear(flat, 1024), nn.ReLU(), nn.Dropout(dropout),
              nn.Linear(1024, 512), nn.ReLU(), nn.Dropout(dropout), nn.Linear(512, num_classes)]
    return he_init_(RippelNet(*layers, info={"arch": "rippel-generic", "kernel": kernel}))


# ------------------------------------------------------------------------ registration
def _odd(k) -> bool:
    return k % 2 == 1


# Options by architecture: the spectral-pooling net (rippel-sp), the other Rippel nets
# (rippel-deep, rippel-generic) and the cnn baselines (their dropout rates).
SP_ARCHS = ("rippel-sp",)
OPTIONS = {
    "blocks": Option(5, interval="[1, inf)", archs=SP_ARCHS, use="at least 1 block"),
    "gamma": Option(0.85, interval="(0, 1]", archs=SP_ARCHS, use="a size decay in (0, 1]"),
    "alpha": Option(0.30, interval="[0, 1]", archs=SP_ARCHS),
    "beta": Option(0.15, interval="[0, 1]", archs=SP_ARCHS),
    "freq_dropout": Option(True, archs=SP_ARCHS),
    "fold_c": Option(0.5, interval="(0, inf)", archs=SP_ARCHS,
                     use="a positive constant such as 0.5"),
    "scale": Option("ortho", choices=POOL_SCALES, archs=SP_ARCHS),
    "kernel": Option(3, interval="[1, inf)", archs=RIPPEL_ARCHS, rule=_odd,
                     use="an odd filter size such as 3 or 5"),
    "max_filters": Option(288, interval="[1, inf)", archs=SP_ARCHS, use="a positive filter count"),
    "onesided": Option(True, archs=SP_ARCHS),
    "dropout": Option(0.0, interval="[0, 1)", archs=("rippel-deep", "rippel-generic")),
    **{k: o.replace(archs=cnn_methods.ARCHS) for k, o in cnn_methods.OPTIONS.items()},
}


def build_net(arch, input_shape, num_classes, **hp) -> nn.Module:
    """The spatial network `arch` (Rippel nets or `cnn` baselines) with options `hp`."""
    if arch == "rippel-sp":
        return rippel_sp(input_shape, num_classes, **hp)
    if arch == "rippel-deep":
        return rippel_deep(input_shape, num_classes, **hp)
    if arch == "rippel-generic":
        return rippel_generic(input_shape, num_classes, **hp)
    return cnn_methods.build_cnn(arch, input_shape, num_classes, **hp)


class _Described(nn.Module):
    """Wraps a model without `describe()` (the cnn baselines) to add one."""

    def __init__(self, net: nn.Module, info: dict):
        super().__init__()
        self.net, self.info = net, info

    def forward(self, x):
        return self.net(x)

    def describe(self) -> dict:
        return dict(self.info, spectral_param_convs=sum(
            isinstance(m, SpectralParamConv2d) for m in self.modules()))


def _with_param_info(model: nn.Module, arch: str, parameterization: str) -> nn.Module:
    if isinstance(model, RippelNet):
        model.info = dict(model.info, parameterization=parameterization)
        return model
    return _Described(model, {"arch": arch, "parameterization": parameterization})


@register("spectral-pooling", archs=SP_ARCHS, options=OPTIONS,
          description="Rippel et al. 2015 §5.1: CNN with spectral pooling and frequency dropout")
def build_spectral_pooling(arch, input_shape, num_classes, **hp):
    return build_net(arch, input_shape, num_classes, **hp)


@register("spectral-param", archs=PARAM_ARCHS, options=OPTIONS,
          default_arch=cnn_methods.default_arch,   # the documented rule: lenet5 < 32x32, else vgg-small
          description="Rippel et al. 2015 §5.2: filters parameterized by complex K x K spectra, "
                      "w = Re(ifft2(f, ortho)); the spatial twin is spatial-param")
def build_spectral_param(arch, input_shape, num_classes, **hp):
    net = spectral_parameterize(build_net(arch, input_shape, num_classes, **hp))
    return _with_param_info(net, arch, "spectral: w = Re(ifft2(f, norm='ortho')), f complex KxK")


@register("spatial-param", archs=PARAM_ARCHS, options=OPTIONS,
          default_arch=cnn_methods.default_arch,   # the documented rule: lenet5 < 32x32, else vgg-small
          description="spatial twin of spectral-param: the same architectures and initial "
                      "weights, ordinary real filters")
def build_spatial_param(arch, input_shape, num_classes, **hp):
    return _with_param_info(build_net(arch, input_shape, num_classes, **hp), arch, "spatial")
