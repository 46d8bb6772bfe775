"""FNO layers, methods/fno.py: the spectral convolution is a circular convolution with a kernel
band-limited to the kept modes (numpy, by definition), it is resolution-invariant (band-limited
interpolation), and its gradients, parameters and op counts are as derived by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import methods
from harness import ops
from harness.errors import UserError
from harness.spec import RunSpec
from methods.fno import FourierLayer, SpectralConv2d, kept_modes
from helpers import CNN_CONVS, CNN_SHAPES, CNN_SKELETON_PARAMS, rand

pytestmark = pytest.mark.usefixtures("one_thread")


def net(arch="lenet5", shape=(1, 28, 28), **hp):
    torch.manual_seed(0)
    return methods.build(RunSpec("fno", arch, "test", hparams=hp), shape, 10)


def spectral(cin, cout, m1, m2, seed=0):
    layer = SpectralConv2d(cin, cout, m1, m2)
    # generic complex128 weights (the init has Re, Im >= 0)
    layer.weight1 = torch.nn.Parameter(rand(cin, cout, m1, m2, seed=seed + 1, complex_=True))
    layer.weight2 = torch.nn.Parameter(rand(cin, cout, m1, m2, seed=seed + 2, complex_=True))
    return layer


def band_limited_kernel(layer, h, w):
    """g[i, o] = Re(ifft2(c * R_full)): the kept weights in the full H x W grid (rows 0..m1-1
    and H-m1..H-1, columns 0..m2-1), c = 2 on columns 0 < l < W/2 (each stands for l and -l
    in the one-sided spectrum) and 1 on column 0 and the Nyquist column."""
    m1, m2 = layer.modes1, layer.modes2
    r = np.zeros((layer.cin, layer.cout, h, w), dtype=complex)
    r[:, :, :m1, :m2] = layer.weight1.detach().numpy()
    r[:, :, h - m1:, :m2] = layer.weight2.detach().numpy()
    c = np.full(w, 2.0)
    c[0] = 1.0
    if w % 2 == 0:
        c[w // 2] = 1.0
    return np.fft.ifft2(r * c).real, r


def np_circular_conv(x, g):
    """y[o, n] = sum_{i, m} x[i, m] g[i, o, n - m] (mod the grid), by definition."""
    cin, h, w = x.shape
    y = np.zeros((g.shape[1], h, w))
    for i in range(cin):
        for a in range(h):
            for b in range(w):
                y += x[i, a, b] * np.roll(g[i], (a, b), axis=(1, 2))
    return y


@pytest.mark.parametrize("h,w,m1,m2", [(8, 8, 2, 3), (9, 7, 3, 2), (6, 10, 3, 6), (8, 6, 4, 4)])
def test_spectral_conv_is_band_limited_circular_convolution(h, w, m1, m2):
    layer = spectral(2, 3, m1, m2)
    x = rand(1, 2, h, w, seed=5)
    with torch.no_grad():
        y = layer(x)
    assert not y.is_complex() and y.shape == (1, 3, h, w)
    g, r = band_limited_kernel(layer, h, w)
    assert np.abs(y[0].numpy() - np_circular_conv(x[0].numpy(), g)).max() < 1e-10
    # g is band-limited: its spectrum vanishes outside the kept modes and their mirrors
    support = (r != 0) | (np.conj(r[..., (-np.arange(h)) % h, :][..., (-np.arange(w)) % w]) != 0)
    gs = np.fft.fft2(g)
    assert np.abs(gs[~support]).max(initial=0) < 1e-10
    assert np.abs(gs[support]).max() > 0.1
    assert (~support).any() == (2 * m1 < h or m2 < w // 2 + 1)


def test_resolution_invariance_band_limited_interpolation():
    """A band-limited input on an 8 x 8 grid and its band-limited (trigonometric)
    interpolation to 16 x 16 and 24 x 24: the layer's outputs are the interpolation of the
    coarse output, and the coarse output is the fine one subsampled."""
    layer = spectral(2, 3, 2, 3)
    h = 8
    xs = np.fft.fft2(rand(2, h, h, seed=3).numpy())
    xs[:, h // 2, :] = 0       # no Nyquist bins: the interpolation is then unambiguous
    xs[:, :, h // 2] = 0

    def interp(spec, n):
        """Zero-pad a full FFT-order spectrum of an h x h real map to n x n (numpy)."""
        out = np.zeros(spec.shape[:-2] + (n, n), dtype=complex)
        idx = np.r_[0:h // 2, -(h // 2) + 1:0]
        out[..., idx[:, None] % n, idx[None, :] % n] = spec[..., idx[:, None] % h, idx[None, :] % h]
        return np.fft.ifft2(out).real * (n * n) / (h * h)

    x = torch.from_numpy(np.fft.ifft2(xs).real)[None]
    with torch.no_grad():
        y = layer(x)[0].numpy()
        for n in (16, 24):
            x_fine = torch.from_numpy(interp(xs, n))[None]
            assert (x_fine[..., :: n // h, :: n // h] - x).abs().max() < 1e-12
            y_fine = layer(x_fine)[0].numpy()
            assert np.abs(y_fine - interp(np.fft.fft2(y), n)).max() < 1e-10
            assert np.abs(y_fine[..., :: n // h, :: n // h] - y).max() < 1e-10


def test_fourier_layer_adds_the_pointwise_bypass():
    torch.manual_seed(0)
    layer = FourierLayer(2, 3, (8, 8), modes=3).double()
    x = rand(2, 2, 8, 8)
    with torch.no_grad():
        w, b = layer.bypass.weight[:, :, 0, 0], layer.bypass.bias
        ref = layer.spectral(x) + torch.einsum("oi,bihw->bohw", w, x) + b.view(1, -1, 1, 1)
        assert (layer(x) - ref).abs().max() < 1e-12
    bare = FourierLayer(2, 3, (8, 8), modes=3, bypass="none")
    assert bare.bypass is None and bare.bias.shape == (3,)


def test_kept_modes_clamp():
    assert kept_modes((28, 28), 12) == (12, 12)
    assert kept_modes((14, 14), 12) == (7, 8)       # every frequency
    assert kept_modes((2, 2), 12) == (1, 2)
    assert kept_modes((32, 32), 4) == (4, 4)


def test_gradcheck_float64():
    layer = spectral(2, 2, 2, 2)
    x = rand(1, 2, 6, 5).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, a, b: _call(layer, v, a, b),
                                    (x, layer.weight1, layer.weight2), eps=1e-6, atol=1e-8)


def _call(layer, x, w1, w2):
    saved = layer.weight1, layer.weight2
    layer.weight1, layer.weight2 = w1, w2    # plain tensors: gradcheck perturbs them
    try:
        return layer(x)
    finally:
        layer.weight1, layer.weight2 = saved


def fno_layer_params(cin, cout, h, w, modes=12):
    m1, m2 = min(modes, h // 2), min(modes, w // 2 + 1)
    return 2 * 2 * cin * cout * m1 * m2 + cin * cout + cout      # two complex blocks + 1x1


@pytest.mark.parametrize("arch", ["lenet5", "vgg-small"])
def test_parameter_counts(arch):
    shape = CNN_SHAPES[arch]
    model = net(arch, shape)
    n = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    assert n == CNN_SKELETON_PARAMS[arch] + sum(fno_layer_params(a, b, h, h)
                                                for a, b, _, h in CNN_CONVS[arch])
    assert ops.count_params(model) == n
    info = model.describe()
    assert [d["modes"] for d in info["layers"]][:2] == ([[12, 12], [7, 8]] if arch == "lenet5"
                                                       else [[12, 12], [8, 9]])
    model.eval()
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_op_counts_by_hand():
    """Forward at batch 1: rfft2 of Cin maps and irfft2 of Cout maps (real FFTs of H W points,
    from the convention's own function), 4 real MACs per complex MAC on the 2 m1 m2 kept
    modes, and the 1x1 bypass."""
    cin, cout, h, w, modes = 2, 3, 8, 8, 3
    r = ops.count_ops(FourierLayer(cin, cout, (h, w), modes), (cin, h, w))
    fft = ops.fft_macs(h * w, cin, real=True) + ops.fft_macs(h * w, cout, real=True)
    assert r["breakdown_fwd"]["fft"] == round(fft)
    assert r["breakdown_fwd"]["complex_products"] == 4 * cin * cout * 2 * modes * modes
    assert r["breakdown_fwd"]["conv_linear"] == cin * cout * h * w


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="modes"):
        net(modes=0)
    with pytest.raises(UserError, match="bypass"):
        net(bypass="residual")
