"""CEMNet (Pan et al. 2022, arXiv 2204.06718): CNN counterparts trained in the frequency domain.

Reference: docs/methods.md, "CEMNet" (paper [P] vs authors' TF code [C]). Registered methods, one per row of the paper's Tables 1-2:

    cemnet                    EM + WF + BN + approximated dropout (the full model)
    cemnet-no-dropout         dropout_conv = dropout_fc = 0
    cemnet-no-bn-dropout      ... and bn = false (no BN anywhere, head included)
    cemnet-no-wf-bn-dropout   ... and wf = "none" (free H x W frequency weights)

Architectures mirror `methods.cnn` exactly in channels and kernels: `lenet5` (K=5; 6, 16
channels; head FC120 -> FC84 per branch), `vgg-small` / `vgg-large` (K=3; 64..512 channels;
1 or 2,2,2,3,3 EM layers per block; head FC512 per branch).

Layer by layer (input: real, harness-normalized images; the model applies fft2 itself):
- EM layer: Y = sum_cin conj(X) * W_p over the full fft2 spectrum, W_p = fft2 of the K x K
  kernel zero-padded to H x W at the top-left, no bias [C]. Spatially this is the circular
  cross-correlation read at the index-reversed position -n mod N (tests prove it). K is
  capped at the map size (VGG block 5 on 2 x 2 maps gets a full 2 x 2 kernel, as in [C]).
  He-normal (Keras: truncated, std sqrt(2/fan_in)) on the spatial kernel [P].
- Weight Fixation, option `wf`:
    spatial (default)  the parameter is the K x K kernel, FFT'd every forward pass [P memory
                       saving paragraph, C CIFAR code]; fixation holds by construction.
    projected          the parameter is the H x W spectrum (real view, (H,W,Cin,Cout,2)),
                       projected onto real K x K kernels after every optimizer step by
                       `after_optimizer_step()` [C MNIST code, which projects in the forward
                       pass before use: the same iteration W <- P(W - lr * step)].
    none               free frequency weights (the "-WF" ablation).
  `wf_blocks` = n >= 0 applies WF to the first n blocks only (the paper's CIFAR text says 3);
  -1 (default) = all blocks, as in the released code and the issue.
- Frequency BN: BatchNorm2d on Re and on Im, each with its own affine and running stats
  (eps 1e-3, momentum 0.01 = Keras defaults used by [C]); statistics per channel over
  (N, H, W), i.e. pooled over frequencies [C].
- Activation, option `activation`:
    approx (default)   approximated Leaky ReLU [P §3.1.4]: Re and Im times independent
                       N(1, act_std) noise in training, identity in eval; act_std = p/4 =
                       0.125 for the paper's p = 0.5.
    leaky              LeakyReLU(0.2) on Re and Im (the CEMNet-repo code, generation 1).
- Approximated dropout [P Eq. 17]: Re and Im times independent N(1, p/2) (p/2 is the std),
  drawn from the global torch RNG, fresh at every forward pass, identity in eval.
- Pool (`pool` = "max"): fft2(maxpool2(Re(ifft2(Y)))) [P, C]. `pool` = "freq-avg": the 2x2
  average pool of Re(ifft2(Y)) computed in the frequency domain (`methods.freqpool`:
  Hermitian part, Dirichlet product, spectral fold; no iFFT/FFT pair), not in the paper.
- Head: flatten Re and Im of the last pooled spectrum; each goes through its own
  FC -> BN1d -> LeakyReLU(0.2) -> approximated dropout stack (no real/imag cross terms [C]);
  concatenate; one FC to logits (the harness applies cross-entropy; [C] used softmax + CE).

Implementation (speed; the math above is unchanged, and tests/test_cemnet.py proves it):
- The EM product is one batched complex GEMM over frequencies, (F, B, Cin) @ (F, Cin, Cout),
  on contiguous frequency-major buffers (`methods.fourier.spectral_matmul`, a custom
  autograd Function with the closed-form backward); it never forms B x Cin x Cout x H x W.
- The kernel spectrum is computed with truncated DFT matrices straight into that layout
  (`kernel_spectrum`), not by padding + FFT over Cin*Cout tiny transforms.
- One-sided trick: with wf=spatial, the first EM of every block sees the spectrum of a
  real map (the input image or a pooled map) and a real kernel, so its output is
  Hermitian: it is computed on the rfft2 half (W//2+1 columns) and completed by symmetry
  (the math of `hermitian_fill`). This is exact as a function of the real input and kernel
  and saves ~40% of the GEMM work. Stages pass the rfft2 half between the pool and the
  next EM. Layers after the EM (BN, noise, activation) break the symmetry, so they see the
  full spectrum, as in the paper.
- Eval mode (and the op counts, which are taken in eval mode) runs the layers one after
  the other on the "planar" real spectrum (B, 2C, H, W) (Re channels, then Im): one
  native BatchNorm2d(2C), the EM product written planar straight from the GEMM buffer
  (`spectral_matmul_planar`). Training runs the stage after the EM product as one
  autograd Function over the GEMM's frequency-major output (`methods.freq_stage`, issue
  26): Hermitian completion, BN with batch statistics from the half grid, and the noise
  in few passes; the last block of a stage hands the max pool the one-sided half of its
  output's Hermitian part, so Re(ifft2(Y)) is an irfft2 (half the transform work of the
  complex ifft2, exact: Re(ifft2(Y)) is the inverse transform of Y's Hermitian part).
  tests/test_freq_stage.py proves both against the layer-by-layer reference in float64.
- Noise: one N(1, std) draw per real number (Re and Im independent) and std, the block's
  approximated Leaky ReLU then its approximated dropout, multiplied together before use
  (`noise_factor`). The fused training block draws them in its frequency-major layout
  (since issue 26; before, in the planar layout: the same distribution, other numbers for
  a seed).
- No step builds a tensor on the host or synchronizes with it (DFT matrices and index
  maps are cached per size, dtype and device): a CUDA graph captures the whole step.

Paper vs code disagreements and the choice made here:
1. Dropout rate: paper "p = 0.5 for all layers"; MNIST code 0.4 (conv) / 0.5 (FC). Default
   0.5 everywhere (paper); `--set dropout_conv=0.4` reproduces the MNIST code.
2. Approx. Leaky ReLU: paper N(1, p/4) noise; code generation 2 uses N(1, p/6) in train AND
   eval (frozen), generation 1 a real LeakyReLU(0.2) on Re/Im. Default: paper (approx,
   std 0.125, train only); `activation=leaky` gives generation 1. Eq. 23's pdf prefactor is
   not implemented (it is a density constant, not a gain).
3. Dropout noise: the code draws numpy noise at tf.function trace time, so its mask is
   frozen for the whole training; we draw fresh noise every step (the paper's meaning).
4. Weight storage/WF: paper says spatial kernels are stored; MNIST code stores frequency
   weights and projects. Default `spatial`; `projected` reproduces the MNIST code's scheme.
   With RMSprop the two are not the same trajectory.
5. Initialization: paper he_normal then FFT; MNIST code draws separate std-1 kernels for Re
   and Im. We use he_normal (paper, CIFAR code) for every `wf`.
6. MNIST head: the code flattens the pre-pool 14x14 spectra (a bug, inconsistent with the
   paper's op count); we flatten the pooled 7x7x16 map, like the CNN. On VGG the last map
   is 1x1, so the imaginary branch sees zeros (as in the code).
7. Ablations: the paper does not say whether "-BN" removes the head's BN; we remove all BN.
   "-Dropout" keeps the approximated Leaky ReLU (a separate layer in the paper).
8. Large VGG: paper 2,2,2,3,3 EM layers (matches its op count); commented-out code has
   2,2,3,3,3. We follow the paper (and `methods.cnn`).
Training recipe (RMSprop, lr 0.004, batch 100, cosine to 1e-7; the code's 1-epoch warm-up
and per-tensor clip 15 on MNIST are the harness options warmup_epochs and clip_norm).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods import Option, register, with_defaults
from methods.cnn import ARCHS, LEAKY_SLOPE, VGG_CHANNELS, VGG_CONVS, default_arch, pooled_size
from methods.fourier import (from_planar, hermitian_fill, kernel_spectrum,
                             spectral_matmul_fm, spectral_matmul_planar, spectral_maxpool,
                             to_planar, wf_project)
from methods.freq_stage import complete_norm_noise
from methods.freqpool import FreqAvgPool

WF_MODES = ("spatial", "projected", "none")
ACTIVATIONS = ("approx", "leaky")
POOLS = ("max", "freq-avg")
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch momentum = 1 - Keras momentum (0.99)


# --------------------------------------------------------------------------- layers
#
# Inside a block the spectrum is carried "planar": a real (B, 2C, H, W) tensor holding the
# real parts in channels [0, C) and the imaginary parts in [C, 2C) (`methods.fourier`). The
# paper's per-part layers (two BNs, split Leaky ReLU, independent Re/Im noise) are then
# single native real layers on contiguous memory; the complex form is used where the math
# mixes the parts (EM product, inverse FFT in the pool).

def he_normal_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    """Keras HeNormal: a normal truncated at 2 std, scaled so that the std of the result
    is sqrt(2/fan_in). Uses the global torch RNG (and works on meta tensors)."""
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    return nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std)


def noise_factor(shape, dtype, device, *stds: float) -> torch.Tensor:
    """The product of independent N(1, std) draws, one per element of a contiguous real
    tensor of `shape` and per std, in that order. The noise comes from the global torch RNG
    of the device: fresh at every call, reproducible under a seed. `normal_(1, std)` draws
    N(1, std) in one pass; several stds (the block's approximated Leaky ReLU, then its
    approximated dropout) are drawn in that order and multiplied together, so that the
    noisy tensor is read and written once (and the backward is one product too)."""
    noise = torch.empty(shape, dtype=dtype, device=device).normal_(1.0, stds[0])
    for std in stds[1:]:
        noise.mul_(torch.empty(shape, dtype=dtype, device=device).normal_(1.0, std))
    return noise


def spectrum_noise(b: int, c: int, h: int, w: int, dtype, device, *stds: float,
                   frequency_major: bool = True) -> torch.Tensor:
    """`noise_factor` for a complex (B, C, H, W) spectrum, one draw per real and per
    imaginary part (independent), laid out as the real view of the spectrum it multiplies:
    frequency-major (H*W, B, C, 2) (`methods.freq_stage`), or (B, C, H, W, 2). Drawn in
    that layout (issue 26: the training block's draws are ordered frequency-major, not
    planar as before, so seeded runs draw other numbers than older code for the same
    distribution; a planar draw would cost one more pass over the noise)."""
    shape = (h * w, b, c, 2) if frequency_major else (b, c, h, w, 2)
    return noise_factor(shape, dtype, device, *stds)


def multiplicative_noise(x: torch.Tensor, *stds: float) -> torch.Tensor:
    """x times `noise_factor` of x's shape (for a planar spectrum the Re and Im draws are
    therefore independent)."""
    return x * noise_factor(x.shape, x.dtype, x.device, *stds)


class ApproxDropout(nn.Module):
    """Approximated dropout [P Eq. 17]: times N(1, p/2) in training; identity in eval."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.std = self.p / 2

    def forward(self, x):
        if not self.training or self.std == 0:
            return x
        return multiplicative_noise(x, self.std)

    def extra_repr(self):
        return f"p={self.p}, std={self.std}"


class ApproxLeakyReLU(nn.Module):
    """Approximated Leaky ReLU [P §3.1.4]: times N(1, std) in training; identity in eval."""

    def __init__(self, std: float):
        super().__init__()
        self.std = float(std)

    def forward(self, x):
        if not self.training or self.std == 0:
            return x
        return multiplicative_noise(x, self.std)

    def extra_repr(self):
        return f"std={self.std}"


class FreqBatchNorm(nn.BatchNorm2d):
    """Frequency BN on a planar (B, 2C, H, W) spectrum: one BatchNorm2d per part and channel,
    i.e. exactly two independent BatchNorm2d(C) on Re and on Im (affine [0, C) = Re branch,
    [C, 2C) = Im branch). Keras defaults of the authors' code: eps 1e-3, momentum 0.99."""

    def __init__(self, channels: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM):
        super().__init__(2 * channels, eps=eps, momentum=momentum)


class EMLayer(nn.Module):
    """Element-wise multiplication layer: Y = sum_cin conj(X) * fft2(pad_tl(w)), no bias.

    Input: complex (B, Cin, H, W) spectrum, or with `onesided_input` the rfft2 half
    (B, Cin, H, W//2+1) of the spectrum of a real map. Output: planar (B, 2*Cout, H, W).
    `wf`: "spatial" (parameter `weight` = (Cout, Cin, kh, kw) real kernel, like nn.Conv2d),
    "projected" or "none" (parameter `weight` = (H, W, Cin, Cout, 2), the real view of the
    frequency weights, stored frequency-major). With wf="spatial" and a one-sided input
    both factors are spectra of real signals, so the product is computed on the half grid
    and completed by symmetry.
    """

    def __init__(self, cin: int, cout: int, k: int, size: tuple[int, int], wf: str = "spatial",
                 onesided_input: bool = False):
        super().__init__()
        if wf not in WF_MODES:
            raise ValueError(f"unknown wf {wf!r}")
        self.cin, self.cout, self.size, self.wf = cin, cout, tuple(size), wf
        self.onesided_input = onesided_input
        self.kh, self.kw = min(k, size[0]), min(k, size[1])
        kernel = he_normal_(torch.empty(cout, cin, self.kh, self.kw), cin * self.kh * self.kw)
        if wf == "spatial":
            self.weight = nn.Parameter(kernel)
        else:
            spec = kernel_spectrum(kernel, self.size)  # (Cin, Cout, H, W) view, freq-major
            self.weight = nn.Parameter(torch.view_as_real(spec.permute(2, 3, 0, 1)).contiguous())

    def spectrum(self, onesided: bool = False) -> torch.Tensor:
        """The complex weights (Cin, Cout, H, W) (or the rfft2 half when `onesided`), as a
        view of a frequency-major buffer."""
        if self.wf != "spatial":
            return torch.view_as_complex(self.weight).permute(2, 3, 0, 1)
        return kernel_spectrum(self.weight, self.size, onesided=onesided)

    def forward(self, x):
        """x: complex spectrum (B, Cin, H, W) (or its rfft2 half with `onesided_input`), or a
        planar real spectrum (B, 2 Cin, H, W) (the previous block's output)."""
        width = self.size[1]
        if self.onesided_input and self.wf == "spatial":
            return spectral_matmul_planar(x, self.spectrum(onesided=True), conj_input=True,
                                          full_width=width)
        if self.onesided_input:
            x = hermitian_fill(x, width)
        return spectral_matmul_planar(x, self.spectrum(), conj_input=True)

    def freq_major(self, x) -> torch.Tensor:
        """The product before its completion and layout: frequency-major (F', B, Cout)
        complex, F' = H*(W//2+1) (the one-sided half, wf="spatial" with a one-sided input)
        or H*W (`methods.freq_stage` takes it from there)."""
        if self.onesided_input and self.wf == "spatial":
            return spectral_matmul_fm(x, self.spectrum(onesided=True), conj_input=True)
        if self.onesided_input:
            x = hermitian_fill(x, self.size[1])
        return spectral_matmul_fm(x, self.spectrum(), conj_input=True)

    @torch.no_grad()
    def project_(self):
        """Weight Fixation for wf="projected": W <- fft2(mask * Re(ifft2(W)))."""
        if self.wf == "projected":
            w = self.spectrum()
            w.copy_(wf_project(w, (self.kh, self.kw)))  # writes through the view

    def extra_repr(self):
        return (f"{self.cin}, {self.cout}, kernel=({self.kh}, {self.kw}), size={self.size}, "
                f"wf={self.wf}, onesided_input={self.onesided_input}")


class CEMBlock(nn.Module):
    """EM -> [frequency BN] -> activation -> approximated dropout.

    Input: the one-sided complex spectrum (first block of a stage) or the output of the
    previous block. In training the stage after the EM product runs fused
    (`methods.freq_stage`) and the output is the complex (B, C, H, W) spectrum; in eval
    mode (no noise, running statistics) the layers above run one after the other on the
    planar (B, 2C, H, W) spectrum, which is also what the op counts see."""

    def __init__(self, cin, cout, k, size, *, wf, first, bn, activation, act_std, dropout):
        super().__init__()
        self.first = first
        self.em = EMLayer(cin, cout, k, size, wf, onesided_input=first)
        self.bn = FreqBatchNorm(cout) if bn else nn.Identity()
        self.act = ApproxLeakyReLU(act_std) if activation == "approx" else nn.LeakyReLU(LEAKY_SLOPE)
        self.drop = ApproxDropout(dropout) if dropout > 0 else nn.Identity()

    def _stds(self, with_act: bool) -> tuple[float, ...]:
        """The noise stds of the block in draw order (approximated Leaky ReLU, dropout)."""
        act = (self.act.std,) if with_act and isinstance(self.act, ApproxLeakyReLU) else ()
        drop = (self.drop.std,) if isinstance(self.drop, ApproxDropout) else ()
        return tuple(s for s in act + drop if s)

    @property
    def fusable(self) -> bool:
        """Whether the stage after the EM product is one fused op (noise activation; a
        Leaky ReLU sits between the BN and the noise)."""
        return not isinstance(self.act, nn.LeakyReLU)

    def forward(self, x, hermitian_half: bool = False):
        """`hermitian_half` (training, `fusable` blocks): return the one-sided half of the
        output's Hermitian part instead, what the max pool's irfft2 needs
        (`methods.freq_stage`)."""
        if not self.training:
            return self.drop(self.act(self.bn(self.em(x))))
        y = self.em.freq_major(x)
        h, w = self.em.size
        bn = self.bn if isinstance(self.bn, FreqBatchNorm) else None
        # N(1, std) draws per real number (Re and Im independent), as the layers draw them
        stds = self._stds(with_act=self.fusable)
        b, c = y.shape[1:]
        noise = None
        if stds:    # laid out as the complex spectrum it multiplies (Re, Im adjacent)
            noise = spectrum_noise(b, c, h, w, y.real.dtype, y.device, *stds,
                                   frequency_major=self.fusable)
        if self.fusable:
            return complete_norm_noise(y, h, w, bn=bn, noise=noise, hermitian_half=hermitian_half)
        if hermitian_half:
            raise ValueError("hermitian_half needs a fusable block (activation=approx)")
        # split Leaky ReLU: per real number, in any layout
        z = self.act(torch.view_as_real(complete_norm_noise(y, h, w, bn=bn)))
        if noise is not None:
            z = z.mul_(noise)
        return torch.view_as_complex(z)


class SpectralMaxPool(nn.Module):
    """Complex (or planar) spectrum -> one-sided complex spectrum of maxpool(Re(ifft2(Y)))."""

    def __init__(self, kernel: int = 2):
        super().__init__()
        self.kernel = kernel

    def forward(self, x):
        return spectral_maxpool(x if x.is_complex() else from_planar(x), self.kernel,
                                onesided=True)

    def from_hermitian_half(self, half: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The same output from the one-sided half of Y's Hermitian part (Re(ifft2(Y)) =
        irfft2 of it: half the transform work of the complex ifft2)."""
        spatial = torch.fft.irfft2(half, s=size)
        return torch.fft.rfft2(F.max_pool2d(spatial, self.kernel))


def head_branch(fin: int, hidden: tuple[int, ...], bn: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fout in hidden:
        layers.append(nn.Linear(fin, fout))
        if bn:
            layers.append(nn.BatchNorm1d(fout, eps=BN_EPS, momentum=BN_MOMENTUM))
        layers.append(nn.LeakyReLU(LEAKY_SLOPE))
        if dropout > 0:
            layers.append(ApproxDropout(dropout))
        fin = fout
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- model

def stage_plan(arch: str) -> tuple[list[tuple[int, int, int]], tuple[int, ...]]:
    """[(channels, EM layers, kernel)] per block, and the head's hidden sizes."""
    if arch == "lenet5":
        return [(6, 1, 5), (16, 1, 5)], (120, 84)
    return [(c, n, 3) for c, n in zip(VGG_CHANNELS, VGG_CONVS[arch])], (512,)


class CEMNet(nn.Module):
    def __init__(self, arch, input_shape, num_classes, *, wf, wf_blocks, activation, act_std,
                 dropout_conv, dropout_fc, bn, pool):
        super().__init__()
        c, h, w = input_shape
        plan, hidden = stage_plan(arch)
        pooled_size(h, len(plan), arch), pooled_size(w, len(plan), arch)  # size check
        self.arch = arch
        self.choices = dict(wf=wf, wf_blocks=wf_blocks, activation=activation, act_std=act_std,
                            dropout_conv=dropout_conv, dropout_fc=dropout_fc, bn=bn, pool=pool)
        self.stages = nn.ModuleList()
        for s, (cout, n_em, k) in enumerate(plan):
            layer_wf = wf if (wf_blocks < 0 or s < wf_blocks) else "none"
            blocks = []
            for i in range(n_em):
                blocks.append(CEMBlock(c, cout, k, (h, w), wf=layer_wf, first=(i == 0), bn=bn,
                                       activation=activation, act_std=act_std,
                                       dropout=dropout_conv))
                c = cout
            pool_layer = (SpectralMaxPool(2) if pool == "max" else
                          FreqAvgPool((h, w), 2, onesided=True, planar_input=True))
            self.stages.append(nn.Sequential(*blocks, pool_layer))
            h, w = h // 2, w // 2
        self.out_size = (h, w)
        flat = c * h * w
        self.head_re = head_branch(flat, hidden, bn, dropout_fc)
        self.head_im = head_branch(flat, hidden, bn, dropout_fc)
        self.classifier = nn.Linear(2 * hidden[-1], num_classes)

    def em_layers(self) -> list[EMLayer]:
        return [m for m in self.modules() if isinstance(m, EMLayer)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Full complex spectrum (B, C, h, w) of the last pooled map."""
        spec = torch.fft.rfft2(x)  # one-sided half of fft2(x): x is real
        for stage in self.stages:
            *blocks, pool = stage
            if self.training and isinstance(pool, SpectralMaxPool) and blocks[-1].fusable:
                # the last block hands the pool the Hermitian half (methods.freq_stage)
                for block in blocks[:-1]:
                    spec = block(spec)
                spec = pool.from_hermitian_half(blocks[-1](spec, hermitian_half=True),
                                                blocks[-1].em.size)
            else:
                spec = stage(spec)
        return hermitian_fill(spec, self.out_size[1])

    def forward(self, x):
        planar = to_planar(self.features(x))
        c = planar.shape[1] // 2
        re = self.head_re(planar[:, :c].flatten(1))
        im = self.head_im(planar[:, c:].flatten(1))
        return self.classifier(torch.cat([re, im], dim=1))

    def after_optimizer_step(self):
        for layer in self.em_layers():
            layer.project_()

    def describe(self) -> dict:
        ch = self.choices
        return {
            **ch,
            "em_product": "sum_cin conj(X) * fft2(pad_topleft(w))",
            "layer_wf": [layer.wf for layer in self.em_layers()],
            "kernels": [[layer.kh, layer.kw] for layer in self.em_layers()],
            "act_noise_std": ch["act_std"] if ch["activation"] == "approx" else 0.0,
            "leaky_slope_conv": LEAKY_SLOPE if ch["activation"] == "leaky" else None,
            "dropout_noise_std_conv": ch["dropout_conv"] / 2,
            "dropout_noise_std_fc": ch["dropout_fc"] / 2,
            "noise": "fresh N(1, std) per step from the torch RNG; identity in eval",
            "bn": {"enabled": ch["bn"], "eps": BN_EPS, "momentum": BN_MOMENTUM},
            "head_input": "Re/Im of the last pooled spectrum",
        }


# --------------------------------------------------------------------------- registry

OPTIONS = {
    "wf": Option("spatial", choices=WF_MODES),
    "wf_blocks": Option(-1, interval="[-1, inf)",
                        use="-1 (all blocks) or a block count >= 0 (e.g. --set wf_blocks=3)"),
    "activation": Option("approx", choices=ACTIVATIONS),
    "act_std": Option(0.125, interval="[0, 1]"),
    # the approximated dropout N(1, p/2) is defined for p in [0, 1] (the cnn's Bernoulli: [0, 1))
    "dropout_conv": Option(0.5, interval="[0, 1]"),
    "dropout_fc": Option(0.5, interval="[0, 1]"),
    "bn": Option(True),
    "pool": Option("max", choices=POOLS),
}
ABLATIONS = {
    "cemnet": ({}, "CEMNet: EM layers + WF + frequency BN + approximated dropout/LReLU"),
    "cemnet-no-dropout": ({"dropout_conv": 0.0, "dropout_fc": 0.0},
                          "CEMNet - Dropout (paper ablation row)"),
    "cemnet-no-bn-dropout": ({"dropout_conv": 0.0, "dropout_fc": 0.0, "bn": False},
                             "CEMNet - BN - Dropout (paper ablation row)"),
    "cemnet-no-wf-bn-dropout": ({"dropout_conv": 0.0, "dropout_fc": 0.0, "bn": False,
                                 "wf": "none"},
                                "CEMNet - WF - BN - Dropout (paper ablation row)"),
}


def build_cemnet(arch, input_shape, num_classes, **hp):
    # the registry checked every option; the rates and the noise std go in as floats
    hp.update({k: float(hp[k]) for k in ("dropout_conv", "dropout_fc", "act_std") if k in hp})
    return CEMNet(arch, tuple(input_shape), num_classes, **hp)


for _name, (_over, _desc) in ABLATIONS.items():
    register(_name, archs=ARCHS, options=with_defaults(OPTIONS, **_over), default_arch=default_arch,
             description=_desc)(build_cemnet)
