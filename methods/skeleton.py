"""The `methods.cnn` networks with a method's layer in place of every convolution.

Used by the layer-replacement methods (fno, gfnet, ffc, realnode, hartley): the skeleton --
BatchNorm, LeakyReLU(0.2), Dropout, max pooling and the FC head -- is built by
`methods.cnn.build_cnn` itself (its `conv` factory argument), so it cannot drift from the
baseline. Only `lenet5` (two 5x5 convs on 28x28 and 14x14 maps) and `vgg-small` (five 3x3
convs on 32, 16, 8, 4, 2) are offered, the two skeletons the issue asks for.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from methods import Option, cnn

ARCHS = ("lenet5", "vgg-small")
default_arch = cnn.default_arch        # lenet5 for MNIST-sized inputs, else vgg-small


def options(own: dict[str, Option]) -> dict[str, Option]:
    """Registry options: the cnn's dropout rates plus the method's own options."""
    return {**cnn.OPTIONS, **own}


class ReplacedCNN(nn.Sequential):
    """A `methods.cnn` network whose convolutions were built by a method's factory.

    Same module indices (and state-dict keys) as the cnn. `describe()` is the method's
    `info` plus, per replaced layer in order, that layer's own `describe()`."""

    def __init__(self, net: nn.Sequential, info: dict):
        super().__init__(*net)
        self.info = dict(info)

    def replaced_layers(self) -> list[nn.Module]:
        return [m for m in self if callable(getattr(m, "describe", None))]

    def describe(self) -> dict:
        return {**self.info, "layers": [m.describe() for m in self.replaced_layers()]}


def build(arch: str, input_shape, num_classes: int, dropout_conv: float, dropout_fc: float,
          conv: Callable[[int, int, int, tuple[int, int]], nn.Module], info: dict
          ) -> ReplacedCNN:
    """`methods.cnn.build_cnn(arch, ...)` with `conv(cin, cout, k, (h, w))` for each conv
    (the dropout rates were checked by the registry against `methods.cnn.OPTIONS`)."""
    net = cnn.build_cnn(arch, tuple(input_shape), num_classes, dropout_conv, dropout_fc, conv)
    return ReplacedCNN(net, {"arch": arch, **info})
