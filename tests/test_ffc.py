"""Fast Fourier Convolution, methods/ffc.py: the Fourier unit against a direct numpy
computation, the local/global paths against F.conv2d, the chained channel split, LFU,
gradients, parameters and op counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import methods
from harness import ops
from harness.errors import UserError
from harness.spec import RunSpec
from methods.ffc import FFC, FourierUnit, SpectralTransform
from helpers import CNN_CONVS, CNN_SHAPES, CNN_SKELETON_PARAMS, rand

pytestmark = pytest.mark.usefixtures("one_thread")


def net(arch="lenet5", shape=(1, 28, 28), **hp):
    torch.manual_seed(0)
    return methods.build(RunSpec("ffc", arch, "test", hparams=hp), shape, 10)


def randomize_bn(module, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters (eval mode uses them)."""
    g = np.random.default_rng(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.from_numpy(g.standard_normal(n)))
            m.running_var.copy_(torch.from_numpy(g.uniform(0.5, 2.0, n)))
            m.weight.data.copy_(torch.from_numpy(g.uniform(0.5, 1.5, n)))
            m.bias.data.copy_(torch.from_numpy(g.standard_normal(n)))
    return module


def np_fourier_unit(x, conv_w, bn):
    """numpy: rfft2 (ortho) -> per channel [Re, Im] as 2C channels, interleaved -> 1x1 conv ->
    BN (eval: running statistics) -> ReLU -> complex again -> irfft2 (ortho, s = H x W)."""
    c, h, w = x.shape
    xf = np.fft.rfft2(x, norm="ortho")
    z = np.empty((2 * c, h, w // 2 + 1))
    z[0::2], z[1::2] = xf.real, xf.imag
    z = np.einsum("oi,ihw->ohw", conv_w, z)
    mean, var = bn.running_mean.numpy(), bn.running_var.numpy()
    gamma, beta = bn.weight.detach().numpy(), bn.bias.detach().numpy()
    z = (z - mean[:, None, None]) / np.sqrt(var[:, None, None] + bn.eps) * gamma[:, None, None] \
        + beta[:, None, None]
    z = np.maximum(z, 0)
    return np.fft.irfft2(z[0::2] + 1j * z[1::2], s=(h, w), norm="ortho")


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (6, 5)])
def test_fourier_unit_matches_numpy(size):
    torch.manual_seed(0)
    fu = randomize_bn(FourierUnit(3, 3).double()).eval()
    x = rand(2, 3, *size)
    with torch.no_grad():
        y = fu(x)
    assert not y.is_complex() and y.shape == x.shape
    w = fu.conv.weight.detach()[:, :, 0, 0].numpy()
    for b in range(2):
        assert np.abs(y[b].numpy() - np_fourier_unit(x[b].numpy(), w, fu.bn)).max() < 1e-12


def test_spectral_transform_and_ffc_paths():
    """FFC = [l2l(x_l) + g2l(x_g), l2g(x_l) + ST(x_g)] with the spatial paths as F.conv2d and
    ST = conv2(u + FU(u)), u = ReLU(BN(conv1(x_g)))."""
    torch.manual_seed(0)
    layer = randomize_bn(FFC(6, 8, 3, (7, 7), ratio_gin=0.5, ratio_gout=0.5).double()).eval()
    assert (layer.in_l, layer.in_g, layer.out_l, layer.out_g) == (3, 3, 4, 4)
    x = rand(2, 6, 7, 7)
    xl, xg = x[:, :3], x[:, 3:]
    with torch.no_grad():
        st = layer.g2g
        u = F.relu(st.conv1[1](F.conv2d(xg, st.conv1[0].weight)))
        g2g = F.conv2d(u + st.fu(u), st.conv2.weight)
        out_l = (F.conv2d(xl, layer.l2l.weight, padding=1)
                 + F.conv2d(xg, layer.g2l.weight, padding=1))
        out_g = F.conv2d(xl, layer.l2g.weight, padding=1) + g2g
        assert (layer(x) - torch.cat([out_l, out_g], 1)).abs().max() < 1e-12
        assert (st(xg) - g2g).abs().max() < 1e-12


def test_lfu_quarters():
    """LFU: the first c/4 channels cut into 2 x 2 quarters (stacked as channels, rows first),
    a Fourier unit, tiled back 2 x 2 and added."""
    torch.manual_seed(0)
    st = randomize_bn(SpectralTransform(4, 8, (6, 6), lfu=True).double()).eval()
    assert st.lfu is not None
    x = rand(1, 4, 6, 6)
    with torch.no_grad():
        u = st.conv1(x)
        q = u[:, :1]
        quarters = torch.cat([q[..., :3, :3], q[..., 3:, :3], q[..., :3, 3:], q[..., 3:, 3:]], 1)
        ref = st.conv2(u + st.fu(u) + st.lfu(quarters).repeat(1, 1, 2, 2))
        assert (st(x) - ref).abs().max() < 1e-12
    assert SpectralTransform(4, 6, (6, 6), lfu=True).lfu is None     # 3 channels: no quarters
    assert SpectralTransform(4, 8, (5, 6), lfu=True).lfu is None     # odd map


def test_chained_split_in_the_network():
    """Each layer's global inputs are the previous layer's global outputs; the image is
    local (ratio_gin = 0) unless asked otherwise."""
    info = net("vgg-small", (3, 32, 32)).describe()["layers"]
    assert info[0]["in_local_global"] == [3, 0]
    for prev, cur in zip(info, info[1:]):
        assert cur["in_local_global"][1] == prev["out_local_global"][1]
    assert [d["out_local_global"] for d in info] == [[32, 32], [64, 64], [128, 128],
                                                     [256, 256], [256, 256]]
    first = net("vgg-small", (3, 32, 32), ratio_gin=0.5).describe()["layers"][0]
    assert first["in_local_global"] == [2, 1]
    lfu = net(lfu=True).describe()["layers"]
    assert [d["lfu"] for d in lfu] == [False, True]            # c = 1, then c = 4 on 14x14


def test_gradcheck_float64():
    torch.manual_seed(0)
    layer = randomize_bn(FFC(4, 4, 3, (5, 6), ratio_gin=0.5, ratio_gout=0.5).double()).eval()
    x = rand(1, 4, 5, 6).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-8)


def ffc_params(cin, cout, k, ratio_gin, ratio_gout=0.5):
    """FFC parameters by hand: the three k x k convs (no bias) and the spectral transform
    (1x1 Cg_in -> c, BN(c), FU: 1x1 2c -> 2c and BN(2c), 1x1 c -> Cg_out), c = Cg_out // 2."""
    ig, og = int(cin * ratio_gin), int(cout * ratio_gout)
    il, ol = cin - ig, cout - og
    c = og // 2
    spatial = (il * ol + il * og + ig * ol) * k * k
    st = (ig * c + 2 * c + 4 * c * c + 4 * c + c * og) if ig and og else 0
    return spatial + st


@pytest.mark.parametrize("arch", ["lenet5", "vgg-small"])
def test_parameter_counts(arch):
    shape = CNN_SHAPES[arch]
    expected = CNN_SKELETON_PARAMS[arch] + sum(ffc_params(a, b, k, 0.0 if i == 0 else 0.5)
                                               for i, (a, b, k, _) in enumerate(CNN_CONVS[arch]))
    model = net(arch, shape)
    assert ops.count_params(model) == expected
    model.eval()
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_op_counts_by_hand():
    """Forward at batch 1 of the Fourier unit: rfft2 of c maps and irfft2 of c maps (real
    FFTs, the convention's own function), the 1x1 conv on 2c x H x (W//2+1), BN (1 per
    element in eval mode)."""
    c, h, w = 3, 8, 6
    r = ops.count_ops(FourierUnit(c, c), (c, h, w))
    wf = w // 2 + 1
    assert r["breakdown_fwd"]["fft"] == round(2 * ops.fft_macs(h * w, c, real=True))
    assert r["breakdown_fwd"]["conv_linear"] == (2 * c) ** 2 * h * wf
    assert r["breakdown_fwd"]["elementwise"] == 2 * c * h * wf
    assert r["breakdown_fwd"]["complex_products"] == 0


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="ratio_gout"):
        net(ratio_gout=1.5)
    with pytest.raises(UserError, match="1 global channel"):
        net(ratio_gout=0.2)           # int(6 * 0.2) = 1
