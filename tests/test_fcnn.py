"""FCNN reconstruction (methods/fcnn.py): identities of the reconstruction
(docs/methods.md, "FCNN"), checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import methods
from harness.spec import RunSpec
from methods.fcnn import FCNN, FourierConv2d, FourierPool2d, ModReLU
from methods.fourier import pad_kernel
from helpers import rand


pytestmark = pytest.mark.usefixtures("one_thread")


def fcnn(arch="lenet5", shape=(1, 28, 28), **hp):
    torch.manual_seed(0)
    return methods.build(RunSpec("fcnn", arch, "test", hparams=hp), shape, 10)


def circular_conv(x, w):
    """sum_i x_i (*) w_io, circular, kernel anchored at the top-left: y[n] = sum_m x[n-m] w[m].
    conv2d is a correlation, so flip the kernel and pad the top/left circularly by K-1."""
    k = w.shape[-1]
    xp = F.pad(x, (k - 1, 0, k - 1, 0), mode="circular")
    return F.conv2d(xp, w.permute(1, 0, 2, 3).flip(-2, -1))


@pytest.mark.parametrize("size,k", [((8, 8), 3), ((9, 7), 5), ((6, 10), 2)])
def test_fourier_conv_is_circular_convolution(size, k):
    x = rand(2, 3, *size)
    w = rand(3, 4, k, k, seed=1)
    layer = FourierConv2d.from_kernel(w, size)
    assert torch.allclose(layer.weight, torch.fft.fft2(pad_kernel(w, size)))
    with torch.no_grad():
        y = torch.fft.ifft2(layer(torch.fft.fft2(x)))
    assert y.imag.abs().max() < 1e-12                  # Hermitian W, real x: real output
    assert (y.real - circular_conv(x, w)).abs().max() < 1e-12
    # numpy, one output pixel by the definition
    xn, wn, yn = x.numpy(), w.numpy(), y.real.numpy()
    h, wd = size
    r, c = 1, wd - 2
    direct = sum(xn[0, i, (r - a) % h, (c - b) % wd] * wn[i, 1, a, b]
                 for i in range(3) for a in range(k) for b in range(k))
    assert abs(direct - yn[0, 1, r, c]) < 1e-12


def test_unconstrained_weights_give_complex_output():
    """Negative test of the parameterization: a free (non-Hermitian) W breaks realness."""
    layer = FourierConv2d(2, 3, 3, (8, 8))
    with torch.no_grad():
        layer.weight.add_(0.1 * torch.randn_like(layer.weight))
    y = torch.fft.ifft2(layer(torch.fft.fft2(torch.randn(1, 2, 8, 8))))
    assert y.imag.abs().max() > 1e-3


def test_parameter_count_per_layer():
    for arch, shape in (("lenet5", (1, 28, 28)), ("vgg-small", (3, 32, 32))):
        net = fcnn(arch, shape)
        for layer in net.conv_layers():
            cin, cout, h, w = layer.weight.shape
            n = sum(p.numel() * (2 if p.is_complex() else 1) for p in layer.parameters())
            assert n == 2 * cin * cout * h * w
        sizes = [tuple(layer.weight.shape) for layer in net.conv_layers()]
        if arch == "lenet5":
            assert sizes == [(1, 6, 28, 28), (6, 16, 14, 14)]
        else:
            assert sizes == [(3, 64, 32, 32), (64, 128, 16, 16), (128, 256, 8, 8),
                             (256, 512, 4, 4), (512, 512, 2, 2)]
        assert net.describe()["fourier_conv_params"] == [2 * a * b * c * d for a, b, c, d in sizes]


def features_spatial(net, x):
    """ifft2 of the feature spectrum (a test-side readout; the model itself never inverts)."""
    return torch.fft.ifft2(net.features(torch.fft.fft2(x, norm="ortho")), norm="ortho")


@pytest.mark.parametrize("activation,equivariant", [("none", True), ("modrelu", True),
                                                    ("crelu", False)])
def test_translation_equivariance_without_pooling(activation, equivariant):
    torch.manual_seed(0)
    size = (10, 12)
    blocks = [FourierConv2d(2, 3, 3, size)]
    if activation == "modrelu":
        act = ModReLU(3)
        with torch.no_grad():
            act.b.fill_(-0.5)                           # a real threshold, not the identity
        blocks.append(act)
    elif activation == "crelu":
        blocks.append(methods.fcnn.ComplexReLU())
    blocks.append(FourierConv2d(3, 2, 3, size))
    net = torch.nn.Sequential(*blocks).double()
    for layer in blocks:
        if isinstance(layer, FourierConv2d):
            layer.weight.data = layer.weight.data.to(torch.complex128)
    x = rand(2, 2, *size)
    shift = (3, -5)

    def run(v):
        return torch.fft.ifft2(net(torch.fft.fft2(v)))

    moved = run(torch.roll(x, shift, dims=(-2, -1)))
    expected = torch.roll(run(x), shift, dims=(-2, -1))
    err = (moved - expected).abs().max()
    assert (err < 1e-10) if equivariant else (err > 1e-3)


def test_pooling_keeps_dc_and_band_limited_maps():
    x = rand(2, 3, 16, 16)
    X = torch.fft.fft2(x, norm="ortho")
    for size in [(8, 8), (7, 9)]:
        Y = FourierPool2d(size)(X)
        assert Y.shape == (2, 3, *size)
        assert torch.equal(Y[..., 0, 0], X[..., 0, 0])      # the crop copies the DC term: exact
    # a spectrum supported on |k|, |l| <= 3 (explicit FFT-order indices) survives pooling to 7x7
    S = torch.fft.fft2(rand(1, 1, 7, 7, seed=2))
    spec = torch.zeros(1, 1, 16, 16, dtype=torch.complex128)
    idx = [0, 1, 2, 3, 13, 14, 15]
    spec[..., [[i] for i in idx], idx] = S
    assert torch.equal(FourierPool2d((7, 7))(spec), S)      # odd size: a pure copy, exact


def test_model_never_inverts(monkeypatch):
    """One FFT at the input and no inverse FFT before the head."""
    net = fcnn()
    calls = []
    for name in ("ifft", "ifft2", "ifftn", "irfft", "irfft2", "irfftn", "hfft", "hfft2"):
        monkeypatch.setattr(torch.fft, name, lambda *a, _n=name, **k: calls.append(_n))
    forward = []
    real_fft2 = torch.fft.fft2
    monkeypatch.setattr(torch.fft, "fft2", lambda *a, **k: forward.append(1) or real_fft2(*a, **k))
    net(torch.randn(2, 1, 28, 28)).sum().backward()
    assert calls == [] and forward == [1]


@pytest.mark.parametrize("activation", ["crelu", "modrelu", "none"])
@pytest.mark.parametrize("arch,shape", [("lenet5", (1, 28, 28)), ("vgg-small", (3, 32, 32))])
def test_builds_and_trains_a_step(arch, shape, activation):
    net = fcnn(arch, shape, activation=activation, bias="dc")
    assert isinstance(net, FCNN)
    x, y = torch.randn(3, *shape), torch.tensor([0, 1, 2])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss0 = F.cross_entropy(net(x), y)
    loss0.backward()
    opt.step()
    assert torch.isfinite(loss0)
    info = net.describe()
    assert info["reconstruction"] is True and "RECONSTRUCTION" in info["reconstruction_note"]
    assert info["map_sizes"][-1] == ([7, 7] if arch == "lenet5" else [1, 1])


def test_registry_marks_reconstruction():
    info = methods.get("fcnn")
    assert info.reconstruction and "RECONSTRUCTION" in info.description
    assert info.archs == ("lenet5", "vgg-small")
