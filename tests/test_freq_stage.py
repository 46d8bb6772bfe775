"""The fused CEMNet stage (methods/freq_stage.py) and the CEMNet training block equal the
unfused complex / planar computation they replace (issue 26), in float64.

The reference is tests/reference_layers.py: the old formulas written with plain torch ops
(Hermitian completion by index arithmetic, the planar two-branch F.batch_norm, the noise
product), independent of `methods`. Values agree to 1e-12 (relative to the output's
scale), gradients of every input and parameter too (autograd of the reference against the
hand-written backward), and the running statistics as nn.BatchNorm2d updates them. The
noise is drawn from the same seed on both sides: the block consumes the global RNG in the
same order as the old layers did.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from methods.cemnet import CEMBlock
from methods.freq_stage import complete_norm_noise
from reference_layers import cem_block, cem_stage, hermitian_complete, planar_noise

DT = torch.float64
SIZES = [(6, 7), (8, 8), (5, 4), (2, 2), (1, 3), (4, 1), (3, 2), (28, 28)]


def close(a, b, tol=1e-12):
    scale = max(b.abs().max().item(), 1.0)
    assert (a - b).abs().max().item() <= tol * scale, (a - b).abs().max().item()


def half_spectrum(b, c, h, w, seed):
    """The one-sided half of the spectrum of a real map (so that the completion is exact)."""
    g = torch.Generator().manual_seed(seed)
    return torch.fft.rfft2(torch.randn(b, c, h, w, generator=g, dtype=DT))


def to_fm(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W') -> frequency-major (H*W', B, C), contiguous."""
    b, c = z.shape[:2]
    return z.permute(2, 3, 0, 1).reshape(-1, b, c).contiguous()


def make_bn(c, seed=0):
    bn = nn.BatchNorm2d(2 * c, eps=1e-3, momentum=0.01).double().train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(2 * c, generator=g, dtype=DT) + 0.5)
        bn.bias.copy_(torch.randn(2 * c, generator=g, dtype=DT))
        bn.running_mean.copy_(torch.randn(2 * c, generator=g, dtype=DT))
        bn.running_var.copy_(torch.rand(2 * c, generator=g, dtype=DT) + 0.5)
    return bn


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("half", [True, False])
@pytest.mark.parametrize("with_bn", [True, False])
@pytest.mark.parametrize("with_noise", [True, False])
def test_fused_stage_equals_planar_reference(hw, half, with_bn, with_noise):
    h, w = hw
    b, c = 3, 2
    z = half_spectrum(b, c, h, w, 1) if half else torch.fft.fft2(
        torch.randn(b, c, h, w, dtype=DT) + 1j * torch.randn(b, c, h, w, dtype=DT))
    full = hermitian_complete(z, w) if half else z
    noise = planar_noise(b, c, h, w, (0.3, 0.2)) if with_noise else None
    interleaved = None if noise is None else noise.view(b, 2, c, h, w).permute(0, 2, 3, 4, 1) \
        .contiguous()
    bn, ref_bn = (make_bn(c), make_bn(c)) if with_bn else (None, None)

    y = to_fm(z).requires_grad_()
    out = complete_norm_noise(y, h, w, bn=bn, noise=interleaved)
    zr = z.clone().requires_grad_()
    params = None if ref_bn is None else (ref_bn.weight, ref_bn.bias, ref_bn.running_mean,
                                          ref_bn.running_var, ref_bn.momentum, ref_bn.eps)
    ref = cem_stage(hermitian_complete(zr, w) if half else zr, params, noise)
    assert out.shape == ref.shape == full.shape and out.is_contiguous()
    close(out, ref)

    grad = torch.randn_like(ref)
    (out.conj() * grad).real.sum().backward()
    (ref.conj() * grad).real.sum().backward()
    close(y.grad, to_fm(zr.grad))
    if with_bn:
        close(bn.weight.grad, ref_bn.weight.grad)
        close(bn.bias.grad, ref_bn.bias.grad)
        close(bn.running_mean, ref_bn.running_mean)
        close(bn.running_var, ref_bn.running_var)
        assert bn.num_batches_tracked.item() == 1


@pytest.mark.parametrize("hw", [(6, 7), (4, 4), (3, 2)])
def test_fused_stage_gradcheck(hw):
    """The hand-written backward against finite differences, for y, the BN weight and bias."""
    h, w = hw
    b, c = 2, 2
    noise = planar_noise(b, c, h, w, (0.3,)).view(b, 2, c, h, w).permute(0, 2, 3, 4, 1) \
        .contiguous()
    y = to_fm(half_spectrum(b, c, h, w, 3)).requires_grad_()
    ref = make_bn(c)

    def f(yy, ww, bb):
        bn = SimpleNamespace(weight=ww, bias=bb, running_mean=ref.running_mean.clone(),
                             running_var=ref.running_var.clone(), momentum=0.01, eps=1e-3,
                             track_running_stats=True, affine=True,
                             num_batches_tracked=torch.zeros((), dtype=torch.long))
        return torch.view_as_real(complete_norm_noise(yy, h, w, bn=bn, noise=noise))

    assert torch.autograd.gradcheck(f, (y, ref.weight.detach().clone().requires_grad_(),
                                        ref.bias.detach().clone().requires_grad_()),
                                    fast_mode=True)


# (A split Leaky ReLU without BN on a Hermitian product sits on its kink at the self-
# conjugate bins, whose imaginary parts are 0 up to rounding: its derivative there depends
# on the rounding, so that case is checked on a non-Hermitian input only.)
BLOCKS = [(act, drop, bn, wf, first)
          for act, drop, bn in [("approx", 0.5, True), ("approx", 0.0, True),
                                ("approx", 0.5, False), ("leaky", 0.5, True),
                                ("leaky", 0.0, False)]
          for wf, first in [("spatial", True), ("spatial", False), ("none", True)]
          if not (act == "leaky" and not bn and first)]


@pytest.mark.parametrize("activation,dropout,bn,wf,first", BLOCKS)
def test_training_block_equals_reference_with_the_same_noise(activation, dropout, bn, wf, first):
    size, b, cin, cout = (6, 5), 3, 2, 4
    torch.manual_seed(0)
    blk = CEMBlock(cin, cout, 3, size, wf=wf, first=first, bn=bn, activation=activation,
                   act_std=0.125, dropout=dropout).double().train()
    x_real = torch.randn(b, cin, *size, dtype=DT)
    x = torch.fft.rfft2(x_real) if first else torch.fft.fft2(x_real + 0.5j * x_real.roll(1, -1))
    if wf == "none":   # the stored frequency weights of a real kernel: the same function
        kernel = torch.randn(cout, cin, 3, 3, dtype=DT)
        spec = torch.fft.fft2(nn.functional.pad(kernel, (0, 2, 0, 3))).permute(2, 3, 1, 0)
        with torch.no_grad():
            blk.em.weight.copy_(torch.view_as_real(spec))
    else:
        kernel = blk.em.weight.detach()
    ref_bn = make_bn(cout) if bn else None
    if bn:
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(blk.bn, name).copy_(getattr(ref_bn, name))

    stds = ((0.125,) if activation == "approx" else ()) + ((dropout / 2,) if dropout else ())
    xin = x.clone().requires_grad_()
    torch.manual_seed(7)
    out = blk(xin)
    torch.manual_seed(7)
    noise = planar_noise(b, cout, *size, stds) if stds else None
    xref = x.clone().requires_grad_()
    kref = kernel.clone().requires_grad_()
    params = None if ref_bn is None else (ref_bn.weight, ref_bn.bias, ref_bn.running_mean,
                                          ref_bn.running_var, ref_bn.momentum, ref_bn.eps)
    if activation == "leaky":   # split Leaky ReLU between the BN and the dropout noise
        pre = cem_block(xref, kref, size, onesided=first, bn_params=params, noise=None)
        act = nn.functional.leaky_relu(torch.view_as_real(pre), 0.2)
        planar = torch.cat([act[..., 0], act[..., 1]], 1)
        planar = planar if noise is None else planar * noise
        ref = torch.complex(planar[:, :cout], planar[:, cout:])
    else:
        ref = cem_block(xref, kref, size, onesided=first, bn_params=params, noise=noise)
    close(out, ref)

    grad = torch.randn_like(ref)
    (out.conj() * grad).real.sum().backward()
    (ref.conj() * grad).real.sum().backward()
    close(xin.grad, xref.grad)
    if wf == "spatial":
        close(blk.em.weight.grad, kref.grad)
    if bn:
        close(blk.bn.weight.grad, ref_bn.weight.grad)
        close(blk.bn.bias.grad, ref_bn.bias.grad)
        close(blk.bn.running_var, ref_bn.running_var)


def test_eval_block_is_the_planar_chain():
    """In eval mode the block runs the layers one after the other (what the op counts see)
    and returns the planar spectrum: the EM product, BN with the running statistics."""
    blk = CEMBlock(2, 3, 3, (6, 6), wf="spatial", first=True, bn=True, activation="approx",
                   act_std=0.125, dropout=0.5).double()
    blk.bn.load_state_dict(make_bn(3).state_dict())
    blk.eval()
    x = half_spectrum(2, 2, 6, 6, 5)
    out = blk(x)
    assert out.shape == (2, 6, 6, 6) and not out.is_complex()
    y = cem_block(x, blk.em.weight, (6, 6), onesided=True, bn_params=None, noise=None)
    ref = nn.functional.batch_norm(torch.cat([y.real, y.imag], 1), blk.bn.running_mean,
                                   blk.bn.running_var, blk.bn.weight, blk.bn.bias, False, 0.0,
                                   blk.bn.eps)
    close(out, ref)
