"""Hartley convolution, methods/hartley.py: the DHT (against numpy's FFT), its involution and
convolution theorem, equality with circular convolution (numpy, by definition) and with
F.conv2d, real arithmetic throughout, gradients, parameters and op counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import methods
from harness import ops
from harness.errors import UserError
from harness.spec import RunSpec
from methods.hartley import HartleyConv2d, dht2, dht2_matrices, reverse
from helpers import rand

pytestmark = pytest.mark.usefixtures("one_thread")


def net(arch="lenet5", shape=(1, 28, 28), method="hartley", **hp):
    torch.manual_seed(0)
    return methods.build(RunSpec(method, arch, "test", hparams=hp), shape, 10)


def np_dht2(x):
    """The 2-D DHT by its relation to the DFT: H = Re F - Im F (numpy, independent)."""
    f = np.fft.fft2(x)
    return f.real - f.imag


def full_dht(x: torch.Tensor) -> torch.Tensor:
    l1, l2 = x.shape[-2:]
    mats = [torch.from_numpy(np.ascontiguousarray(m))
            for m in dht2_matrices((l1, l2), (range(l1), range(l2)), (range(l1), range(l2)))]
    return dht2(x, *mats)


@pytest.mark.parametrize("size", [(8, 8), (7, 10), (5, 3)])
def test_dht_matches_numpy_and_is_an_involution(size):
    x = rand(2, *size)
    h = full_dht(x)
    assert np.abs(h.numpy() - np_dht2(x.numpy())).max() < 1e-11
    n = size[0] * size[1]
    assert (full_dht(h) - n * x).abs().max() < 1e-10                # H H = N I
    # as matrices: the DHT of every basis image, applied twice
    eye = torch.eye(n, dtype=torch.float64).view(n, *size)
    hh = full_dht(full_dht(eye)).reshape(n, n)
    assert (hh - n * torch.eye(n, dtype=torch.float64)).abs().max() < 1e-10


def np_circular_conv(a, b):
    """(a (*) b)[n] = sum_m a[m] b[n - m], indices mod the grid (by definition)."""
    l1, l2 = a.shape
    out = np.zeros_like(a)
    for i in range(l1):
        for j in range(l2):
            out += a[i, j] * np.roll(np.roll(b, i, axis=0), j, axis=1)
    return out


@pytest.mark.parametrize("size", [(6, 6), (5, 8)])
def test_dht_convolution_theorem(size):
    """H{a (*) b}[k] = 1/2 [A(k)(B(k) + B(-k)) + A(-k)(B(k) - B(-k))], with -k from the
    layer's `reverse` compared against explicit index negation."""
    a, b = rand(*size, seed=1).numpy(), rand(*size, seed=2).numpy()
    A, B = np_dht2(a), np_dht2(b)
    neg = lambda z: z[np.ix_(-np.arange(size[0]) % size[0], -np.arange(size[1]) % size[1])]  # noqa: E731
    assert np.array_equal(reverse(torch.from_numpy(B)).numpy(), neg(B))
    rhs = 0.5 * (A * (B + neg(B)) + neg(A) * (B - neg(B)))
    assert np.abs(np_dht2(np_circular_conv(a, b)) - rhs).max() < 1e-10


def np_circular_correlation(x, w):
    """y[o, n] = sum_{i, a} w[o, i, a] x[i, n + a - p] (mod the grid): F.conv2d with circular
    padding, by definition."""
    cout, cin, k, _ = w.shape
    p = k // 2
    h, wd = x.shape[-2:]
    y = np.zeros((cout, h, wd))
    for o in range(cout):
        for i in range(cin):
            for a in range(k):
                for b in range(k):
                    y[o] += w[o, i, a, b] * np.roll(x[i], (p - a, p - b), axis=(0, 1))
    return y


@pytest.mark.parametrize("k,size", [(3, (6, 6)), (5, (7, 9)), (3, (5, 4))])
def test_circular_layer_is_circular_convolution(k, size):
    torch.manual_seed(0)
    layer = HartleyConv2d(2, 3, k, size, padding="circular").double()
    x = rand(1, 2, *size)
    with torch.no_grad():
        y = layer(x)[0].numpy()
    ref = np_circular_correlation(x[0].numpy(), layer.weight.detach().numpy())
    ref += layer.bias.detach().numpy()[:, None, None]
    assert np.abs(y - ref).max() < 1e-11


@pytest.mark.parametrize("k,size", [(3, (8, 8)), (5, (28, 28)), (3, (2, 2)), (5, (7, 9))])
def test_zero_padded_layer_equals_conv2d(k, size):
    torch.manual_seed(0)
    layer = HartleyConv2d(3, 4, k, size).double()
    assert layer.grid == (size[0] + k - 1, size[1] + k - 1)
    x = rand(2, 3, *size)
    with torch.no_grad():
        ref = F.conv2d(x, layer.weight, layer.bias, padding=k // 2)
        assert (layer(x) - ref).abs().max() < 1e-11 * max(1.0, ref.abs().max())


class _Dtypes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops, self.complex = set(), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(func.__name__.split(".")[0])
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.is_complex():
                self.complex.append(func.__name__)
        return out


def test_real_valued_throughout():
    """No complex tensor and no FFT anywhere in the forward and backward of the network."""
    model = net().train()
    x = torch.randn(2, 1, 28, 28)
    with _Dtypes() as mode:
        out = model(x)
        out.sum().backward()
    assert mode.complex == []
    assert not any("fft" in op for op in mode.ops), sorted(mode.ops)
    assert not out.is_complex()


def test_gradcheck_float64():
    for padding in ("zeros", "circular"):
        torch.manual_seed(0)
        layer = HartleyConv2d(2, 2, 3, (4, 5), padding=padding).double()
        x = rand(1, 2, 4, 5).requires_grad_()
        assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("arch,shape", [("lenet5", (1, 28, 28)), ("vgg-small", (3, 32, 32))])
def test_same_parameters_and_initial_function_as_the_cnn(arch, shape):
    hart, cnn = net(arch, shape).double().eval(), net(arch, shape, method="cnn").double().eval()
    sd_h, sd_c = hart.state_dict(), cnn.state_dict()
    # the same seed and initialisation calls: the same weights, exactly
    assert sd_h.keys() == sd_c.keys() and all(torch.equal(sd_h[k], sd_c[k]) for k in sd_c)
    x = rand(2, *shape)
    with torch.no_grad():
        assert (hart(x) - cnn(x)).abs().max() < 1e-10
    grids = [d["dht_grid"] for d in hart.describe()["layers"]]
    assert grids == ([[32, 32], [18, 18]] if arch == "lenet5"
                     else [[34, 34], [18, 18], [10, 10], [6, 6], [4, 4]])


def test_op_counts_by_hand():
    """Forward MACs at batch 1: DHT of the input (C1 x, S1 x: 2 L1 H W; then two products
    with W x L2 matrices: 2 L1 W L2) per input channel, the kernel's DHT likewise per
    (cout, cin) with k x k inputs, the mix F * 2Cin * Cout, and the cropped inverse
    (2 H L1 L2 + 2 H L2 W) per output channel. No FFT, no complex products."""
    cin, cout, k, h, w = 2, 3, 3, 6, 5
    l1, l2 = h + k - 1, w + k - 1
    r = ops.count_ops(HartleyConv2d(cin, cout, k, (h, w)), (cin, h, w))
    dht_x = 2 * l1 * h * w + 2 * l1 * w * l2
    dht_w = 2 * l1 * k * k + 2 * l1 * k * l2
    inv = 2 * h * l1 * l2 + 2 * h * l2 * w
    expected = cin * dht_x + cin * cout * dht_w + l1 * l2 * 2 * cin * cout + cout * inv
    assert r["breakdown_fwd"]["conv_linear"] == expected
    assert r["breakdown_fwd"]["fft"] == 0 and r["breakdown_fwd"]["complex_products"] == 0
    assert r["batch_fixed"]["macs_fwd"] == cin * cout * dht_w


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="padding"):
        net(padding="reflect")
    with pytest.raises(UserError, match="at least 3x3"):
        net("vgg-small", (3, 32, 32), padding="circular")     # its last maps are 2 x 2
    with pytest.raises(UserError, match="odd kernel"):
        HartleyConv2d(1, 1, 2, (4, 4))
