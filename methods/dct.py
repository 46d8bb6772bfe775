"""DCT channel selection (Xu et al., "Learning in the Frequency Domain", CVPR 2020; DCTNet),
scaled to MNIST / CIFAR-10. Method `dct-select`.

Reference: docs/methods.md, "DCT channel selection". Tags: [C] released DCTNet code, [P] paper,
[INF] our choice for the small-image scaling (no source gives one).

Input pipeline (fixed, no parameters; a fixed orthonormal "stem"):
1. Colour. RGB -> YCbCr with the JFIF/BT.601 matrix [C: libjpeg], full-resolution chroma (no
   4:2:0), as DCTNet's 2x chroma upscale achieves. Grayscale input: the single channel is Y.
2. Optional bilinear x2 upsampling (`upsample` = 2, align_corners=False, edge-clamped), the
   analogue of DCTNet's 448 px source for a 224 px network [C].
3. Blockwise orthonormal DCT-II on b x b blocks (`block` = b), as a stride-b convolution with
   the b^2 basis images [B.6: "not a JPEG round trip"]. Channel c*b^2 + k, k = b*u + v
   (u vertical, v horizontal frequency; row-major like libjpeg, not zig-zag), components in
   the order Y, Cb, Cr [C]. Steps 2-3 are fused into one fixed convolution (kernel b/2 + 2,
   stride b/2, replicate padding 1): bilinear x2 followed by the block DCT is linear, and
   the fused filters are exactly DCT(upsample) (tests check it against F.interpolate).
4. Per-channel standardisation with training-split statistics (DCTNet uses ImageNet
   statistics of the train set [C]). Mechanism [INF]: the harness hands models normalised
   pixels and no statistics, so the model computes mean and std of every DCT channel on the
   first training batch it sees (batch_size images of the training split x (rH/b)(rW/b)
   positions per channel) and freezes them in buffers (saved in checkpoints, so a resumed
   run is identical). Before that batch (e.g. op counting) the buffers are 0 / 1.
   Why this is honest: the harness's per-channel pixel normalisation (x - m_c) / s_c is
   affine, the DCT is linear, so for grayscale the DCT of the normalised image is the DCT of
   the raw image up to one scale and a DC offset, both removed by this standardisation:
   exactly DCTNet's normalised input. For RGB the JFIF matrix acts on the normalised
   channels, i.e. on R/s_R, G/s_G, B/s_B (offsets only move DC channels, removed again);
   on CIFAR-10 the channel stds are 0.247/0.243/0.261, so luma and chroma are the JFIF ones
   up to a per-channel reweighting of about 7 % at most. (An exact variant would need the
   harness to pass the pixel statistics to the model; not needed for the selection
   experiment.)

Backbones ("the same backbone family as the RGB baseline, with the layers before the
insertion point removed" [C: ResNet-50 stem + maxpool dropped, the first 1x1s take C]):
- `resnet20` (CIFAR ResNet, He et al. 2016: 3x3 stem 16, stages of 3 basic blocks with 16,
  32, 64 channels at 32, 16, 8 px, GAP, FC; projection shortcuts (1x1 conv + BN) where the
  shape changes). DCT default [INF, the closest analogue of DCTNet]: b = 4 on the
  2x upsampled image, 48 x 16 x 16 into stage 2 (stem and stage 1 removed); stage 2's first
  block takes C input channels at stride 1, with a 1x1 projection shortcut C -> 32. b = 4,
  upsample = 1 (48 x 8 x 8) enters stage 3 instead.
- `lenet5` (the modified LeNet-5 of `methods.cnn`). DCT default [INF]: b = 2, no upsampling,
  4 x 14 x 14 (grayscale) into the second conv (first conv + pool removed); its 5x5 conv
  takes C channels. (b = 4 without upsampling would give 16 x 7 x 7, i.e. after both convs:
  no conv left; b = 4 with upsample = 2 gives 16 x 14 x 14 and is accepted.)
- `input=rgb`: the full backbone on pixels (the RGB / grayscale baseline of the suites).
  For `lenet5` this is exactly `methods.cnn.lenet5` (built by it). Its dropout options
  default to 0 here (the `cnn` method uses 0.4 / 0.5; `--set dropout_conv=0.4 --set
  dropout_fc=0.5` gives exactly that net): with dropout before BatchNorm the short budgets
  showed a large train/eval gap (variance shift), and removing the first conv would also
  remove one dropout layer from the DCT net only, confounding the input comparison.

Channel selection (`select`):
- `static`: keep the channels of `subset` (input channels sliced; the first layer is built
  with that many inputs). `subset` = "all"; a count from the table below; or an explicit
  comma-separated channel list (e.g. one derived from a gate run by
  reports/dct_subset_from_gate.py).
- `gate` [C: GateModule192 + gumbel.py]: GAP -> 1x1 conv (C -> C, bias) + BN + ReLU ->
  grouped 1x1 conv (C -> 2C, groups C: two logits (off, on) per channel) -> Gumbel-softmax,
  hard straight-through, tau = 1 -> x * gate. Init: two-logit weights N(0, 0.001), biases
  (off 0.1, on 2.0), so P(on) = e^2 / (e^2 + e^0.1) = 0.870 at init; other gate layers
  Kaiming-normal, BN weight 1. Penalty (via `auxiliary_loss`): lambda * sum_c gate_c,
  averaged over the batch [P: L = L_acc + lambda sum F(x_i); normalisation not given, B.3].
  Evaluation: deterministic argmax of the logits (on iff logit_on > logit_off) [B.6
  recommendation; the released code keeps Gumbel noise at evaluation].

Static subset tables (down-sets in (u, v), per component; counts are the DCTNet fractions
12.5 / 25 / 33 % of 192 = 24 / 48 / 64 scaled to the channel count):
- 3 components, b = 4 (48 channels): 6 = Y u,v<2 (4) + Cb (0,0) + Cr (0,0) (the
  released code's "6" pattern); 12 = Y u+v<=2 (6) + Cb, Cr u+v<=1 (3 each); 16 = Y u+v<=3
  (10) + Cb, Cr u+v<=1 (3 each). [INF: Y:chroma ~ 2:1 per component, as DCTNet's 16:4:4 and
  32:8:8 keep more luma.]
- 1 component, b = 2 (4 channels): 1 = DC; 3 = u+v<=1; 4 = all.
- 1 component, b = 4 (16 channels): 3 = u+v<=1; 4 = u,v<2; 6 = u+v<=2; 10 = u+v<=3.
- 3 components, b = 2 (12 channels): 3 = the DC of each; 5 = Y u+v<=1 + Cb, Cr DC.
Every table is checked for counts, uniqueness and the down-set property by the tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.errors import UserError
from methods import Option, register
from methods.cnn import conv_block, fc_block, lenet5, pooled_size
from methods.resnet import resnet20

ARCHS = ("lenet5", "resnet20")
INPUTS = ("dct", "rgb")
SELECTS = ("static", "gate")

# JFIF / BT.601 full range (libjpeg). Rows: Y, Cb, Cr. Offsets (0, 128, 128) on 0..255 data.
RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                             [-0.168736, -0.331264, 0.5],
                             [0.5, -0.418688, -0.081312]], dtype=torch.float64)
YCBCR_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)

GATE_OFF_BIAS, GATE_ON_BIAS, GATE_WEIGHT_STD = 0.1, 2.0, 0.001


# --------------------------------------------------------------------------- fixed transforms

def dct_matrix(n: int, dtype=torch.float64) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): D[u, t] = c_u sqrt(2/n) cos(pi (2t+1) u / (2n)),
    c_0 = 1/sqrt(2), c_u = 1 otherwise. Rows are frequencies; D D^T = I; coefficients of a
    block X are D X D^T (= scipy.fft.dctn(X, norm="ortho"))."""
    u = torch.arange(n, dtype=torch.float64)[:, None]
    t = torch.arange(n, dtype=torch.float64)[None, :]
    d = math.sqrt(2.0 / n) * torch.cos(math.pi * (2 * t + 1) * u / (2 * n))
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


def dct_basis(b: int, dtype=torch.float64) -> torch.Tensor:
    """The b^2 basis images as conv filters (b^2, 1, b, b): filter b*u + v = D[u] (x) D[v]."""
    d = dct_matrix(b)
    basis = torch.einsum("ut,vs->uvts", d, d).reshape(b * b, 1, b, b)
    return basis.to(dtype)


def block_dct(x: torch.Tensor, b: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*b^2, H/b, W/b): orthonormal DCT-II of every b x b block, channel
    c*b^2 + b*u + v. H and W must be multiples of b."""
    n, c, h, w = x.shape
    if h % b or w % b:
        raise ValueError(f"block DCT: {h}x{w} is not a multiple of the block size {b}")
    weight = dct_basis(b, x.dtype).to(x.device).repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, stride=b, groups=c)


def block_idct(z: torch.Tensor, b: int) -> torch.Tensor:
    """Inverse of `block_dct` (the transpose, since the basis is orthonormal)."""
    n, cb, h, w = z.shape
    c = cb // (b * b)
    weight = dct_basis(b, z.dtype).to(z.device).repeat(c, 1, 1, 1)
    return F.conv_transpose2d(z, weight, stride=b, groups=c)


def upsample2_matrix(b: int) -> torch.Tensor:
    """A (b x (b/2 + 2)): the b outputs of one block of a bilinear x2 upsampling
    (align_corners=False) as weights on b/2 + 2 inputs of the replicate-padded signal, the
    window starting at padded index (b/2) * block. Output 2p = 0.25 x[p] + 0.75 x[p+1],
    output 2p+1 = 0.75 x[p+1] + 0.25 x[p+2] (relative padded indices)."""
    if b % 2:
        raise ValueError(f"upsample x2 + block DCT needs an even block size, got {b}")
    a = torch.zeros(b, b // 2 + 2, dtype=torch.float64)
    for p in range(b // 2):
        a[2 * p, p], a[2 * p, p + 1] = 0.25, 0.75
        a[2 * p + 1, p + 1], a[2 * p + 1, p + 2] = 0.75, 0.25
    return a


def upsample_dct_basis(b: int, dtype=torch.float64) -> torch.Tensor:
    """Fused bilinear x2 upsampling + b x b block DCT filters (b^2, 1, b/2+2, b/2+2), to be
    applied with replicate padding 1 and stride b/2: filter b*u + v = (DA)[u] (x) (DA)[v]."""
    da = dct_matrix(b) @ upsample2_matrix(b)
    k = da.shape[1]
    return torch.einsum("uj,vl->uvjl", da, da).reshape(b * b, 1, k, k).to(dtype)


def rgb_to_ycbcr(x: torch.Tensor, offset: bool = True) -> torch.Tensor:
    """JFIF RGB -> YCbCr on (B, 3, H, W) (0..255 units with `offset`)."""
    m = RGB_TO_YCBCR.to(x.dtype).to(x.device)
    y = torch.einsum("oc,bchw->bohw", m, x)
    return y + YCBCR_OFFSET.to(x)[None, :, None, None] if offset else y


def ycbcr_to_rgb(y: torch.Tensor, offset: bool = True) -> torch.Tensor:
    """Inverse of `rgb_to_ycbcr` (the exact matrix inverse)."""
    if offset:
        y = y - YCBCR_OFFSET.to(y)[None, :, None, None]
    m = torch.linalg.inv(RGB_TO_YCBCR).to(y.dtype).to(y.device)
    return torch.einsum("oc,bchw->bohw", m, y)


# --------------------------------------------------------------------------- subsets

def _tri(n: int) -> list[tuple[int, int]]:
    """(u, v) with u + v <= n."""
    return [(u, v) for u in range(n + 1) for v in range(n + 1) if u + v <= n]


def _box(n: int) -> list[tuple[int, int]]:
    return [(u, v) for u in range(n) for v in range(n)]


# (components, block) -> {total count: per-component (u, v) lists}
SUBSETS: dict[tuple[int, int], dict[int, tuple[list[tuple[int, int]], ...]]] = {
    (3, 4): {6: (_box(2), _tri(0), _tri(0)),
             12: (_tri(2), _tri(1), _tri(1)),
             16: (_tri(3), _tri(1), _tri(1))},
    (3, 2): {3: (_tri(0), _tri(0), _tri(0)),
             5: (_tri(1), _tri(0), _tri(0))},
    (1, 2): {1: (_tri(0),), 3: (_tri(1),)},
    (1, 4): {3: (_tri(1),), 4: (_box(2),), 6: (_tri(2),), 10: (_tri(3),)},
}


def subset_channels(components: int, b: int, count: int) -> list[int]:
    """Channel indices c*b^2 + b*u + v of the table subset with `count` channels."""
    table = SUBSETS.get((components, b), {})
    if count == components * b * b:
        return list(range(count))
    if count not in table:
        valid = sorted(table) + [components * b * b]
        raise UserError(f"no static DCT subset of {count} channels for {components} component(s) "
                        f"and block {b}; use one of {', '.join(map(str, valid))}, 'all' or an "
                        f"explicit list (e.g. --set subset=0,1,4)")
    return sorted(c * b * b + b * u + v for c, pairs in enumerate(table[count]) for u, v in pairs)


def is_down_set(pairs) -> bool:
    """True if (u, v) in the set implies (u-1, v) and (u, v-1) are too (where >= 0)."""
    s = set(pairs)
    return all(((u - 1, v) in s or u == 0) and ((u, v - 1) in s or v == 0) for u, v in s)


def channel_pairs(channels, b: int) -> list[tuple[int, int, int]]:
    """(component, u, v) of each channel index."""
    return [(k // (b * b), (k % (b * b)) // b, k % b) for k in channels]


def parse_subset(text, components: int, b: int) -> list[int]:
    """'all' | a table count ('6') | an explicit comma-separated channel list."""
    total = components * b * b
    text = str(text).strip()
    if text == "all":
        return list(range(total))
    if "," in text:
        try:
            chans = sorted({int(t) for t in text.split(",") if t.strip()})
        except ValueError:
            raise UserError(f"bad subset {text!r}; use 'all', a count, or channel indices "
                            f"like 0,1,4") from None
        if not chans or chans[0] < 0 or chans[-1] >= total:
            raise UserError(f"subset channels must lie in [0, {total}); got {text!r}")
        return chans
    try:
        count = int(text)
    except ValueError:
        raise UserError(f"bad subset {text!r}; use 'all', a count, or channel indices "
                        f"like 0,1,4") from None
    return subset_channels(components, b, count)


# --------------------------------------------------------------------------- modules

class DCTFrontend(nn.Module):
    """Normalised pixels (B, C, H, W) -> standardised DCT tensor (B, C*b^2, rH/b, rW/b)."""

    def __init__(self, in_channels: int, block: int, upsample: int):
        super().__init__()
        if in_channels not in (1, 3):
            raise UserError(f"dct-select needs 1 (grayscale) or 3 (RGB) input channels, "
                            f"got {in_channels}")
        if upsample not in (1, 2):
            raise UserError(f"upsample must be 1 or 2, got {upsample}")
        self.components, self.block, self.upsample = in_channels, block, upsample
        if in_channels == 3:
            self.register_buffer("colour", RGB_TO_YCBCR.float()[:, :, None, None].clone())
        basis = dct_basis(block) if upsample == 1 else upsample_dct_basis(block)
        self.register_buffer("basis", basis.float().repeat(in_channels, 1, 1, 1))
        n = in_channels * block * block
        self.channels = n
        self.register_buffer("mean", torch.zeros(1, n, 1, 1))
        self.register_buffer("std", torch.ones(1, n, 1, 1))
        self.register_buffer("stats_ready", torch.zeros((), dtype=torch.bool))
        self._ready_cache: bool | None = None
        self.register_load_state_dict_post_hook(lambda m, _: setattr(m, "_ready_cache", None))

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        b, r = self.block, self.upsample
        if (r * h) % b or (r * w) % b:
            raise UserError(f"a {h}x{w} input upsampled x{r} is not a multiple of the DCT block "
                            f"{b}; choose --set block/upsample accordingly")
        return r * h // b, r * w // b

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Colour + (upsample) + block DCT, not standardised."""
        if self.components == 3:
            x = F.conv2d(x, self.colour)
        if self.upsample == 2:
            x = F.pad(x, (1, 1, 1, 1), mode="replicate")
            return F.conv2d(x, self.basis, stride=self.block // 2, groups=self.components)
        return F.conv2d(x, self.basis, stride=self.block, groups=self.components)

    def _ready(self) -> bool:
        if self._ready_cache is None:
            self._ready_cache = bool(self.stats_ready)
        return self._ready_cache

    @torch.no_grad()
    def fit_statistics(self, z: torch.Tensor) -> None:
        self.mean.copy_(z.mean(dim=(0, 2, 3), keepdim=True))
        self.std.copy_(z.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6))
        self.stats_ready.fill_(True)
        self._ready_cache = True

    def forward(self, x):
        z = self.transform(x)
        if self.training and not self._ready():
            self.fit_statistics(z)
        return (z - self.mean) / self.std


def gumbel_gate(logits: torch.Tensor, training: bool, tau: float = 1.0) -> torch.Tensor:
    """(..., 2) logits (off, on) -> hard 0/1 gate (...).

    Training: Gumbel-softmax with hard straight-through: the forward value is the one-hot
    argmax of the perturbed logits (exactly 0 or 1), the gradient that of the soft sample.
    Evaluation: deterministic argmax (on iff logit_on > logit_off)."""
    if not training:
        return (logits[..., 1] > logits[..., 0]).to(logits.dtype)
    u = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
    g = -torch.log(-torch.log(u))
    soft = torch.softmax((logits + g) / tau, dim=-1)[..., 1]
    hard = (soft > 0.5).to(logits.dtype)       # argmax of the two perturbed logits
    return hard + (soft - soft.detach())       # exact 0/1 forward, soft gradient


class ChannelGate(nn.Module):
    """DCTNet's gate [C: GateModule192]: GAP -> 1x1 conv + BN + ReLU -> grouped 1x1 conv to
    two logits per channel -> Gumbel-softmax (hard, tau 1) -> x * gate."""

    def __init__(self, channels: int, tau: float = 1.0):
        super().__init__()
        self.channels, self.tau = channels, float(tau)
        self.squeeze = nn.Conv2d(channels, channels, 1, bias=True)
        self.bn = nn.BatchNorm2d(channels)
        self.logits = nn.Conv2d(channels, 2 * channels, 1, groups=channels, bias=True)
        nn.init.kaiming_normal_(self.squeeze.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.squeeze.bias)
        nn.init.normal_(self.logits.weight, 0.0, GATE_WEIGHT_STD)
        with torch.no_grad():
            self.logits.bias.copy_(torch.tensor([GATE_OFF_BIAS, GATE_ON_BIAS]).repeat(channels))
        self.last_gate: torch.Tensor | None = None

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.relu(self.bn(self.squeeze(s)))
        return self.logits(s).reshape(x.shape[0], self.channels, 2)

    def forward(self, x):
        gate = gumbel_gate(self.gate_logits(x), self.training, self.tau)
        self.last_gate = gate
        return x * gate[:, :, None, None]


def lenet5_tail(cin: int, h: int, w: int, num_classes: int, dropout_conv: float,
                dropout_fc: float) -> nn.Sequential:
    """`methods.cnn.lenet5` after its first conv + pool: conv5x5(16) at h x w -> pool -> FC."""
    flat = 16 * pooled_size(h, 1, "lenet5") * pooled_size(w, 1, "lenet5")
    return nn.Sequential(*conv_block(cin, 16, 5, dropout_conv), nn.MaxPool2d(2), nn.Flatten(),
                         *fc_block(flat, 120, dropout_fc), *fc_block(120, 84, dropout_fc),
                         nn.Linear(84, num_classes))


class DCTSelectNet(nn.Module):
    def __init__(self, arch, input_shape, num_classes, *, input, block, upsample, select,
                 subset, gate_lambda, gate_tau, dropout_conv=0.0, dropout_fc=0.0):
        super().__init__()
        c, h, w = input_shape
        self.arch, self.input, self.select = arch, input, select
        self.gate_lambda = float(gate_lambda)
        self.frontend = None
        self.gate = None
        self.register_buffer("channels", torch.arange(0), persistent=False)
        self.info = {"arch": arch, "input": input}
        if input == "rgb":
            if arch == "lenet5":
                self.backbone = lenet5(input_shape, num_classes, dropout_conv, dropout_fc)
            else:
                self.backbone = resnet20(c, num_classes, 0)
            self.info.update(input_values=c * h * w)
            return
        self.frontend = DCTFrontend(c, block, upsample)
        dh, dw = self.frontend.out_size(h, w)
        ratio = h // dh if dh * (h // dh) == h and dw * (h // dh) == w else 0
        total = self.frontend.channels
        chans = parse_subset(subset, c, block)
        if select == "gate" and len(chans) != total:
            raise UserError("select=gate works on all DCT channels; use subset=all with it "
                            "(static subsets: select=static)")
        n_in = len(chans)
        if len(chans) != total:
            self.channels = torch.tensor(chans, dtype=torch.long)
        if arch == "lenet5":
            if ratio != 2:
                raise UserError(f"lenet5 takes the DCT tensor at half the input size (into its "
                                f"second conv): use block = 2 * upsample (got block {block}, "
                                f"upsample {upsample}, giving {dh}x{dw} from {h}x{w})")
            self.backbone = lenet5_tail(n_in, dh, dw, num_classes, dropout_conv, dropout_fc)
            entry = "conv2 (first conv + pool removed)"
        else:
            if ratio not in (2, 4):
                raise UserError(f"resnet20 takes the DCT tensor at 1/2 (stage 2) or 1/4 "
                                f"(stage 3) of the input size; got {dh}x{dw} from {h}x{w} "
                                f"(block {block}, upsample {upsample})")
            start = int(math.log2(ratio))
            self.backbone = resnet20(n_in, num_classes, start)
            entry = f"stage {start + 1} (stem{' + stage 1' if start >= 1 else ''}"\
                    f"{' + stage 2' if start >= 2 else ''} removed)"
        if select == "gate":
            self.gate = ChannelGate(total, gate_tau)
        pairs = channel_pairs(chans, block)
        self.info.update(
            block=block, upsample=upsample, dct_shape=[total, dh, dw], entry=entry,
            select=select, subset=str(subset), channels=chans, n_channels=n_in,
            channel_fraction=n_in / total,
            down_set=all(is_down_set([(u, v) for cc, u, v in pairs if cc == comp])
                         for comp in range(c)),
            input_values=n_in * dh * dw, normalized_input_size=n_in * dh * dw / (c * h * w),
        )
        if select == "gate":
            self.info.update(gate_lambda=self.gate_lambda, gate_tau=float(gate_tau),
                             gate_init_p_on=math.exp(GATE_ON_BIAS) /
                             (math.exp(GATE_ON_BIAS) + math.exp(GATE_OFF_BIAS)))

    def dct_features(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised DCT tensor (all channels) that selection acts on."""
        return self.frontend(x)

    def forward(self, x):
        if self.frontend is None:
            return self.backbone(x)
        z = self.frontend(x)
        if self.gate is not None:
            z = self.gate(z)
        elif self.channels.numel():
            z = z.index_select(1, self.channels)
        return self.backbone(z)

    def auxiliary_loss(self):
        """lambda * sum over channels of the hard gates, averaged over the batch (training)."""
        if self.gate is None or not self.training or self.gate.last_gate is None:
            return None
        gate, self.gate.last_gate = self.gate.last_gate, None
        if self.gate_lambda == 0:
            return None
        return self.gate_lambda * gate.sum(dim=1).mean()

    @torch.no_grad()
    def gate_on(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode (argmax) gates (B, C) for inputs x, for on-frequency statistics."""
        was = self.training
        self.eval()
        try:
            return gumbel_gate(self.gate.gate_logits(self.frontend(x)), False)
        finally:
            self.train(was)

    def describe(self) -> dict:
        return {**self.info, "reconstruction": False,
                "dct": "orthonormal DCT-II, b x b blocks, channel c*b^2 + b*u + v; Y,Cb,Cr JFIF",
                "standardization": "per-channel mean/std of the first training batch, frozen",
                "pipeline": "scaled DCTNet recipe (our B.6 choice), not a published model"}


# --------------------------------------------------------------------------- registry

OPTIONS = {
    "input": Option("dct", choices=INPUTS),
    "select": Option("static", choices=SELECTS),
    "subset": Option("all"),          # 'all', a table count or a channel list: see parse_subset
    "gate_lambda": Option(0.0, interval="[0, inf)"),
    "gate_tau": Option(1.0, interval="(0, inf)"),
    "block": Option(4, interval="[1, inf)", per_arch={"lenet5": 2}, use="a positive integer"),
    "upsample": Option(2, interval="[1, inf)", per_arch={"lenet5": 1}, use="a positive integer"),
    "dropout_conv": Option(0.0, interval="[0, 1)", archs=("lenet5",)),
    "dropout_fc": Option(0.0, interval="[0, 1)", archs=("lenet5",)),
}


def default_arch(input_shape) -> str:
    return "lenet5" if min(input_shape[-2:]) < 32 else "resnet20"


@register("dct-select", archs=ARCHS, options=OPTIONS, default_arch=default_arch,
          description="DCTNet (Xu et al. 2020) scaled: block-DCT YCbCr input, static subsets "
                      "or Gumbel gate, into a stem-less ResNet-20 / LeNet-5")
def build_dct_select(arch, input_shape, num_classes, **hp):
    if hp["input"] == "dct" and hp["upsample"] == 2 and hp["block"] % 2:
        raise UserError(f"upsample=2 needs an even block size, got block={hp['block']}")
    if hp["input"] == "dct" and hp["block"] > min(input_shape[-2:]):   # before its basis is made
        raise UserError(f"block {hp['block']} is larger than the {input_shape[-2]}x{input_shape[-1]} "
                        f"input; use a block of at most {min(input_shape[-2:])} (e.g. --set block=4)")
    return DCTSelectNet(arch, tuple(input_shape), num_classes, **hp)
