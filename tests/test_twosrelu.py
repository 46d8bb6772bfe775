"""2SReLU reconstruction (methods/twosrelu.py): identities of the second-harmonic term.

The tones, Hermitian checks and the spectrum of x^2 are computed independently with numpy;
float64 throughout.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import methods
from harness.spec import RunSpec
from harness.suite import resolve_hparams
from methods.fcnn import FourierConv2d, FourierPool2d
from methods.fourier_pooling import spectral_crop
from methods.twosrelu import TwoSReLU, harmonic_index, second_harmonic

TOL = 1e-10
N = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def act(candidate, alpha, beta, size=(N, N), channels=1):
    m = TwoSReLU(channels, size, candidate).double()
    with torch.no_grad():
        m.alpha.fill_(alpha)
        m.beta.fill_(beta)
    return m


def tone(k0, phi, amp=1.5, n=N):
    """amp * cos(2 pi (k0 . r) / n + phi) on an n x n grid, its ortho DFT (1, 1, n, n)."""
    r1, r2 = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = amp * np.cos(2 * np.pi * (k0[0] * r1 + k0[1] * r2) / n + phi)
    return torch.from_numpy(np.fft.fft2(x, norm="ortho"))[None, None]


def phase_error(z, phase):
    """arg z - phase, wrapped to (-pi, pi]."""
    return math.remainder(torch.angle(z).item() - phase, 2 * math.pi)


def bins(*ks, n=N):
    return {(a % n, b % n) for a, b in ks}


def support(y, tol=1e-9):
    idx = (y[0, 0].abs() > tol).nonzero().tolist()
    return {tuple(i) for i in idx}


@pytest.mark.parametrize("candidate", [1, 2])
@pytest.mark.parametrize("k0,phi", [((1, 3), 0.7), ((3, 0), -2.0), ((2, 2), 2.9)])
def test_single_tone(candidate, k0, phi):
    alpha, beta, amp = 0.8, 0.35, 1.5
    x = tone(k0, phi, amp)
    y = act(candidate, alpha, beta)(x).detach()
    k2 = (2 * k0[0], 2 * k0[1])
    assert support(y) == bins(k0, (-k0[0], -k0[1]), k2, (-k2[0], -k2[1]))
    a1 = y[0, 0, k0[0] % N, k0[1] % N]
    a2 = y[0, 0, k2[0] % N, k2[1] % N]
    x1 = amp * N / 2                     # |X[k0]| of the ortho DFT of the tone (N^2 / 2 / N)
    assert abs(a1) == pytest.approx(alpha * x1)
    expected = beta * x1 if candidate == 1 else beta * x1 ** 2
    assert abs(a2) == pytest.approx(expected)
    if candidate == 1:
        assert abs(a2) / abs(a1) == pytest.approx(beta / alpha)
    assert phase_error(a1, phi) == pytest.approx(0, abs=1e-9)
    assert phase_error(a2, 2 * phi) == pytest.approx(0, abs=1e-9)


def test_single_tone_candidate_3_is_the_spectrum_of_the_square():
    """x^2 = amp^2/2 + amp^2/2 cos(2 theta + 2 phi): DC, and +-2 k0 with phase 2 phi."""
    k0, phi, amp, alpha, beta = (1, 2), 0.4, 1.2, 0.5, 0.3
    y = act(3, alpha, beta)(tone(k0, phi, amp)).detach()
    assert support(y) == bins((0, 0), k0, (-1, -2), (2, 4), (-2, -4))
    a2 = y[0, 0, 2, 4]
    assert abs(a2) == pytest.approx(beta * amp ** 2 / 2 * N / 2)
    assert phase_error(a2, 2 * phi) == pytest.approx(0, abs=1e-9)


def test_a_tone_whose_double_reaches_nyquist_has_no_second_harmonic():
    y = act(1, 1.0, 0.5)(tone((4, 0), 0.3)).detach()           # 2 * 4 = 8 = N/2
    assert support(y) == bins((4, 0), (-4, 0))


@pytest.mark.parametrize("n", [5, 6, 7, 8, 16, 28])
def test_harmonic_index_is_symmetric_and_injective(n):
    src, dst = harmonic_index(n)
    signed = [k if k < (n + 1) // 2 else k - n for k in src.tolist()]
    assert sorted(signed) == sorted(-k for k in signed)              # symmetric in +-k
    assert len(set(dst.tolist())) == len(dst)                         # injective
    assert all(4 * abs(k) < n for k in signed)                        # |2k| < n/2
    assert all(d == (2 * k) % n for k, d in zip(signed, dst.tolist()))


@pytest.mark.parametrize("candidate", [1, 2, 3])
@pytest.mark.parametrize("size", [(8, 8), (7, 10)])
def test_hermitian_input_stays_hermitian(candidate, size):
    g = np.random.default_rng(candidate)
    x = torch.from_numpy(np.fft.fft2(g.standard_normal((2, 3, *size)), norm="ortho"))
    m = TwoSReLU(3, size, candidate).double()
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.5, 1.0, -0.7]))
        m.beta.copy_(torch.tensor([0.3, -1.2, 0.9]))
    y = m(x).detach().numpy()
    flipped = np.roll(np.flip(y, axis=(-2, -1)), 1, axis=(-2, -1))   # Y[-k]
    np.testing.assert_allclose(y, np.conj(flipped), atol=TOL)
    assert np.abs(np.fft.ifft2(y, norm="ortho").imag).max() < TOL


def test_homogeneity_separates_candidate_1_from_candidate_2():
    g = np.random.default_rng(5)
    x = torch.from_numpy(np.fft.fft2(g.standard_normal((1, 1, 8, 8))))
    c = 2.5
    f1, f2 = act(1, 0.7, 0.4, (8, 8)), act(2, 0.7, 0.4, (8, 8))
    np.testing.assert_allclose(f1(c * x).detach().numpy(), (c * f1(x)).detach().numpy(), atol=1e-9)
    diff = (f2(c * x) - c * f2(x)).abs().max().item()
    assert diff > 1e-2                                         # not homogeneous of degree 1
    s = second_harmonic(x, 2)                                  # but of degree 2 in the S term
    np.testing.assert_allclose(second_harmonic(c * x, 2).numpy(), (c ** 2 * s).numpy(), atol=1e-9)


@pytest.mark.parametrize("norm", ["ortho", "backward"])
def test_candidate_3_is_the_spectrum_of_x_squared(norm):
    g = np.random.default_rng(2)
    x = g.standard_normal((2, 6, 5))
    s = second_harmonic(torch.from_numpy(np.fft.fft2(x, norm=norm)), 3, norm=norm)
    np.testing.assert_allclose(np.fft.ifft2(s.numpy(), norm=norm).real, x ** 2, atol=TOL)
    # and the circular self-convolution of the spectrum / N with the unnormalised DFT
    if norm == "backward":
        big_x = np.fft.fft2(x[0])
        conv = np.zeros_like(big_x)
        for k1 in range(6):
            for k2 in range(5):
                conv[k1, k2] = sum(big_x[j1, j2] * big_x[(k1 - j1) % 6, (k2 - j2) % 5]
                                   for j1 in range(6) for j2 in range(5))
        np.testing.assert_allclose(s[0].numpy(), conv / 30, atol=1e-9)


@pytest.mark.parametrize("candidate", [1, 2, 3])
def test_gradcheck(candidate):
    g = np.random.default_rng(candidate)
    x = torch.from_numpy(g.standard_normal((1, 2, 5, 5)) + 1j * g.standard_normal((1, 2, 5, 5)))
    x.requires_grad_()
    m = TwoSReLU(2, (5, 5), candidate).double()
    with torch.no_grad():
        m.beta.copy_(torch.tensor([0.4, -0.8]))
    a = m.alpha.detach().clone().requires_grad_()
    b = m.beta.detach().clone().requires_grad_()
    call = torch.func.functional_call
    assert torch.autograd.gradcheck(lambda z, a, b: call(m, {"alpha": a, "beta": b}, (z,)),
                                    (x, a, b))
    assert torch.autograd.gradcheck(m, (x,))
    y = m(x)
    y.abs().sum().backward()
    assert m.alpha.grad.abs().sum() > 0 and m.beta.grad.abs().sum() > 0


def test_network_reuses_the_fcnn_layers_and_is_labelled_a_reconstruction():
    info = methods.get("2srelu")
    assert info.reconstruction
    torch.manual_seed(0)
    model = methods.build(RunSpec("2srelu", "lenet5", "test",
                                  hparams=resolve_hparams("2srelu", "lenet5", {})),
                          (1, 28, 28), 10)
    kinds = [type(m) for m in model.features]
    assert kinds == [FourierConv2d, TwoSReLU, FourierPool2d] * 2
    assert model.describe()["reconstruction"] is True
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    # the pool is the shared crop: 28 -> 14 on the first block's output
    z = torch.randn(2, 6, 28, 28, dtype=torch.cfloat)
    assert torch.equal(model.features[2](z), spectral_crop(z, (14, 14), fold_c=0.5))   # the same call
