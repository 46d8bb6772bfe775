"""Plain spatial CNN baselines from the CEMNet paper (§4.2, §4.3).

- `lenet5`: the "modified LeNet-5": conv5x5(6) 'same' -> pool -> conv5x5(16) 'same' ->
  pool -> FC120 -> FC84 -> classes.
- `vgg-small`: 5 blocks of 64, 128, 256, 512, 512 channels, one 3x3 conv each, a 2x2
  max pool ending each block, then FC512 -> classes.
- `vgg-large`: the same blocks with 2, 2, 2, 3, 3 convs (the paper's count; its op
  figure matches 12 convs, not VGG-16's 13).

Every conv and hidden FC layer is followed by BatchNorm, LeakyReLU(0.2) and Dropout.
The paper gives no dropout rate for the CNNs. Bernoulli dropout feeding the next
layer's BatchNorm shifts the activation variance between training and evaluation
(Li et al., CVPR 2019): at the CEMNet code's rates (0.4 after convs, 0.5 after FCs)
LeNet-5 reached 85.9% validation accuracy after 3 epochs on 5,000 MNIST images, against
97.2% at 0.1/0.3 and 98.3% without dropout. The defaults are therefore 0.1 after convs
and 0.3 after hidden FCs; `--set dropout_conv=0.4 --set dropout_fc=0.5` gives the code's.
"""

from __future__ import annotations

import torch.nn as nn

from harness.errors import UserError
from methods import Option, register

ARCHS = ("lenet5", "vgg-small", "vgg-large")
VGG_CHANNELS = (64, 128, 256, 512, 512)
VGG_CONVS = {"vgg-small": (1, 1, 1, 1, 1), "vgg-large": (2, 2, 2, 3, 3)}
LEAKY_SLOPE = 0.2


def default_arch(input_shape) -> str:
    """LeNet-5 for MNIST-sized inputs, VGG-small for CIFAR-sized ones."""
    return "lenet5" if min(input_shape[-2:]) < 32 else "vgg-small"


# The dropout rates, declared once: the layer-replacement methods (methods/skeleton.py)
# and the Rippel twins (methods/spectral.py) on the cnn architectures share them.
OPTIONS = {"dropout_conv": Option(0.1, interval="[0, 1)"),
           "dropout_fc": Option(0.3, interval="[0, 1)")}


def spatial_conv(cin: int, cout: int, k: int, size: tuple[int, int]) -> nn.Module:
    """The baseline convolution: k x k, 'same' zero padding, with bias."""
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def conv_block(cin: int, cout: int, k: int, p: float, conv=spatial_conv,
               size: tuple[int, int] = (0, 0)) -> list[nn.Module]:
    """conv -> BN -> LeakyReLU -> Dropout. `conv(cin, cout, k, size)` builds the convolution
    (or the layer that replaces it; `size` is the H x W of the map it runs on)."""
    return [conv(cin, cout, k, size), nn.BatchNorm2d(cout),
            nn.LeakyReLU(LEAKY_SLOPE), nn.Dropout(p)]


def fc_block(fin: int, fout: int, p: float) -> list[nn.Module]:
    return [nn.Linear(fin, fout), nn.BatchNorm1d(fout), nn.LeakyReLU(LEAKY_SLOPE), nn.Dropout(p)]


def pooled_size(n: int, pools: int, arch: str) -> int:
    for _ in range(pools):
        n //= 2
    if n < 1:
        raise UserError(f"input too small for {arch}: {pools} poolings leave no pixels; "
                        f"use --arch lenet5 or a larger input")
    return n


def lenet5(input_shape, num_classes, dropout_conv, dropout_fc, conv=spatial_conv) -> nn.Sequential:
    c, h, w = input_shape
    flat = 16 * pooled_size(h, 2, "lenet5") * pooled_size(w, 2, "lenet5")
    return nn.Sequential(
        *conv_block(c, 6, 5, dropout_conv, conv, (h, w)), nn.MaxPool2d(2),
        *conv_block(6, 16, 5, dropout_conv, conv, (h // 2, w // 2)), nn.MaxPool2d(2),
        nn.Flatten(),
        *fc_block(flat, 120, dropout_fc),
        *fc_block(120, 84, dropout_fc),
        nn.Linear(84, num_classes),
    )


def vgg(arch, input_shape, num_classes, dropout_conv, dropout_fc, conv=spatial_conv
        ) -> nn.Sequential:
    c, h, w = input_shape
    pooled = pooled_size(h, 5, arch) * pooled_size(w, 5, arch)   # checked before any layer
    layers: list[nn.Module] = []
    for block, (cout, n_convs) in enumerate(zip(VGG_CHANNELS, VGG_CONVS[arch])):
        for _ in range(n_convs):
            layers += conv_block(c, cout, 3, dropout_conv, conv, (h >> block, w >> block))
            c = cout
        layers.append(nn.MaxPool2d(2))
    flat = c * pooled
    return nn.Sequential(*layers, nn.Flatten(), *fc_block(flat, 512, dropout_fc),
                         nn.Linear(512, num_classes))


@register("cnn", archs=ARCHS, options=OPTIONS, default_arch=default_arch,
          description="spatial CNN baselines of the CEMNet paper (modified LeNet-5, VGG small/large)")
def build_cnn(arch, input_shape, num_classes, dropout_conv, dropout_fc, conv=spatial_conv):
    """The baseline `arch`; `conv(cin, cout, k, size)` builds each convolution, so spectral
    methods get the same skeleton (BN, LeakyReLU, pooling, dropout, head) around their layer."""
    if arch == "lenet5":
        return lenet5(input_shape, num_classes, dropout_conv, dropout_fc, conv)
    return vgg(arch, input_shape, num_classes, dropout_conv, dropout_fc, conv)
