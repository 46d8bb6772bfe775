"""Frequency-domain average pooling (methods/freqpool.py): docs/methods.md (frequency-domain average pooling).

Every reference is an independent computation: numpy DFTs of explicit boxes, nn.AvgPool2d on
circularly padded maps, subsampling followed by a DFT, scipy's DCT. float64, tolerance 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn as nn
import torch.nn.functional as F

import methods
from harness.errors import UserError
from harness.spec import RunSpec
from harness.suite import resolve_hparams
from methods.freqpool import (FreqAvgPool, dirichlet_closed_form, dirichlet_kernel,
                              freq_avg_pool2d, hermitian_part, spectral_fold, spectral_gap)
from helpers import rand

TOL = 1e-12


pytestmark = pytest.mark.usefixtures("one_thread")


def circular_avgpool(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """nn.AvgPool2d(k, s) on the map padded circularly by k - s at the bottom/right."""
    if k > s:
        x = F.pad(x, (0, k - s, 0, k - s), mode="circular")
    return nn.AvgPool2d(k, s)(x)


@pytest.mark.parametrize("n,k", [(8, 2), (12, 3), (7, 4), (5, 5), (9, 1)])
def test_dirichlet_kernel_is_the_dft_of_the_box(n, k):
    start = np.zeros(n)
    start[[(-j) % n for j in range(k)]] = 1 / k       # window x[n], ..., x[n+k-1]
    causal = np.zeros(n)
    causal[list(range(k))] = 1 / k                    # window x[n-k+1], ..., x[n]
    np.testing.assert_allclose(dirichlet_kernel(n, k).numpy(), np.fft.fft(start), atol=TOL)
    np.testing.assert_allclose(dirichlet_kernel(n, k, align="causal").numpy(), np.fft.fft(causal),
                               atol=TOL)
    np.testing.assert_allclose(dirichlet_closed_form(n, k).numpy(), np.fft.fft(start), atol=TOL)
    np.testing.assert_allclose(dirichlet_closed_form(n, k, align="causal").numpy(),
                               np.fft.fft(causal), atol=TOL)


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), (3, 3), (4, 2), (4, 4), (1, 1)])
def test_equals_avgpool_on_circularly_padded_input(k, s):
    x = rand(2, 3, 12, 24, seed=k * 10 + s)
    pooled = freq_avg_pool2d(torch.fft.fft2(x), k, s)
    ref = circular_avgpool(x, k, s)
    assert pooled.shape[-2:] == ref.shape[-2:] == (12 // s, 24 // s)
    np.testing.assert_allclose(torch.fft.ifft2(pooled).real.numpy(), ref.numpy(), atol=TOL)
    assert torch.fft.ifft2(pooled).imag.abs().max() < TOL       # real map in, real map out


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), (4, 4)])
def test_causal_kernel_is_the_documented_shift(k, s):
    """The note's linear-phase kernel pools the map delayed by k-1 samples on each axis."""
    x = rand(1, 2, 8, 12, seed=3)
    pooled = freq_avg_pool2d(torch.fft.fft2(x), k, s, align="causal")
    ref = circular_avgpool(torch.roll(x, shifts=(k - 1, k - 1), dims=(-2, -1)), k, s)
    np.testing.assert_allclose(torch.fft.ifft2(pooled).real.numpy(), ref.numpy(), atol=TOL)
    if k > 1:  # and the shift matters: without it the result differs
        assert (torch.fft.ifft2(pooled).real - circular_avgpool(x, k, s)).abs().max() > 1e-3


def test_pool_of_a_complex_map():
    """Linear: a complex (non-Hermitian) spectrum pools its complex map."""
    z = rand(2, 2, 8, 6, seed=5, complex_=True)
    pooled = freq_avg_pool2d(torch.fft.fft2(z), 2)
    ref = circular_avgpool(z.real, 2, 2) + 1j * circular_avgpool(z.imag, 2, 2)
    np.testing.assert_allclose(torch.fft.ifft2(pooled).numpy(), ref.numpy(), atol=TOL)


@pytest.mark.parametrize("s", [(2, 2), (3, 2), (4, 1)])
def test_fold_identity(s):
    """DFT(every s-th sample) = (1/s) sum_j X[v + j N/s], checked against an explicit numpy
    DFT of the subsampled map."""
    z = rand(2, 12, 8, seed=7, complex_=True)
    folded = spectral_fold(torch.fft.fft2(z), s).numpy()
    sub = z.numpy()[..., ::s[0], ::s[1]]
    h, w = sub.shape[-2:]
    m, n = np.arange(h), np.arange(w)
    fr = np.exp(-2j * np.pi * np.outer(m, m) / h)
    fc = np.exp(-2j * np.pi * np.outer(n, n) / w)
    ref = fr @ sub @ fc.T
    np.testing.assert_allclose(folded, ref, atol=1e-11)


def test_fold_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="divisible"):
        spectral_fold(torch.zeros(7, 8, dtype=torch.complex128), 2)


def test_gap_is_dc_over_hw():
    x = rand(3, 4, 6, 10, seed=11)
    gap = F.adaptive_avg_pool2d(x, 1)[..., 0, 0]
    np.testing.assert_allclose(spectral_gap(torch.fft.fft2(x)).real.numpy(), gap.numpy(), atol=TOL)
    assert spectral_gap(torch.fft.fft2(x)).imag.abs().max() < TOL
    np.testing.assert_allclose(spectral_gap(torch.fft.rfft2(x), size=(6, 10)).real.numpy(),
                               gap.numpy(), atol=TOL)
    # = orthonormal DCT-II DC / sqrt(HW) (scipy, an independent transform)
    dct_dc = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")[..., 0, 0]
    np.testing.assert_allclose(dct_dc / np.sqrt(60), gap.numpy(), atol=TOL)


def test_hermitian_part_is_the_spectrum_of_the_real_part():
    y = rand(2, 3, 6, 7, seed=2, complex_=True)
    ref = torch.fft.fft2(torch.fft.ifft2(y).real)
    np.testing.assert_allclose(hermitian_part(y).numpy(), ref.numpy(), atol=TOL)


@pytest.mark.parametrize("onesided", [False, True])
def test_module_matches_the_spatial_pool_sandwich(onesided):
    """FreqAvgPool(real_part) = fft2(avgpool(Re(ifft2(Y)))), the CEMNet pool with avg for max;
    planar input (CEMNet's layout) and one-sided output (what its next EM layer takes)."""
    y = rand(2, 3, 8, 12, seed=4, complex_=True)            # not Hermitian
    pool = FreqAvgPool((8, 12), 2, real_part=True, onesided=onesided, planar_input=True)
    planar = torch.cat([y.real, y.imag], dim=1)
    out = pool(planar)
    pooled = F.avg_pool2d(torch.fft.ifft2(y).real, 2)
    ref = torch.fft.rfft2(pooled) if onesided else torch.fft.fft2(pooled)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=TOL)


@pytest.mark.parametrize("norm", ["ortho", "forward", "backward"])
def test_module_keeps_the_dft_convention(norm):
    z = rand(1, 2, 8, 8, seed=6, complex_=True)
    pool = FreqAvgPool((8, 8), 2, real_part=False, norm=norm)
    out = pool(torch.fft.fft2(z, norm=norm))
    ref = circular_avgpool(z.real, 2, 2) + 1j * circular_avgpool(z.imag, 2, 2)
    np.testing.assert_allclose(torch.fft.ifft2(out, norm=norm).numpy(), ref.numpy(), atol=TOL)


def test_module_gradcheck():
    pool = FreqAvgPool((4, 6), 2, real_part=True, onesided=True)
    y = rand(1, 2, 4, 6, seed=8, complex_=True).requires_grad_()
    assert torch.autograd.gradcheck(pool, (y,))


def test_module_rejects_odd_sizes():
    with pytest.raises(UserError, match="divisible"):
        FreqAvgPool((7, 7), 2)


# --------------------------------------------------------------- pool=freq-avg in CEMNet / FCNN

FFT_FUNCTIONS = ("fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "rfft2", "irfft2", "fftn",
                 "ifftn", "rfftn", "irfftn", "hfft", "ihfft", "hfft2", "ihfft2")


@pytest.fixture
def fft_calls(monkeypatch):
    """Records the input shape of every torch.fft transform called (looked up at call time)."""
    shapes = []
    for name in FFT_FUNCTIONS:
        original = getattr(torch.fft, name)

        def wrapper(x, *args, _f=original, **kwargs):
            shapes.append(tuple(x.shape))
            return _f(x, *args, **kwargs)

        monkeypatch.setattr(torch.fft, name, wrapper)
    return shapes


def build(method, pool, shape=(1, 28, 28)):
    torch.manual_seed(0)
    hp = resolve_hparams(method, "lenet5", {"pool": pool})
    return methods.build(RunSpec(method, "lenet5", "test", hparams=hp), shape, 10).eval()


@pytest.mark.parametrize("method,spatial_pool", [("cemnet", "max"), ("fcnn", "crop")])
def test_freq_avg_option_removes_the_pooling_ffts(method, spatial_pool, fft_calls):
    """With pool=freq-avg the only FFT applied to activations is the input transform (CEMNet's
    max pool needs an iFFT + FFT pair per pool)."""
    batch = 3
    runs = {}
    for pool in (spatial_pool, "freq-avg"):
        model = build(method, pool)
        fft_calls.clear()
        out = model(torch.randn(batch, 1, 28, 28))
        assert out.shape == (batch, 10)
        runs[pool] = [s for s in fft_calls if s[0] == batch]         # activations, not weights
        assert any(isinstance(m, FreqAvgPool) for m in model.modules()) == (pool == "freq-avg")
    assert runs["freq-avg"] == [(batch, 1, 28, 28)]
    if method == "cemnet":
        assert len(runs["max"]) == 1 + 2 * 2                          # 2 pools x (iFFT, FFT)


def test_cemnet_freq_avg_stage_is_the_avg_pool_sandwich():
    """The first CEMNet stage with pool=freq-avg equals rfft2(avgpool(Re(ifft2(Y)))) computed
    from its own pre-pool planar output."""
    model = build("cemnet", "freq-avg").double()
    stage = model.stages[0]
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        pre = stage[:-1](torch.fft.rfft2(x))                           # planar (2, 12, 28, 28)
        y = torch.complex(pre[:, :6], pre[:, 6:])
        ref = torch.fft.rfft2(F.avg_pool2d(torch.fft.ifft2(y).real, 2))
        np.testing.assert_allclose(stage[-1](pre).numpy(), ref.numpy(), atol=1e-10)


def test_freq_avg_needs_even_maps():
    with pytest.raises(UserError, match="freq-avg"):
        build("cemnet", "freq-avg", shape=(1, 30, 30))                 # 30 -> 15 -> odd
