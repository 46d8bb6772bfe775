"""The fused CEMNet stage (methods/freq_stage.py) and the CEMNet training block equal the
unfused complex / planar computation they replace (issue 26), in float64.

The reference is tests/reference_layers.py: the old formulas written with plain torch ops
(Hermitian completion by index arithmetic, the planar two-branch F.batch_norm, the noise
product), independent of `methods`. Values agree to 1e-12 (relative to the output's
scale), gradients of every input and parameter too (autograd of the reference against the
hand-written backward), and the running statistics as nn.BatchNorm2d updates them. The
noise is drawn from the same seed on both sides: the block draws one N(1, std) per real
number of the spectrum, in the layout it uses (frequency-major for a fused block), and the
reference applies the same numbers in its planar layout.
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


def drawn_noise(b, c, h, w, stds, frequency_major=True):
    """The block's noise as it draws it, one tensor per std in order, per real number of
    the spectrum in its layout: frequency-major (H*W, B, C, 2) for a fused block, else
    (B, C, H, W, 2); returned as the planar (B, 2C, H, W) factor of the same numbers."""
    shape = (h * w, b, c, 2) if frequency_major else (b, c, h * w, 2)
    noise = torch.ones(shape, dtype=DT)
    for std in stds:
        noise = noise * torch.empty(shape, dtype=DT).normal_(1.0, std)
    if frequency_major:
        noise = noise.permute(1, 2, 0, 3)                  # (B, C, H*W, 2)
    return noise.permute(0, 3, 1, 2).reshape(b, 2 * c, h, w)


def fm_noise(noise):
    """Planar (B, 2C, H, W) noise -> the frequency-major (H*W, B, C, 2) layout it is used in."""
    if noise is None:
        return None
    b, c2, h, w = noise.shape
    return noise.view(b, 2, c2 // 2, h, w).permute(3, 4, 0, 2, 1).contiguous().view(h * w, b, c2 // 2, 2)


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
@pytest.mark.parametrize("half", ["real-map", "any", False])
@pytest.mark.parametrize("with_bn", [True, False])
@pytest.mark.parametrize("with_noise", [True, False])
@pytest.mark.parametrize("herm", [False, True])
def test_fused_stage_equals_planar_reference(hw, half, with_bn, with_noise, herm):
    """half="real-map": the one-sided half of a real map's spectrum (what the model feeds);
    half="any": an arbitrary complex half, completed by the same rule (its column 0 and
    W/2 entries are then not conjugate-symmetric, so the imaginary mean is not 0)."""
    h, w = hw
    b, c = 3, 2
    noisy = torch.randn(b, c, h, w, dtype=DT) + 1j * torch.randn(b, c, h, w, dtype=DT)
    z = half_spectrum(b, c, h, w, 1) if half == "real-map" else \
        noisy[..., :w // 2 + 1] if half == "any" else torch.fft.fft2(noisy)
    full = hermitian_complete(z, w) if half else z
    noise = planar_noise(b, c, h, w, (0.3, 0.2)) if with_noise else None
    bn, ref_bn = (make_bn(c), make_bn(c)) if with_bn else (None, None)

    y = to_fm(z).requires_grad_()
    out = complete_norm_noise(y, h, w, bn=bn, noise=fm_noise(noise), hermitian_half=herm)
    zr = z.clone().requires_grad_()
    params = None if ref_bn is None else (ref_bn.weight, ref_bn.bias, ref_bn.running_mean,
                                          ref_bn.running_var, ref_bn.momentum, ref_bn.eps)
    ref = cem_stage(hermitian_complete(zr, w) if half else zr, params, noise)
    assert ref.shape == full.shape and out.is_contiguous()
    if herm:   # the spectrum of Re(ifft2(Z)), one-sided
        ref = torch.fft.rfft2(torch.fft.ifft2(ref).real)
        assert out.shape == (b, c, h, w // 2 + 1)
        close(torch.fft.irfft2(out, s=(h, w)), torch.fft.ifft2(hermitian_complete(ref, w)).real)
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
@pytest.mark.parametrize("herm", [False, True])
def test_fused_stage_gradcheck(hw, herm):
    """The hand-written backward against finite differences, for y, the BN weight and bias."""
    h, w = hw
    b, c = 2, 2
    noise = fm_noise(planar_noise(b, c, h, w, (0.3,)))
    y = to_fm(half_spectrum(b, c, h, w, 3)).requires_grad_()
    ref = make_bn(c)

    def f(yy, ww, bb):
        bn = SimpleNamespace(weight=ww, bias=bb, running_mean=ref.running_mean.clone(),
                             running_var=ref.running_var.clone(), momentum=0.01, eps=1e-3,
                             track_running_stats=True, affine=True,
                             num_batches_tracked=torch.zeros((), dtype=torch.long))
        return torch.view_as_real(complete_norm_noise(yy, h, w, bn=bn, noise=noise,
                                                      hermitian_half=herm))

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
    noise = drawn_noise(b, cout, *size, stds, activation == "approx") if stds else None
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


def reference_cemnet_forward(model, x):
    """CEMNet's training forward from tests/reference_layers.py: per stage the reference
    blocks, then fft2(pool(Re(ifft2(.)))) one-sided (max or average pool); the model's
    own head (standard layers). Draws its noise as the blocks do (frequency-major for a
    fused block; a Leaky ReLU block draws its dropout noise in (B, C, H, W, 2) order)."""
    spec = torch.fft.rfft2(x)
    leaky = model.choices["activation"] == "leaky"
    for stage in model.stages:
        *blocks, _ = stage
        for i, blk in enumerate(blocks):
            size, b, c = blk.em.size, spec.shape[0], blk.em.cout
            stds = blk._stds(with_act=not leaky)
            bn = blk.bn if model.choices["bn"] else None
            params = None if bn is None else (bn.weight, bn.bias, bn.running_mean,
                                              bn.running_var, bn.momentum, bn.eps)
            noise = drawn_noise(b, c, *size, stds, not leaky) if stds else None
            if not leaky:
                spec = cem_block(spec, blk.em.weight, size, onesided=(i == 0), bn_params=params,
                                 noise=noise)
                continue
            pre = cem_block(spec, blk.em.weight, size, onesided=(i == 0), bn_params=params,
                            noise=None)
            act = nn.functional.leaky_relu(torch.view_as_real(pre), 0.2)
            planar = torch.cat([act[..., 0], act[..., 1]], 1)
            planar = planar if noise is None else planar * noise
            spec = torch.complex(planar[:, :c], planar[:, c:])
        spatial = torch.fft.ifft2(spec).real
        pool = nn.functional.max_pool2d if model.choices["pool"] == "max" else \
            nn.functional.avg_pool2d
        spec = torch.fft.rfft2(pool(spatial, 2))
    full = hermitian_complete(spec, model.out_size[1])
    re = model.head_re(full.real.flatten(1))
    im = model.head_im(full.imag.flatten(1))
    return model.classifier(torch.cat([re, im], 1))


MODELS = [("cemnet", "lenet5", (1, 12, 12), {}), ("cemnet", "vgg-small", (3, 32, 32), {}),
          ("cemnet", "lenet5", (1, 12, 12), {"pool": "freq-avg"}),
          ("cemnet", "lenet5", (1, 12, 12), {"activation": "leaky"}),
          ("cemnet-no-bn-dropout", "lenet5", (1, 12, 12), {}),
          ("cemnet", "vgg-large", (3, 32, 32), {})]


@pytest.mark.parametrize("method,arch,shape,hp", MODELS,
                         ids=[f"{m}-{a}-{'-'.join(map(str, h.values()))}" for m, a, _, h in MODELS])
def test_training_model_equals_reference(method, arch, shape, hp):
    """The whole CEMNet training step (fused stages, Hermitian-half pools) against the
    reference forward with the same parameters and noise: logits and every gradient."""
    import methods
    info = methods.get(method)
    hp = {**info.hparam_defaults(arch), **hp}
    torch.manual_seed(0)
    model = info.builder(arch, shape, 10, **hp).double().train()
    twin = info.builder(arch, shape, 10, **hp).double().train()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2 if arch == "vgg-large" else 4, *shape, dtype=DT)
    torch.manual_seed(11)
    out = model(x)
    torch.manual_seed(11)
    ref = reference_cemnet_forward(twin, x)
    close(out, ref)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        close(p.grad, q.grad)
    for (name, buf), other in zip(model.named_buffers(), twin.buffers()):
        if name.endswith("num_batches_tracked"):  # F.batch_norm in the reference keeps no count
            assert buf.item() == 1
        else:                                      # running statistics
            close(buf, other)


def test_fused_stage_ignores_autocast():
    """Under mixed precision the stage keeps its input dtype (its BatchNorm statistics are
    GEMVs that autocast would otherwise run in bfloat16): the same numbers as without."""
    h, w, b, c = 8, 8, 3, 2
    y = to_fm(half_spectrum(b, c, h, w, 4)).to(torch.complex64).requires_grad_()
    noise = fm_noise(planar_noise(b, c, h, w, (0.3,), dtype=torch.float32))
    outs, grads = [], []
    for mixed in (False, True):
        bn = make_bn(c).float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            z = complete_norm_noise(y, h, w, bn=bn, noise=noise, hermitian_half=True)
            (g,) = torch.autograd.grad(z.abs().square().sum(), y)
        assert z.dtype == torch.complex64
        outs.append(z)
        grads.append(g)
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
