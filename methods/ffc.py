"""Fast Fourier Convolution (Chi, Jiang & Mu, "Fast Fourier Convolution", NeurIPS 2020; the
authors' ffc.py, also used by LaMa) in place of the cnn's convolutions.

An FFC splits the channels into a local part (the first Cin - Cg_in) and a global part (the
last Cg_in = int(Cin * ratio_gin)), and likewise its output (Cg_out = int(Cout * ratio_gout)):

    y_local  = conv_l2l(x_local) + conv_g2l(x_global)          (k x k convs, 'same')
    y_global = conv_l2g(x_local) + SpectralTransform(x_global)

SpectralTransform(Cg_in -> Cg_out): c = Cg_out // 2;
    u = ReLU(BN(conv1x1(x)))                      Cg_in -> c
    v = FourierUnit(u) [+ LFU(u)]                 c -> c
    y = conv1x1(u + v [+ lfu])                    c -> Cg_out
FourierUnit(c -> c): X = rfft2(u, norm="ortho"); stack Re and Im as 2c real channels,
interleaved per channel ([Re u_0, Im u_0, Re u_1, ...], as the reference's permute/view);
1x1 conv (2c -> 2c, no bias) -> BN -> ReLU; back to c complex maps; irfft2(s=(H, W),
norm="ortho"). The 1x1 conv in the frequency domain is a global (image-wide) operation in
space. LFU ("local Fourier unit", optional): the first c/4 channels of u are cut into 2 x 2
spatial quarters stacked as channels, passed through a Fourier unit, and tiled back 2 x 2.

In the network the (local, global) pair is one tensor, the local channels first. The cnn's
BN, LeakyReLU, Dropout and max pool are per channel, so they act on both parts exactly as
FFC_BN_ACT's separate local and global BN/activation do.

Choices (ours, documented):
- Ratios. The split must be consistent along the chain: a layer's global input channels
  are the previous layer's global outputs (the reference passes (local, global) tuples, and
  its networks set each layer's ratio_gin to the previous ratio_gout). So `ratio_gout`
  (default 0.5) sets every layer's global output fraction and hence every later layer's
  global input, and `ratio_gin` (default 0, as the first FFC of the reference's ResNets) is
  the global fraction of the first layer's input, the image: int(C_image * ratio_gin)
  channels (0 on MNIST for any ratio_gin < 1).
- All convs are bias-free (the reference; the cnn's BN follows), stride 1, padding k // 2.
- `lfu` = False by default (LaMa's setting; the reference defaults to True). With
  `lfu` = True the LFU is used in every layer whose global branch allows it (c divisible
  by 4 and an even map); `describe()` lists where it is on. LeNet-5's first layer
  (Cg_out = 3, c = 1) never has one.
- A ratio that leaves exactly one global output channel (c = 0) is refused.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from harness.errors import UserError
from methods import Option, register, skeleton
from methods.fourier import fp32


class FourierUnit(nn.Module):
    """rfft2(ortho) -> [Re, Im] interleaved -> 1x1 conv -> BN -> ReLU -> irfft2(ortho)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(2 * cin, 2 * cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        b, c = x.shape[:2]
        h, w = int(x.shape[-2]), int(x.shape[-1])   # Python ints: the op count's trace needs them
        z = torch.view_as_real(torch.fft.rfft2(fp32(x), norm="ortho"))  # (B, C, H, Wf, 2)
        z = z.permute(0, 1, 4, 2, 3).reshape(b, 2 * c, h, w // 2 + 1)  # Re/Im interleaved
        z = self.relu(self.bn(self.conv(z)))
        # float32 again under mixed precision (the conv ran in bf16/fp16): the FFT needs it
        z = fp32(z).view(b, -1, 2, h, w // 2 + 1).permute(0, 1, 3, 4, 2).contiguous()
        return torch.fft.irfft2(torch.view_as_complex(z), s=(h, w), norm="ortho")


def lfu_fits(channels: int, size: tuple[int, int]) -> bool:
    return channels % 4 == 0 and size[0] % 2 == 0 and size[1] % 2 == 0


class SpectralTransform(nn.Module):
    """FFC's global -> global path: 1x1 conv -> BN -> ReLU -> Fourier unit (+ LFU) -> 1x1."""

    def __init__(self, cin: int, cout: int, size: tuple[int, int], lfu: bool = False):
        super().__init__()
        c = cout // 2
        self.conv1 = nn.Sequential(nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.fu = FourierUnit(c, c)
        self.lfu = FourierUnit(c, c) if lfu and lfu_fits(c, size) else None
        self.conv2 = nn.Conv2d(c, cout, 1, bias=False)

    def forward(self, x):
        x = self.conv1(x)
        out = x + self.fu(x)
        if self.lfu is not None:
            c, h, w = x.shape[1:]
            xs = torch.cat(torch.split(x[:, : c // 4], h // 2, dim=-2), dim=1)
            xs = torch.cat(torch.split(xs, w // 2, dim=-1), dim=1)
            out = out + self.lfu(xs).repeat(1, 1, 2, 2)
        return self.conv2(out)


class FFC(nn.Module):
    """A k x k FFC, Cin -> Cout, on one tensor whose last channels are the global part."""

    def __init__(self, cin: int, cout: int, k: int, size: tuple[int, int], *,
                 ratio_gin: float, ratio_gout: float, lfu: bool = False):
        super().__init__()
        self.in_g = int(cin * ratio_gin)
        self.out_g = int(cout * ratio_gout)
        self.in_l, self.out_l = cin - self.in_g, cout - self.out_g
        if self.out_g == 1:
            raise UserError(f"ratio_gout={ratio_gout} leaves 1 global channel of {cout}; the "
                            f"spectral transform halves it to 0; use a larger ratio_gout or 0")
        self.size = tuple(size)

        def conv(a, b):
            return nn.Conv2d(a, b, k, padding=k // 2, bias=False) if a and b else None

        self.l2l, self.l2g, self.g2l = (conv(self.in_l, self.out_l), conv(self.in_l, self.out_g),
                                        conv(self.in_g, self.out_l))
        self.g2g = (SpectralTransform(self.in_g, self.out_g, size, lfu)
                    if self.in_g and self.out_g else None)

    def forward(self, x):
        xl, xg = x[:, : self.in_l], x[:, self.in_l:]
        outs = []
        if self.out_l:
            paths = [f(v) for f, v in ((self.l2l, xl), (self.g2l, xg)) if f is not None]
            outs.append(paths[0] if len(paths) == 1 else paths[0] + paths[1])
        if self.out_g:
            paths = [f(v) for f, v in ((self.l2g, xl), (self.g2g, xg)) if f is not None]
            outs.append(paths[0] if len(paths) == 1 else paths[0] + paths[1])
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def describe(self) -> dict:
        return {"layer": "ffc", "map": list(self.size), "in_local_global": [self.in_l, self.in_g],
                "out_local_global": [self.out_l, self.out_g],
                "lfu": self.g2g is not None and self.g2g.lfu is not None}


OPTIONS = {"ratio_gin": Option(0.0, interval="[0, 1]"), "ratio_gout": Option(0.5, interval="[0, 1]"),
           "lfu": Option(False)}


@register("ffc", archs=skeleton.ARCHS, options=skeleton.options(OPTIONS),
          default_arch=skeleton.default_arch,
          description="Fast Fourier Convolution (Chi et al. 2020): local/global channel split, "
                      "spectral transform with a Fourier unit on the global part, inside the cnn "
                      "skeleton")
def build_ffc(arch, input_shape, num_classes, *, dropout_conv, dropout_fc, ratio_gin,
              ratio_gout, lfu):
    image = (input_shape[0], tuple(input_shape[1:]))

    def conv(cin, cout, k, size):
        # Later layers take the previous layer's global outputs as their global inputs.
        first = (cin, tuple(size)) == image
        return FFC(cin, cout, k, size, ratio_gin=ratio_gin if first else ratio_gout,
                   ratio_gout=ratio_gout, lfu=lfu)

    return skeleton.build(arch, input_shape, num_classes, dropout_conv, dropout_fc, conv,
                          {"method": "ffc", "ratio_gin": ratio_gin, "ratio_gout": ratio_gout,
                           "lfu": lfu,
                           "source": "Chi et al. NeurIPS 2020, FFC / SpectralTransform / "
                                     "FourierUnit (ffc.py)"})
