"""CNN baselines: output shapes and parameter counts computed by hand from the paper."""

import pytest
import torch

import methods
from harness.errors import UserError
from harness.spec import RunSpec
from harness.suite import resolve_hparams


def conv(cin, cout, k):      # weights + bias + BatchNorm (gamma, beta)
    return cin * cout * k * k + cout + 2 * cout


def fc(fin, fout, bn=True):
    return fin * fout + fout + (2 * fout if bn else 0)


LENET = conv(1, 6, 5) + conv(6, 16, 5) + fc(16 * 7 * 7, 120) + fc(120, 84) + fc(84, 10, bn=False)
VGG_SMALL = (conv(3, 64, 3) + conv(64, 128, 3) + conv(128, 256, 3) + conv(256, 512, 3)
             + conv(512, 512, 3) + fc(512, 512) + fc(512, 10, bn=False))
VGG_LARGE = (conv(3, 64, 3) + conv(64, 64, 3)                      # convs per block: 2, 2, 2, 3, 3
             + conv(64, 128, 3) + conv(128, 128, 3)
             + conv(128, 256, 3) + conv(256, 256, 3)
             + conv(256, 512, 3) + 2 * conv(512, 512, 3)
             + 3 * conv(512, 512, 3)
             + fc(512, 512) + fc(512, 10, bn=False))


@pytest.mark.parametrize("arch,shape,expected", [
    ("lenet5", (1, 28, 28), LENET),
    ("vgg-small", (3, 32, 32), VGG_SMALL),
    ("vgg-large", (3, 32, 32), VGG_LARGE),
])
def test_param_counts_and_shapes(arch, shape, expected):
    model = methods.build(RunSpec("cnn", arch, "x"), shape, 10)
    assert sum(p.numel() for p in model.parameters()) == expected
    model.eval()
    assert model(torch.randn(3, *shape)).shape == (3, 10)


def test_lenet_numbers_match_the_paper_layout():
    # 108,238 = conv 156 + 2,416, FC 94,200 + 10,164 + 850, BatchNorm 452
    assert LENET == 108_238


def test_default_arch_by_input_size():
    assert methods.resolve_arch("cnn", None, (1, 28, 28)) == "lenet5"
    assert methods.resolve_arch("cnn", None, (3, 32, 32)) == "vgg-small"


def test_conv_layers_are_followed_by_bn_leaky_dropout():
    model = methods.build(RunSpec("cnn", "lenet5", "x"), (1, 28, 28), 10)
    mods = list(model)
    for i, m in enumerate(mods[:-1]):
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            assert isinstance(mods[i + 1], (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d))
            assert isinstance(mods[i + 2], torch.nn.LeakyReLU) and mods[i + 2].negative_slope == 0.2
            assert isinstance(mods[i + 3], torch.nn.Dropout)


def test_vgg_on_too_small_input_is_a_user_error():
    with pytest.raises(UserError, match="too small"):
        methods.build(RunSpec("cnn", "vgg-small", "x"), (1, 28, 28), 10)


def test_unknown_arch_and_option():
    with pytest.raises(UserError, match="valid architectures: lenet5, vgg-small, vgg-large"):
        methods.resolve_arch("cnn", "resnet", (1, 28, 28))
    with pytest.raises(UserError, match="valid options: dropout_conv, dropout_fc"):
        resolve_hparams("cnn", "lenet5", {"nope": "1"})
    with pytest.raises(UserError, match="unknown method 'nope'; valid methods:"):
        methods.get("nope")
