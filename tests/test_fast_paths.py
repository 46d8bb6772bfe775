"""The fast paths of the spectral layers (issue 14) equal the reference operators.

Each fast path is checked against the slower formulation it replaces, which the older test
files prove against independent computations (numpy DFTs, F.conv2d, gradcheck): the planar
EM product against `spectral_matmul` + `hermitian_fill` + `to_planar`, the separable-matrix
spectral pooling (with and without a separable frequency-dropout mask) against the fft2
definition, and the device-side frequency-dropout draw against `frequency_mask` /
`sample_cutoff`. float64, gradcheck for every hand-written backward.
"""

from __future__ import annotations

import pytest
import torch

from methods.fourier import (dft_matrix, hermitian_fill, spectral_matmul, spectral_matmul_planar,
                             to_planar)
from methods.fourier_pooling import (frequency_mask, frequency_mask_1d, sample_cutoff,
                                     sample_cutoff_tensor, spectral_pool)
from helpers import rand

pytestmark = pytest.mark.usefixtures("one_thread")
SIZES = [(6, 7), (8, 8), (5, 4), (2, 2), (1, 3), (4, 1), (3, 2)]
C128 = torch.complex128


def gradcheck(fn, inputs):
    return torch.autograd.gradcheck(fn, inputs, fast_mode=True)


@pytest.mark.parametrize("hw", SIZES)
def test_planar_em_with_hermitian_fill_equals_reference(hw):
    h, w = hw
    X = torch.fft.rfft2(rand(2, 3, h, w))
    W = torch.fft.rfft2(rand(3, 4, h, w, seed=1))
    ref = to_planar(hermitian_fill(spectral_matmul(X, W, conj_input=True), w))
    out = spectral_matmul_planar(X, W, conj_input=True, full_width=w)
    assert out.shape == (2, 8, h, w)
    assert (out - ref).abs().max() < 1e-12
    assert gradcheck(lambda a, b: spectral_matmul_planar(a, b, conj_input=True, full_width=w),
                     (X.requires_grad_(), W.requires_grad_()))


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("conj", [True, False])
def test_planar_em_with_planar_input_equals_reference(hw, conj):
    Z = rand(2, 3, *hw, complex_=True)
    W = rand(3, 4, *hw, seed=2, complex_=True)
    ref = to_planar(spectral_matmul(Z, W, conj_input=conj))
    P = to_planar(Z)
    assert (spectral_matmul_planar(P, W, conj_input=conj) - ref).abs().max() < 1e-12
    assert (spectral_matmul_planar(Z, W, conj_input=conj) - ref).abs().max() < 1e-12
    assert gradcheck(lambda a, b: spectral_matmul_planar(a, b, conj_input=conj),
                     (P.requires_grad_(), W.requires_grad_()))


POOL_SIZES = [((32, 32), (27, 27)), ((28, 28), (23, 23)), ((9, 10), (6, 7)), ((8, 8), (1, 1)),
              ((12, 12), (11, 12)), ((10, 9), (10, 9))]


@pytest.mark.parametrize("mn,hw", POOL_SIZES)
@pytest.mark.parametrize("scale", ["ortho", "mean", "none"])
def test_matmul_pool_path_equals_fft2_definition(mn, hw, scale):
    x = rand(2, 3, *mn)
    for c in (0.5, 1.0):
        ref = spectral_pool(x, hw, fold_c=c, scale=scale, path="fft2")
        assert (spectral_pool(x, hw, fold_c=c, scale=scale, path="matmul") - ref).abs().max() \
            < 1e-12
        assert (spectral_pool(x, hw, fold_c=c, scale=scale, path="rfft2") - ref).abs().max() \
            < 1e-12
        cut = 0.6 * max(hw)
        rows = frequency_mask_1d(hw[0], cut, dtype=torch.float64)
        cols = frequency_mask_1d(hw[1], cut, dtype=torch.float64)
        full = frequency_mask(hw, cut, dtype=torch.float64)
        assert torch.equal(rows[:, None] * cols[None, :], full)       # separable; 0/1 products: exact
        ref_m = spectral_pool(x, hw, fold_c=c, scale=scale, path="fft2", mask=full)
        out_m = spectral_pool(x, hw, fold_c=c, scale=scale, mask=(rows, cols))
        assert (out_m - ref_m).abs().max() < 1e-12


def test_matmul_pool_gradient():
    x = rand(1, 2, 9, 8).requires_grad_()
    rows = frequency_mask_1d(6, 3.0, dtype=torch.float64)
    cols = frequency_mask_1d(5, 3.0, dtype=torch.float64)
    assert gradcheck(lambda t: spectral_pool(t, (6, 5), mask=(rows, cols)), (x,))


def test_device_cutoff_draws_like_the_host_one():
    torch.manual_seed(11)
    a = sample_cutoff(27, 0.3)
    torch.manual_seed(11)
    b = sample_cutoff_tensor(27, 0.3)
    assert b.dim() == 0 and abs(float(b) - a) < 1e-5               # the same uniform draw
    for cut in (b, torch.tensor(13.0), torch.tensor(0.0)):
        assert torch.equal(frequency_mask_1d(27, cut)[:, None] * frequency_mask_1d(20, cut),  # 0/1: exact
                           frequency_mask((27, 20), cut))


def test_dft_matrix_is_cached_and_exact():
    a = dft_matrix(12, 12, 3, dtype=C128)
    assert dft_matrix(12, 12, 3, dtype=C128) is a                   # built once
    n = torch.arange(12, dtype=torch.float64)[:, None] * torch.arange(3)[None, :]
    ref = torch.exp(-2j * torch.pi * n / 12)
    assert (a - ref).abs().max() < 1e-14
