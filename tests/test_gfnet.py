"""GFNet global filter, methods/gfnet.py: the filter is a depthwise circular convolution with
its inverse transform (numpy, by definition), the local (filter_size) variant one with an
s x s kernel, the 1x1 channel mix in either order, gradients, parameters and op counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import methods
from harness import ops
from harness.errors import UserError
from harness.spec import RunSpec
from methods.gfnet import GlobalFilter, GlobalFilterConv
from helpers import CNN_CONVS, CNN_SHAPES, CNN_SKELETON_PARAMS, rand

pytestmark = pytest.mark.usefixtures("one_thread")


def net(arch="lenet5", shape=(1, 28, 28), **hp):
    torch.manual_seed(0)
    return methods.build(RunSpec("gfnet", arch, "test", hparams=hp), shape, 10)


def depthwise_circular_conv(x, g):
    """y[c, n] = sum_m x[c, m] g[c, n - m] (mod the grid), by definition (numpy)."""
    c, h, w = x.shape
    y = np.zeros_like(x)
    for a in range(h):
        for b in range(w):
            y += x[:, a:a + 1, b:b + 1] * np.roll(g, (a, b), axis=(1, 2))
    return y


def global_filter(c, size, seed=0):
    layer = GlobalFilter(c, size)
    h, w = size
    layer.weight = torch.nn.Parameter(rand(c, h, w // 2 + 1, seed=seed, complex_=True))
    return layer


@pytest.mark.parametrize("size", [(8, 8), (7, 10), (5, 5), (6, 7)])
def test_global_filter_is_depthwise_circular_convolution(size):
    """With ortho rfft2/irfft2 the scalings cancel: y_c = x_c (*) irfft2(K_c) (numpy's
    irfft2, default normalization, which like torch's keeps the Hermitian part of K)."""
    layer = global_filter(3, size)
    x = rand(2, 3, *size, seed=7)
    with torch.no_grad():
        y = layer(x)
    assert not y.is_complex() and y.shape == x.shape
    g = np.fft.irfft2(layer.weight.detach().numpy(), s=size)
    for b in range(2):
        assert np.abs(y[b].numpy() - depthwise_circular_conv(x[b].numpy(), g)).max() < 1e-11


@pytest.mark.parametrize("s,size", [(3, (8, 8)), (5, (7, 9)), (1, (4, 4))])
def test_local_filter_is_depthwise_conv_with_an_s_by_s_kernel(s, size):
    torch.manual_seed(0)
    layer = GlobalFilter(2, size, filter_size=s).double()
    x = rand(1, 2, *size)
    with torch.no_grad():
        y = layer(x)[0].numpy()
    k = layer.kernel.detach().numpy()
    g = np.zeros((2, *size))
    for a in range(s):             # tap (a, b) at offset (a - s//2, b - s//2), wrapped
        for b in range(s):
            g[:, (a - s // 2) % size[0], (b - s // 2) % size[1]] += k[:, a, b]
    assert np.abs(y - depthwise_circular_conv(x[0].numpy(), g)).max() < 1e-12


@pytest.mark.parametrize("order", ["mix-filter", "filter-mix"])
def test_filter_and_pointwise_mix_in_either_order(order):
    torch.manual_seed(0)
    layer = GlobalFilterConv(2, 3, (6, 6), order=order).double()
    c = 3 if order == "mix-filter" else 2
    layer.filter.weight = torch.nn.Parameter(rand(c, 6, 4, seed=1, complex_=True))
    x = rand(1, 2, 6, 6, seed=2)
    w = layer.mix.weight.detach()[:, :, 0, 0].numpy()
    bias = layer.mix.bias.detach().numpy()[:, None, None]
    g = np.fft.irfft2(layer.filter.weight.detach().numpy(), s=(6, 6))
    mix = lambda v: np.einsum("oi,ihw->ohw", w, v) + bias   # noqa: E731
    xn = x[0].numpy()
    ref = (depthwise_circular_conv(mix(xn), g) if order == "mix-filter"
           else mix(depthwise_circular_conv(xn, g)))
    with torch.no_grad():
        assert np.abs(layer(x)[0].numpy() - ref).max() < 1e-11


def test_first_lenet_layer_rank_in_channels():
    """filter-mix on a 1-channel image: every output map is the same filtered map scaled
    (rank 1 before BN); mix-filter gives each output channel its own filter."""
    x = torch.randn(1, 1, 28, 28)
    for order, rank in (("filter-mix", 1), ("mix-filter", 6)):
        layer = net(order=order)[0].eval()
        with torch.no_grad():
            y = layer(x)[0] - layer.mix.bias.view(-1, 1, 1) * (order == "filter-mix")
        assert torch.linalg.matrix_rank(y.reshape(6, -1), rtol=1e-4) == rank


def test_gradcheck_float64():
    layer = global_filter(2, (5, 6))
    x = rand(1, 2, 5, 6).requires_grad_()

    def f(v, wgt):
        saved, layer.weight = layer.weight, wgt
        try:
            return layer(v)
        finally:
            layer.weight = saved

    assert torch.autograd.gradcheck(f, (x, layer.weight), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("arch", ["lenet5", "vgg-small"])
def test_parameter_counts(arch):
    """Per layer: 1x1 conv (Cin Cout + Cout) and a complex H x (W//2+1) filter per output
    channel (mix-filter), 2 reals each; filter_size s: s^2 reals per channel instead."""
    shape, convs, skeleton = CNN_SHAPES[arch], CNN_CONVS[arch], CNN_SKELETON_PARAMS[arch]
    n_full = skeleton + sum(a * b + b + 2 * b * h * (h // 2 + 1) for a, b, _, h in convs)
    assert ops.count_params(net(arch, shape)) == n_full
    n_local = skeleton + sum(a * b + b + (b * 9 if h > 3 else 2 * b * h * (h // 2 + 1))
                             for a, b, _, h in convs)
    model = net(arch, shape, filter_size=3)
    assert ops.count_params(model) == n_local
    assert [d["filter_size"] for d in model.describe()["layers"]][-1] == (
        3 if arch == "lenet5" else "full")          # vgg-small's 2x2 maps use the full filter
    model.eval()
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_op_counts_by_hand():
    """Forward at batch 1: rfft2 and irfft2 of C maps (real FFTs of H W points, from the
    convention's own function), 4 real MACs per complex element-wise product on the
    one-sided grid, and the 1x1 conv."""
    cin, cout, h, w = 2, 3, 8, 6
    r = ops.count_ops(GlobalFilterConv(cin, cout, (h, w)), (cin, h, w))
    assert r["breakdown_fwd"]["fft"] == round(2 * ops.fft_macs(h * w, cout, real=True))
    assert r["breakdown_fwd"]["complex_products"] == 4 * cout * h * (w // 2 + 1)
    assert r["breakdown_fwd"]["conv_linear"] == cin * cout * h * w


def test_init_scales():
    """"unit": E|K|^2 = 1 (energy-preserving random filter), also for the local filter's
    frequency response; "gfnet": the authors' 0.02 standard deviation per part."""
    torch.manual_seed(0)
    assert abs(GlobalFilter(64, (16, 16)).weight.abs().pow(2).mean() - 1) < 0.05
    local = GlobalFilter(256, (16, 16), filter_size=3)
    with torch.no_grad():
        assert abs(local.filter().abs().pow(2).mean() - 1) < 0.1
    gf = GlobalFilter(64, (16, 16), init="gfnet").weight
    assert abs(gf.real.std() - 0.02) < 0.002 and abs(gf.imag.std() - 0.02) < 0.002
    assert net(init="gfnet").describe()["layers"][0]["init"] == "gfnet"


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="init"):
        net(init="zeros")
    with pytest.raises(UserError, match="order"):
        net(order="both")
    with pytest.raises(UserError, match="filter_size"):
        net(filter_size=4)
