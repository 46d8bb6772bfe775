"""Rippel et al. methods (methods/spectral.py): spectral pooling net, frequency-dropout layer,
spectral parameterization and its spatial twin (docs/methods.md)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import methods
from harness.errors import UserError
from harness.spec import RunSpec
from helpers import assert_kernel_close
from methods.fourier_pooling import frequency_mask, spectral_pool
from methods.spectral import SpectralParamConv2d, SpectralPool2d, spectral_parameterize


pytestmark = pytest.mark.usefixtures("one_thread")


def build(method, arch, shape, dtype=torch.float32, **hp):
    """Build with seed 0; float64 models are built under that default dtype (Module.double()
    and .to(float64) would not convert, or would drop, the complex spectral parameters)."""
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return methods.build(RunSpec(method, arch, "test", hparams=hp), shape, 10)
    finally:
        torch.set_default_dtype(old)


# ------------------------------------------------------------------ spectral pooling net
def test_spectral_pooling_net_structure():
    """Filters 96+32m capped at 288, maps floor(0.85 H): 32 27 22 18 15 12 10, c_m schedule."""
    net = build("spectral-pooling", "rippel-sp", (3, 32, 32), blocks=6)
    info = net.describe()
    assert [s[0] for s in info["map_sizes"]] == [32, 27, 22, 18, 15, 12, 10]
    assert info["filters"] == [128, 160, 192, 224, 256, 288, 288]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 160, 192, 224, 256, 288, 288, 10]
    assert [c.kernel_size for c in convs[:6]] == [(3, 3)] * 6 and convs[-1].kernel_size == (1, 1)
    pools = [m for m in net.modules() if isinstance(m, SpectralPool2d)]
    lows = [0.30 + (m / 6) * (0.15 - 0.30) for m in range(1, 7)]
    assert [p.dropout_low for p in pools] == pytest.approx(lows)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout, nn.MaxPool2d)) for m in net.modules())
    x = torch.randn(3, 3, 32, 32)
    assert net(x).shape == (3, 10)


def test_spectral_pooling_net_defaults_and_errors():
    info = methods.get("spectral-pooling").hparam_defaults("rippel-sp")
    assert (info["gamma"], info["alpha"], info["beta"], info["fold_c"]) == (0.85, 0.30, 0.15, 0.5)
    with pytest.raises(UserError, match="blocks"):
        build("spectral-pooling", "rippel-sp", (1, 28, 28), blocks=40)
    with pytest.raises(UserError, match="scale"):
        build("spectral-pooling", "rippel-sp", (1, 28, 28), scale="unitary")


def test_frequency_dropout_layer_train_vs_eval():
    torch.manual_seed(0)
    pool = SpectralPool2d((15, 15), dropout_low=0.2).double()
    x = torch.randn(4, 3, 18, 18, dtype=torch.float64)
    pool.eval()
    # identity mask in eval: the same call spectral_pool makes, on the same input (exact)
    assert torch.equal(pool(x), spectral_pool(x, (15, 15)))
    pool.train()
    # one cutoff per mini-batch: the same mask for every sample of the batch (samples are
    # separate FFTs, equal only to the kernels' rounding: a different mask differs by O(1))
    same = x[:1].expand(4, -1, -1, -1)
    outs = pool(same)
    assert_kernel_close(outs, outs[:1].expand_as(outs))
    cut = pool.last_cutoff
    assert 0.2 * 15 <= cut <= 15
    ref = spectral_pool(same, (15, 15), mask=frequency_mask((15, 15), cut, dtype=torch.float64))
    assert (outs - ref).abs().max() < 1e-12
    cuts = {round(pool(x).norm().item(), 9) for _ in range(5)}     # (the sum = DC is kept)
    assert len(cuts) > 1                                              # redrawn per call
    torch.manual_seed(5)
    a = pool(x)
    torch.manual_seed(5)
    assert torch.equal(pool(x), a)        # seed-deterministic: the same call repeated (exact)


def test_frequency_dropout_changes_training_forward_only():
    net = build("spectral-pooling", "rippel-sp", (1, 28, 28), blocks=2)
    x = torch.randn(2, 1, 28, 28)
    net.eval()
    e1, e2 = net(x), net(x)
    assert torch.equal(e1, e2)            # the same call repeated in one process (exact)
    net.train()
    torch.manual_seed(1)
    assert (net(x) - e1).abs().max() > 1e-6
    off = build("spectral-pooling", "rippel-sp", (1, 28, 28), blocks=2, freq_dropout=False)
    off.train()
    assert torch.equal(off(x), e1)        # same init, no dropout: the same kernels on the same input


# --------------------------------------------------------------- spectral parameterization
def test_spectral_conv_equals_conv():
    """conv(x, Re(F^-1 F w0)) = conv(x, w0); 2 K^2 real parameters per filter."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 5, padding=2, stride=2).double()
    sp = SpectralParamConv2d.from_conv(conv)
    x = torch.randn(2, 3, 11, 11, dtype=torch.float64)
    assert (sp(x) - conv(x)).abs().max() < 1e-12
    assert sp.spectrum.is_complex() and sp.spectrum.shape == (4, 3, 5, 5)
    assert sp.spectrum.numel() * 2 == 2 * 25 * 3 * 4
    # the stored coefficients are the unitary DFT of the kernel (numpy check)
    import numpy as np
    ref = np.fft.fft2(conv.weight.detach().numpy()) / 5
    assert np.abs(sp.spectrum.detach().numpy() - ref).max() < 1e-12


def tiny_shape(arch="rippel-deep"):
    return (1, 12, 12) if arch == "lenet5" else (3, 6, 6)


def trajectory(method, arch, optimizer, steps=20, **hp):
    model = build(method, arch, tiny_shape(arch), torch.float64, **hp)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, *tiny_shape(arch), generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (4,), generator=g)
    opt = optimizer(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return model, model(x)


def spatial_kernels(model):
    return [m.weight.detach() for m in model.modules()
            if isinstance(m, (nn.Conv2d, SpectralParamConv2d))]


@pytest.mark.parametrize("arch,hp", [("rippel-generic", {"kernel": 5}),
                                     ("rippel-deep", {"kernel": 3}),
                                     ("rippel-sp", {"blocks": 1, "freq_dropout": False}),
                                     ("lenet5", {"dropout_conv": 0.0, "dropout_fc": 0.0})])
def test_step0_identical_and_sgd_matches_spatial(arch, hp):
    a, out_a = trajectory("spatial-param", arch, lambda p: torch.optim.SGD(p, lr=0.01), 0, **hp)
    b, out_b = trajectory("spectral-param", arch, lambda p: torch.optim.SGD(p, lr=0.01), 0, **hp)
    assert (out_a - out_b).abs().max() < 1e-12                        # step 0: same function
    sgd = lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.5, weight_decay=1e-3)  # noqa: E731
    a, out_a = trajectory("spatial-param", arch, sgd, **hp)
    b, out_b = trajectory("spectral-param", arch, sgd, **hp)
    assert any(isinstance(m, SpectralParamConv2d) for m in b.modules())
    assert not any(isinstance(m, SpectralParamConv2d) for m in a.modules())
    moved = max((wa - wb).abs().max() for wa, wb in
                zip(spatial_kernels(a), spatial_kernels(build("spatial-param", arch, tiny_shape(arch), torch.float64, **hp))))
    assert moved > 1e-3                                              # training did something
    for wa, wb in zip(spatial_kernels(a), spatial_kernels(b)):
        assert (wa - wb).abs().max() < 1e-10
    assert (out_a - out_b).abs().max() < 1e-10


def test_adam_differs_between_spectral_and_spatial():
    adam = lambda p: torch.optim.Adam(p, lr=1e-3)   # noqa: E731
    a, out_a = trajectory("spatial-param", "rippel-generic", adam, steps=5, kernel=3)
    b, out_b = trajectory("spectral-param", "rippel-generic", adam, steps=5, kernel=3)
    diff = max((wa - wb).abs().max() for wa, wb in zip(spatial_kernels(a), spatial_kernels(b)))
    assert diff > 1e-4


def test_spectral_param_on_cnn_architecture():
    """The option also applies to the cnn baselines (same init as `cnn` at the same seed)."""
    spatial = build("cnn", "lenet5", (1, 28, 28))
    spectral = build("spectral-param", "lenet5", (1, 28, 28))
    twin = build("spatial-param", "lenet5", (1, 28, 28))
    x = torch.randn(3, 1, 28, 28)
    for m in (spatial, spectral, twin):
        m.eval()
    assert (spectral(x) - spatial(x)).abs().max() < 1e-5
    assert torch.equal(twin(x), spatial(x))      # the same F.conv2d calls on the same weights
    n_sp = sum(isinstance(m, SpectralParamConv2d) for m in spectral.modules())
    assert n_sp == 2 and spectral.describe()["spectral_param_convs"] == 2


def test_only_kxk_convs_are_reparameterized():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1), nn.Sequential(nn.Conv2d(3, 2, 5)))
    spectral_parameterize(net)
    kinds = [type(m).__name__ for m in net.modules() if not isinstance(m, nn.Sequential)]
    assert kinds == ["SpectralParamConv2d", "Conv2d", "SpectralParamConv2d"]


@pytest.mark.parametrize("arch", ["rippel-deep", "rippel-generic"])
@pytest.mark.parametrize("kernel", [3, 5])
def test_rippel_nets_shapes_and_params(arch, kernel):
    spatial = build("spatial-param", arch, (3, 32, 32), kernel=kernel)
    spectral = build("spectral-param", arch, (3, 32, 32), kernel=kernel)
    assert spatial(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    count = lambda m: sum(p.numel() * (2 if p.is_complex() else 1) for p in m.parameters())  # noqa: E731
    kxk = sum(m.weight.numel() for m in spatial.modules()
              if isinstance(m, nn.Conv2d) and m.kernel_size == (kernel, kernel))
    assert count(spectral) == count(spatial) + kxk                   # 2 K^2 instead of K^2
    convs = [m for m in spatial.modules() if isinstance(m, nn.Conv2d)]
    want = [96, 96, 192, 192, 192, 192, 10] if arch == "rippel-deep" else [96, 192]
    assert [c.out_channels for c in convs] == want
    if arch == "rippel-generic":
        fcs = [m.out_features for m in spatial.modules() if isinstance(m, nn.Linear)]
        assert fcs == [1024, 512, 10]
    with pytest.raises(UserError, match="kernel"):
        build("spectral-param", arch, (3, 32, 32), kernel=4)


def test_registry_entries():
    for name in ("spectral-pooling", "spectral-param", "spatial-param"):
        info = methods.get(name)
        assert not info.reconstruction
    assert methods.get("spectral-param").archs == methods.get("spatial-param").archs
    assert {"rippel-deep", "rippel-generic", "lenet5", "vgg-small"} <= set(methods.get("spectral-param").archs)
    assert math.isclose(methods.get("spectral-param").hparam_defaults("rippel-deep")["dropout"], 0.0)
