"""GFNet global filter (Rao et al., "Global Filter Networks for Image Classification",
NeurIPS 2021; the authors' `GlobalFilter` module) in place of the cnn's convolutions.

Global filter: X = rfft2(x, norm="ortho"); Y[b, c] = X[b, c] * K[c] with a learnable complex
filter K[c] of the full one-sided size H x (W//2 + 1) per channel (depthwise); y =
irfft2(Y, s=(H, W), norm="ortho"). The two ortho scalings cancel, so (tests/test_gfnet.py)
the layer is the depthwise circular convolution y_c = x_c (*) irfft2(K_c) -- a global
(H x W) spatial filter.

A depthwise filter cannot change the channel count, and GFNet mixes channels in the MLP
that follows each global filter (Linear layers applied per position, i.e. 1 x 1 convs). So
each cnn conv (Cin -> Cout, k x k) is replaced by a global filter plus a 1 x 1 conv (with
bias) -- a depthwise-separable layer with a global depthwise part:

- `order` = "mix-filter" (default): 1x1 conv Cin -> Cout, then the global filter on the Cout
  channels. Every output channel gets its own spatial filter; on a 1-channel image (MNIST)
  every (output, input) pair then has its own filter, as in the conv it replaces.
- `order` = "filter-mix": global filter on the Cin channels, then the 1 x 1 conv (GFNet's
  order inside a block). On a 1-channel input every output is then the same filtered map
  up to scale (before BN), so the first LeNet-5 layer is rank-1 in channels.

Choices (ours, documented):
- GFNet's block also has LayerNorm, a 4x hidden MLP with GELU and residual connections; here
  the cnn's BN -> LeakyReLU -> Dropout follows the layer instead, one layer per cnn conv.
- Initialization (`init`). "unit" (default): Re K, Im K ~ N(0, 1/2), so E|K|^2 = 1 and the
  random global filter preserves the expected energy of its input (Parseval), as a conv's
  He/Kaiming init is meant to. "gfnet": the authors' code, Re K, Im K ~ 0.02 N(0, 1). GFNet
  can afford that because its filter sits on a residual branch after LayerNorm; in place of
  a conv it scales every activation by ~0.02 (variance ~1e-4), the next BatchNorm's
  running variance (starting at 1, momentum 0.1) lags far behind, and evaluation-mode
  accuracy stayed at chance while training accuracy rose (our check, LeNet-5 on 2,000
  synthetic images, 2 epochs of RMSprop at lr 0.004: test accuracy 9% with "gfnet" at 97%
  training-mode accuracy, 79% with "unit"). The 1 x 1 conv keeps PyTorch's default init, as the cnn's convs.
- Boundary: circular, as in GFNet (no padding; the conv it replaces uses zero padding).
- `filter_size` = 0 (default): the full-size global filter of GFNet (H x (W//2+1) complex
  numbers per channel). A positive odd s restricts the filter's spatial extent: the filter
  is the rfft2 of an s x s real kernel (centred at offset 0, circularly), i.e. a local
  depthwise convolution computed in the frequency domain (the local counterpart of the
  global filter; GFNet's filter is the s = H x W case). Its s^2 taps are initialized with
  the same expected |K|^2 as the global filter under `init`. On a map whose smaller side
  is at most s a layer uses the full filter (a kernel of that size already spans the
  map), e.g. the 2 x 2 maps of vgg-small's last block.
- The conv's kernel size k is ignored with filter_size = 0.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from methods import Option, register, skeleton
from methods.fourier import fp32

ORDERS = ("mix-filter", "filter-mix")


class GlobalFilter(nn.Module):
    """Depthwise global filter on C channels of an H x W map (GFNet), or with `filter_size`
    s > 0 the frequency response of a depthwise s x s circular kernel."""

    def __init__(self, channels: int, size: tuple[int, int], filter_size: int = 0,
                 init: str = "unit"):
        super().__init__()
        self.size, self.filter_size, self.init = tuple(size), int(filter_size), init
        h, w = self.size
        # Std of Re K and Im K: E|K|^2 = 1 ("unit"), or GFNet's 0.02 ("gfnet").
        std = 0.02 if init == "gfnet" else 2 ** -0.5
        if self.filter_size:
            s = self.filter_size     # s^2 taps of variance 2 std^2 / s^2: the same E|K|^2
            self.kernel = nn.Parameter(std * 2 ** 0.5 / s * torch.randn(channels, s, s))
            self.weight = None
        else:
            self.kernel = None
            self.weight = nn.Parameter(torch.complex(std * torch.randn(channels, h, w // 2 + 1),
                                                     std * torch.randn(channels, h, w // 2 + 1)))

    def filter(self) -> torch.Tensor:
        """The complex filter on the one-sided H x (W//2+1) grid, per channel."""
        if self.weight is not None:
            return self.weight
        h, w = self.size
        s = self.filter_size
        # Kernel tap (a, b) sits at offset (a - s//2, b - s//2), wrapped around the grid.
        k = torch.roll(nn.functional.pad(self.kernel, (0, w - s, 0, h - s)),
                       shifts=(-(s // 2), -(s // 2)), dims=(-2, -1))
        return torch.fft.rfft2(k)

    def forward(self, x):
        h, w = int(x.shape[-2]), int(x.shape[-1])   # Python ints: the op count's trace needs them
        xf = torch.fft.rfft2(fp32(x), norm="ortho")     # float32 under mixed precision
        return torch.fft.irfft2(xf * self.filter(), s=(h, w), norm="ortho")

    def extra_repr(self):
        return f"size={self.size}, filter_size={self.filter_size or 'full'}"


class GlobalFilterConv(nn.Module):
    """Global filter + 1x1 conv in place of a Cin -> Cout conv (order as `order`)."""

    def __init__(self, cin: int, cout: int, size: tuple[int, int], *, order: str = "mix-filter",
                 filter_size: int = 0, init: str = "unit"):
        super().__init__()
        self.order, self.size = order, tuple(size)
        self.mix = nn.Conv2d(cin, cout, 1)
        self.filter = GlobalFilter(cout if order == "mix-filter" else cin, size, filter_size, init)

    def forward(self, x):
        if self.order == "mix-filter":
            return self.filter(self.mix(x))
        return self.mix(self.filter(x))

    def describe(self) -> dict:
        return {"layer": "gfnet", "order": self.order, "map": list(self.size),
                "filter_size": self.filter.filter_size or "full", "init": self.filter.init}


INITS = ("unit", "gfnet")
OPTIONS = {"order": Option("mix-filter", choices=ORDERS),
           "filter_size": Option(0, interval="[0, inf)", rule=lambda v: v == 0 or v % 2 == 1,
                                 use="0 (full, GFNet) or an odd kernel size such as 3"),
           "init": Option("unit", choices=INITS)}


@register("gfnet", archs=skeleton.ARCHS, options=skeleton.options(OPTIONS),
          default_arch=skeleton.default_arch,
          description="GFNet global filter (Rao et al. 2021): rfft2 -> learnable depthwise "
                      "complex filter -> irfft2, with a 1x1 conv for the channels, inside the "
                      "cnn skeleton")
def build_gfnet(arch, input_shape, num_classes, *, dropout_conv, dropout_fc, order, filter_size,
                init):
    def conv(cin, cout, k, size):
        fs = filter_size if filter_size < min(size) else 0
        return GlobalFilterConv(cin, cout, size, order=order, filter_size=fs, init=init)

    return skeleton.build(arch, input_shape, num_classes, dropout_conv, dropout_fc, conv,
                          {"method": "gfnet", "order": order, "init": init,
                           "filter_size": filter_size or "full",
                           "source": "Rao et al. NeurIPS 2021, GlobalFilter (gfnet.py)"})
