"""The shared spectral primitives of methods/fourier.py: the EM product, the Weight-Fixation
projector, the pool sandwich, the Hermitian fill, the planar layout, kernel spectra.

Every expected value is an independent computation (tests/helpers.py): F.conv2d on a
circularly padded input, numpy FFTs, explicit real two-branch arithmetic, float64
gradcheck. The layers built from them: tests/test_cemnet.py; the fast paths:
tests/test_fast_paths.py; spectral pooling: tests/test_fourier_pooling.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.fourier import (from_planar, hermitian_fill, kernel_spectrum, pad_kernel,
                             spectral_matmul, spectral_maxpool, to_planar, wf_project)
from helpers import _hermitian, circ_corr_tl, crandn, gradcheck, np_kernel_spectrum, np_maxpool2, rev

DT = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


# ------------------------------------------------------------------ EM product

@pytest.mark.parametrize("size", [(8, 8), (6, 7), (5, 4)])
def test_em_product_is_index_reversed_circular_correlation(size):
    x = torch.randn(3, 2, *size, dtype=DT)
    w = torch.randn(4, 2, 3, 3, dtype=DT)
    X = torch.from_numpy(np.fft.fft2(x.numpy()))
    Wf = torch.from_numpy(np_kernel_spectrum(w, size))
    y = torch.fft.ifft2(spectral_matmul(X, Wf, conj_input=True))
    assert y.imag.abs().max() < 1e-10
    torch.testing.assert_close(y.real, rev(circ_corr_tl(x, w)))


def test_conj_weight_variant_is_plain_circular_correlation():
    x = torch.randn(2, 3, 7, 6, dtype=DT)
    w = torch.randn(5, 3, 3, 3, dtype=DT)
    X = torch.from_numpy(np.fft.fft2(x.numpy()))
    Wf = torch.from_numpy(np_kernel_spectrum(w, (7, 6)))
    y = torch.fft.ifft2(spectral_matmul(X, Wf.conj(), conj_input=False))
    assert y.imag.abs().max() < 1e-10
    torch.testing.assert_close(y.real, circ_corr_tl(x, w))


def test_two_branch_arithmetic_equals_conj_x_times_w():
    X, W = crandn(3, 4, 5, 6), crandn(4, 2, 5, 6)
    xr, xi, wr, wi = X.real, X.imag, W.real, W.imag
    # the paper's Algorithm 1 / ComplexDotLayer, written with real tensors only
    out_re = (xr[:, :, None] * wr[None] + xi[:, :, None] * wi[None]).sum(1)
    out_im = (xr[:, :, None] * wi[None] - xi[:, :, None] * wr[None]).sum(1)
    y = spectral_matmul(X, W, conj_input=True)
    torch.testing.assert_close(y.real, out_re)
    torch.testing.assert_close(y.imag, out_im)

@pytest.mark.parametrize("conj_input", [True, False])
def test_gradcheck_spectral_matmul(conj_input):
    X = crandn(2, 3, 3, 2).requires_grad_(True)
    W = crandn(3, 2, 3, 2).requires_grad_(True)
    assert gradcheck(lambda a, b: spectral_matmul(a, b, conj_input=conj_input),
                                    (X, W))

def test_wf_projector_is_idempotent_hermitian_and_fixes_kernels():
    W = crandn(3, 2, 7, 6)
    assert not _hermitian(W.numpy())
    P1 = wf_project(W, 3)
    torch.testing.assert_close(wf_project(P1, 3), P1)
    assert _hermitian(P1.numpy())
    spatial = np.fft.ifft2(P1.numpy())
    assert np.abs(spatial.imag).max() < 1e-10
    outside = np.ones((7, 6), bool)
    outside[:3, :3] = False
    assert np.abs(spatial.real[..., outside]).max() < 1e-10
    # spectra of top-left 3x3 real kernels are fixed points
    k = torch.randn(2, 3, 3, 3, dtype=DT)
    Wk = torch.from_numpy(np_kernel_spectrum(k, (7, 6)))
    torch.testing.assert_close(wf_project(Wk, 3), Wk)

@pytest.mark.parametrize("size", [(8, 8), (7, 6), (2, 2)])
def test_pool_sandwich_on_real_maps(size):
    y = np.random.default_rng(0).standard_normal((2, 3, *size))
    expect = np.fft.fft2(np_maxpool2(y))
    out = spectral_maxpool(torch.from_numpy(np.fft.fft2(y)), 2)
    np.testing.assert_allclose(out.numpy(), expect, atol=1e-10)
    half = spectral_maxpool(torch.from_numpy(np.fft.fft2(y)), 2, onesided=True)
    np.testing.assert_allclose(half.numpy(), expect[..., :expect.shape[-1] // 2 + 1], atol=1e-10)
    if size == (2, 2):
        assert torch.all(out.imag == 0)


def test_pool_discards_antihermitian_part():
    Y = crandn(2, 3, 6, 6)
    expect = np.fft.fft2(np_maxpool2(np.fft.ifft2(Y.numpy()).real))
    np.testing.assert_allclose(spectral_maxpool(Y, 2).numpy(), expect, atol=1e-10)


@pytest.mark.parametrize("width", [1, 2, 5, 6])
def test_hermitian_fill_recovers_full_fft(width):
    y = np.random.default_rng(1).standard_normal((2, 3, 5, width))
    full = np.fft.fft2(y)
    out = hermitian_fill(torch.from_numpy(full[..., :width // 2 + 1]), width)
    np.testing.assert_allclose(out.numpy(), full, atol=1e-10)

def test_planar_layout():
    z = crandn(2, 3, 4, 5)
    p = to_planar(z)
    assert p.shape == (2, 6, 4, 5)
    torch.testing.assert_close(p[:, :3], z.real)
    torch.testing.assert_close(p[:, 3:], z.imag)
    torch.testing.assert_close(from_planar(p), z)


@pytest.mark.parametrize("size", [(6, 6), (5, 7), (2, 2)])
def test_kernel_spectrum_is_fft_of_padded_kernel(size):
    w = torch.randn(4, 3, min(3, size[0]), min(3, size[1]), dtype=DT)
    expect = np_kernel_spectrum(w, size)
    np.testing.assert_allclose(kernel_spectrum(w, size).numpy(), expect, atol=1e-12)
    np.testing.assert_allclose(kernel_spectrum(w, size, onesided=True).numpy(),
                               expect[..., :size[1] // 2 + 1], atol=1e-12)


def test_pad_kernel_top_left():
    w = torch.arange(1, 7, dtype=DT).reshape(1, 1, 2, 3)
    p = pad_kernel(w, (4, 5))
    assert p.shape == (1, 1, 4, 5)
    assert torch.equal(p[..., :2, :3], w) and p.abs().sum() == w.abs().sum()   # copies; integer sums
