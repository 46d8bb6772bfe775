"""Spectral pooling (crop, fold, pad, rfft fast path) and frequency dropout
(methods/fourier_pooling.py).

The identities of spectral pooling (docs/methods.md). Every
reference is an independent computation: numpy DFTs with explicit index lists, explicit
trigonometric sums, Jacobian matrices, gradcheck. float64 throughout (tolerance 1e-12).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from methods.fourier_pooling import (POOL_SCALES, dropout_fraction, frequency_mask, sample_cutoff,
                                     spectral_crop, spectral_pad, spectral_pool)
from helpers import rand

TOL = 1e-12
C_VALUES = (0.5, 2 ** -0.5, 1.0)
# (M, N) -> (H, W): even->even, even->odd, odd->even, odd->odd, mixed, extreme sizes
SIZES = [((32, 32), (16, 16)), ((32, 32), (28, 28)), ((32, 32), (27, 27)),
         ((31, 30), (26, 25)), ((9, 10), (6, 7)), ((8, 8), (1, 1)), ((8, 7), (2, 3)),
         ((12, 12), (11, 12))]


pytestmark = pytest.mark.usefixtures("one_thread")


def kept(n_in, n_out):
    """FFT-order indices of signed frequencies -floor(n_out/2) .. ceil(n_out/2)-1."""
    return np.r_[0:(n_out + 1) // 2, n_in - n_out // 2:n_in]


def naive_re_1d(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Re(iDFT(naive crop)) along one axis (unnormalized numpy DFT, 1/n_out inverse)."""
    X = np.fft.fft(x, axis=axis)
    return np.fft.ifft(np.take(X, kept(x.shape[axis], n_out), axis=axis), axis=axis).real


def reference_c_half(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """c = 1/2 reference: Re(iDFT(naive crop)) axis by axis, torch's unnormalized scaling."""
    return naive_re_1d(naive_re_1d(x, h, -2), w, -1)


def linear_matrix(f, m, n) -> torch.Tensor:
    """Matrix of a linear map f on m x n maps, from its action on the basis (one batched call)."""
    basis = torch.eye(m * n, dtype=torch.float64).view(m * n, m, n)
    return f(basis).reshape(m * n, -1).T


def pool_matrix(m, n, h, w, **kw) -> torch.Tensor:
    """The (h*w) x (m*n) matrix of x -> spectral_pool(x)."""
    return linear_matrix(lambda v: spectral_pool(v, (h, w), **kw), m, n)


# ------------------------------------------------------------------------ the operator
@pytest.mark.parametrize("mn,hw", SIZES)
def test_c_half_equals_re_of_axiswise_naive_crop(mn, hw):
    x = rand(2, 3, *mn)
    ref = reference_c_half(x.numpy(), *hw)
    for onesided in (False, True):
        out = spectral_pool(x, hw, scale="none", onesided=onesided)
        assert out.shape == (2, 3, *hw)
        assert np.abs(out.numpy() - ref).max() < TOL


def test_one_shot_2d_naive_crop_differs_only_at_the_even_even_corner():
    """Re(iDFT2(naive 2-D crop)) agrees with the fold when one output size is odd, but not
    when both are even (the corner bin), so the default is pinned to the axis-wise form."""
    x = rand(32, 30).numpy()

    def one_shot(h, w):
        X = np.fft.fft2(x)
        return np.fft.ifft2(X[kept(32, h)][:, kept(30, w)]).real

    t = torch.from_numpy(x)
    assert np.abs(spectral_pool(t, (16, 15), scale="none").numpy() - one_shot(16, 15)).max() < TOL
    assert np.abs(spectral_pool(t, (16, 16), scale="none").numpy() - one_shot(16, 16)).max() > 1e-4


@pytest.mark.parametrize("mn", [(8, 8), (9, 9), (8, 9), (7, 10)])
@pytest.mark.parametrize("c", C_VALUES)
def test_same_size_is_identity(mn, c):
    x = rand(2, *mn)
    for scale in POOL_SCALES:
        for onesided in (False, True):
            y = spectral_pool(x, mn, fold_c=c, scale=scale, onesided=onesided)
            assert (y - x).abs().max() < TOL
    X = torch.fft.fft2(x)
    assert torch.equal(spectral_crop(X, mn, fold_c=c), X)    # same size: the coefficients unchanged


@pytest.mark.parametrize("mn,hw", SIZES)
@pytest.mark.parametrize("c", C_VALUES)
def test_real_output_and_hermitian_spectrum(mn, hw, c):
    x = rand(2, *mn)
    y = spectral_crop(torch.fft.fft2(x), hw, fold_c=c)
    # Hermitian: Y[k, l] = conj Y[-k mod H, -l mod W], checked with explicit index arrays
    h, w = hw
    rows, cols = (-np.arange(h)) % h, (-np.arange(w)) % w
    partner = y[..., rows, :][..., cols].conj()
    assert (y - partner).abs().max() < 1e-10
    assert torch.fft.ifft2(y).imag.abs().max() < TOL


@pytest.mark.parametrize("mn,hw", [((32, 32), (16, 16)), ((32, 32), (28, 28)), ((30, 31), (16, 15))])
def test_naive_even_crop_is_not_real(mn, hw):
    """Negative test: without the fold an even crop has an O(1) imaginary part."""
    x = rand(2, *mn).numpy()
    X = np.fft.fft2(x, norm="ortho")
    naive = np.fft.ifft2(X[..., kept(mn[0], hw[0]), :][..., kept(mn[1], hw[1])], norm="ortho")
    assert np.abs(naive.imag).max() > 0.1


@pytest.mark.parametrize("mn,hw", SIZES)
@pytest.mark.parametrize("c", C_VALUES)
def test_rfft_path_equals_fft2_reference(mn, hw, c):
    x = rand(2, 2, *mn)
    mask = frequency_mask(hw, 0.6 * max(hw), dtype=torch.float64)
    for scale in POOL_SCALES:
        for m in (None, mask):
            a = spectral_pool(x, hw, fold_c=c, scale=scale, onesided=False, mask=m)
            b = spectral_pool(x, hw, fold_c=c, scale=scale, onesided=True, mask=m)
            assert (a - b).abs().max() < TOL


@pytest.mark.parametrize("mn,hw", [((32, 32), (28, 28)), ((32, 32), (16, 16)), ((32, 30), (16, 16))])
def test_naive_rfft_path_is_wrong_on_even_sizes(mn, hw):
    """Negative test (the note's pitfall): rfft2, rows K_H and columns 0..W/2, irfft2."""
    x = rand(2, *mn)
    r = torch.fft.rfft2(x)[..., torch.from_numpy(kept(mn[0], hw[0])), :hw[1] // 2 + 1]
    naive = torch.fft.irfft2(r, s=hw)
    assert (naive - spectral_pool(x, hw, scale="none", onesided=False)).abs().max() > 0.05


# ---------------------------------------------------------------------- Parseval, scales
@pytest.mark.parametrize("mn,hw", SIZES)
def test_parseval_inequality(mn, hw):
    x = rand(64, *mn)
    y = spectral_pool(x, hw, scale="ortho")
    ex, ey = (x ** 2).sum((-2, -1)), (y ** 2).sum((-2, -1))
    assert (ey <= ex * (1 + 1e-12)).all()
    ratio = (ey.sum() / ex.sum()).item()        # white noise: about (H/M)(W/N)
    expected = hw[0] * hw[1] / (mn[0] * mn[1])
    assert abs(ratio - expected) < 0.15 * expected + 0.02


def bandlimited(m, n, h, w, seed=1):
    """Random real m x n map with energy only at |k| < h/2, |l| < w/2 (explicit cosines)."""
    rng = np.random.default_rng(seed)
    p, q = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    x = np.zeros((m, n))
    terms = []
    for k in range(-((h - 1) // 2), (h - 1) // 2 + 1):
        for l in range(-((w - 1) // 2), (w - 1) // 2 + 1):
            a, phi = rng.standard_normal(), rng.uniform(0, 2 * np.pi)
            terms.append((k, l, a, phi))
    for k, l, a, phi in terms:
        x += a * np.cos(2 * np.pi * (k * p / m + l * q / n) + phi)
    return x, terms


@pytest.mark.parametrize("mn,hw", [((32, 32), (27, 27)), ((32, 32), (16, 16)), ((31, 30), (26, 25))])
def test_parseval_equality_on_bandlimited_input(mn, hw):
    x, _ = bandlimited(*mn, *hw)
    y = spectral_pool(torch.from_numpy(x), hw, scale="ortho").numpy()
    assert abs((y ** 2).sum() / (x ** 2).sum() - 1) < 1e-12


@pytest.mark.parametrize("mn,hw", [((32, 32), (27, 27)), ((32, 32), (16, 16)), ((31, 30), (26, 25))])
def test_bandlimited_resampling_gives_exact_samples(mn, hw):
    """Mean-preserving pooling of a band-limited map = its trigonometric interpolant sampled
    at (p M/H, q N/W), evaluated here from the explicit cosine sum."""
    (m, n), (h, w) = mn, hw
    x, terms = bandlimited(m, n, h, w, seed=2)
    p, q = np.meshgrid(np.arange(h) * m / h, np.arange(w) * n / w, indexing="ij")
    expected = sum(a * np.cos(2 * np.pi * (k * p / m + l * q / n) + phi) for k, l, a, phi in terms)
    y = spectral_pool(torch.from_numpy(x), hw, scale="mean").numpy()
    assert np.abs(y - expected).max() < 1e-11


@pytest.mark.parametrize("m,h1,h2", [(32, 28, 16), (32, 27, 16), (31, 26, 25), (32, 20, 10),
                                     (30, 17, 8)])
def test_composition(m, h1, h2):
    x = rand(2, m, m + 1)
    two = spectral_pool(spectral_pool(x, (h1, h1 + 1), scale="mean"), (h2, h2), scale="mean")
    one = spectral_pool(x, (h2, h2), scale="mean")
    assert (two - one).abs().max() < TOL


@pytest.mark.parametrize("mn,hw", SIZES)
def test_mean_preservation(mn, hw):
    x = rand(3, *mn) + 2.0
    y = spectral_pool(x, hw, scale="mean")
    assert (y.mean((-2, -1)) - x.mean((-2, -1))).abs().max() < TOL
    # the unitary scale multiplies the mean by sqrt(MN/HW)
    g = math.sqrt(mn[0] * mn[1] / (hw[0] * hw[1]))
    yo = spectral_pool(x, hw, scale="ortho")
    assert (yo.mean((-2, -1)) - g * x.mean((-2, -1))).abs().max() < 1e-11


def test_c_one_is_sampling_consistent():
    """A cosine on the new Nyquist frequency comes out as exact +-1 samples with c = 1."""
    m, h = 32, 16
    p = np.arange(m)
    x = np.cos(2 * np.pi * (h // 2) * p / m)[:, None] * np.ones((1, 9))   # varies along rows
    y = spectral_pool(torch.from_numpy(x), (h, 9), fold_c=1.0, scale="mean").numpy()
    assert np.abs(y - np.cos(np.pi * np.arange(h))[:, None]).max() < TOL
    y_half = spectral_pool(torch.from_numpy(x), (h, 9), fold_c=0.5, scale="mean").numpy()
    assert np.abs(np.abs(y_half) - 0.5).max() < TOL


@pytest.mark.parametrize("mn,hw", [((32, 32), (28, 28)), ((32, 32), (27, 27)), ((31, 31), (26, 26)),
                                   ((31, 30), (25, 26))])
@pytest.mark.parametrize("c", C_VALUES)
def test_flip_equivariance(mn, hw, c):
    """x[m] -> x[-m mod M] commutes with pooling, per axis and jointly."""
    x = rand(2, *mn)

    def rev(t, dims):
        for d in dims:
            n = t.shape[d]
            t = t.index_select(d, torch.from_numpy((-np.arange(n)) % n))
        return t

    for dims in ((-2,), (-1,), (-2, -1)):
        a = spectral_pool(rev(x, dims), hw, fold_c=c)
        b = rev(spectral_pool(x, hw, fold_c=c), dims)
        assert (a - b).abs().max() < TOL


# -------------------------------------------------------------------- gradients, adjoint
@pytest.mark.parametrize("mn,hw", [((7, 8), (4, 5)), ((6, 6), (4, 4)), ((7, 6), (5, 3))])
@pytest.mark.parametrize("onesided", [False, True])
def test_gradcheck(mn, hw, onesided):
    x = rand(1, 1, *mn).requires_grad_()
    mask = frequency_mask(hw, 0.7 * max(hw), dtype=torch.float64)
    for c in (0.5, 1.0):
        assert torch.autograd.gradcheck(
            lambda t: spectral_pool(t, hw, fold_c=c, onesided=onesided, mask=mask), (x,))
    y = torch.fft.fft2(rand(1, 1, *mn, seed=3)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: spectral_crop(t, hw, fold_c=0.7), (y,))


@pytest.mark.parametrize("mn,hw", [((8, 8), (6, 6)), ((9, 9), (5, 7)), ((8, 9), (4, 5))])
def test_adjoint_and_coisometry(mn, hw):
    (m, n), (h, w) = mn, hw
    x, y = rand(m, n, seed=4), rand(h, w, seed=5)
    xr = x.clone().requires_grad_()
    out = spectral_pool(xr, hw)
    (vjp,) = torch.autograd.grad(out, xr, y)
    assert abs((out * y).sum() - (x * vjp).sum()) < TOL       # <Px, y> = <x, P^T y>
    eye = torch.eye(h * w, dtype=torch.float64)
    even = h % 2 == 0 or w % 2 == 0
    p = pool_matrix(m, n, h, w, fold_c=2 ** -0.5)           # c = 1/sqrt(2): P P^T = I
    assert (p @ p.T - eye).abs().max() < TOL
    p_half = pool_matrix(m, n, h, w, fold_c=0.5)
    err = (p_half @ p_half.T - eye).abs().max()
    assert (err > 1e-3) if even else (err < TOL)            # c = 1/2: only odd sizes


# ------------------------------------------------------------------------- zero padding
@pytest.mark.parametrize("mn,hw", SIZES)
@pytest.mark.parametrize("c", C_VALUES)
def test_pad_is_right_inverse_and_pad_crop_projects(mn, hw, c):
    (m, n), (h, w) = mn, hw
    y = torch.fft.fft2(rand(2, h, w))
    assert (spectral_crop(spectral_pad(y, mn, fold_c=c), hw, fold_c=c) - y).abs().max() < 1e-10
    # Q = ifft2 . pad . crop . fft2 on real maps: a symmetric idempotent (orthogonal projection)
    q = linear_matrix(lambda v: torch.fft.ifft2(spectral_pad(
        spectral_crop(torch.fft.fft2(v), hw, fold_c=c), mn, fold_c=c)).real, m, n)
    assert (q @ q - q).abs().max() < TOL and (q - q.T).abs().max() < TOL
    assert abs(torch.trace(q).item() - h * w) < 1e-9         # rank = H W real degrees of freedom


# ---------------------------------------------------------------------- frequency dropout
def test_frequency_mask_is_the_linf_square():
    for h, w, r in [(15, 15, 7.3), (16, 16, 9.0), (12, 9, 4.0), (8, 8, 100.0), (7, 7, 0.0)]:
        mask = frequency_mask((h, w), r, dtype=torch.float64).numpy()
        expected = np.zeros((h, w))
        for k in range(h):
            for l in range(w):
                ks = k if k <= h // 2 else k - h          # signed frequency
                ls = l if l <= w // 2 else l - w
                expected[k, l] = float(2 * max(abs(ks), abs(ls)) <= r)
        assert np.array_equal(mask, expected)
        # symmetric: equal to its own flip (k, l) -> (-k, -l)
        assert np.array_equal(mask, mask[(-np.arange(h)) % h][:, (-np.arange(w)) % w])
        assert mask[0, 0] == 1


@pytest.mark.parametrize("hw", [(16, 16), (15, 15), (12, 11)])
def test_masked_pooling_stays_real_and_full_cutoff_is_identity(hw):
    x = rand(2, 32, 32)
    mask = frequency_mask(hw, 0.5 * max(hw), dtype=torch.float64)
    y = spectral_crop(torch.fft.fft2(x), hw) * mask
    assert torch.fft.ifft2(y).imag.abs().max() < TOL
    full = frequency_mask(hw, max(hw), dtype=torch.float64)
    assert bool((full == 1).all())
    assert (spectral_pool(x, hw, mask=full) - spectral_pool(x, hw)).abs().max() < TOL
    masked = spectral_pool(x, hw, mask=mask)
    assert (masked - spectral_pool(x, hw)).abs().max() > 1e-3   # the mask does something


def test_sample_cutoff_range_and_determinism():
    g = torch.Generator().manual_seed(7)
    draws = [sample_cutoff(27, 0.3, generator=g) for _ in range(2000)]
    assert min(draws) >= 0.3 * 27 and max(draws) <= 27
    assert max(draws) - min(draws) > 0.9 * 0.7 * 27          # it covers the range
    assert abs(np.mean(draws) - 0.65 * 27) < 0.5              # uniform: mean in the middle
    g2 = torch.Generator().manual_seed(7)
    assert draws[:10] == [sample_cutoff(27, 0.3, generator=g2) for _ in range(10)]
    torch.manual_seed(3)
    a = sample_cutoff(10, 0.5)
    torch.manual_seed(3)
    assert sample_cutoff(10, 0.5) == a


def test_dropout_fraction_schedule():
    """c_m = alpha + (m/M)(beta - alpha): alpha=0.3, beta=0.15, M=5 -> 0.27, ..., 0.15."""
    got = [dropout_fraction(m, 5, 0.30, 0.15) for m in range(1, 6)]
    assert np.allclose(got, [0.27, 0.24, 0.21, 0.18, 0.15])
