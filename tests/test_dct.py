"""DCT channel selection (methods/dct.py): identities of the blockwise DCT.

References are independent: scipy's DCT, F.interpolate, explicit block means, the JFIF
values of known colours, a hand-built model that zeroes channels. float64 where exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F

import methods
from harness.errors import UserError
from harness.spec import RunSpec
from harness.suite import resolve_hparams
from methods.dct import (SUBSETS, ChannelGate, DCTFrontend, block_dct, block_idct, channel_pairs,
                         dct_matrix, gumbel_gate, is_down_set, parse_subset, rgb_to_ycbcr,
                         subset_channels, upsample_dct_basis, ycbcr_to_rgb)
from helpers import rand

TOL = 1e-12


pytestmark = pytest.mark.usefixtures("one_thread")


def build(arch, shape, **hp):
    torch.manual_seed(0)
    h = resolve_hparams("dct-select", arch, {k: str(v) for k, v in hp.items()})
    return methods.build(RunSpec("dct-select", arch, "test", hparams=h), shape, 10)


# --------------------------------------------------------------------------- the transform

@pytest.mark.parametrize("n", [2, 4, 8])
def test_basis_is_orthonormal_and_is_scipys_dct(n):
    d = dct_matrix(n)
    np.testing.assert_allclose((d @ d.T).numpy(), np.eye(n), atol=TOL)
    np.testing.assert_allclose(d.numpy(), scipy.fft.dct(np.eye(n), norm="ortho", axis=0), atol=TOL)


@pytest.mark.parametrize("b", [2, 4, 8])
def test_block_transform_is_invertible_and_preserves_energy(b):
    x = rand(2, 3, 16, 24, seed=b)
    z = block_dct(x, b)
    assert z.shape == (2, 3 * b * b, 16 // b, 24 // b)
    np.testing.assert_allclose(block_idct(z, b).numpy(), x.numpy(), atol=TOL)
    assert abs(z.pow(2).sum() - x.pow(2).sum()) < 1e-10 * x.pow(2).sum()
    # one block against scipy: component 1, block (row 1, col 2); channel 1*b^2 + b*u + v
    blk = x[0, 1, b:2 * b, 2 * b:3 * b].numpy()
    ref = scipy.fft.dctn(blk, norm="ortho")
    got = z[0, b * b:2 * b * b, 1, 2].reshape(b, b).numpy()
    np.testing.assert_allclose(got, ref, atol=TOL)


@pytest.mark.parametrize("b", [2, 4])
def test_dc_is_b_times_the_block_mean(b):
    x = rand(2, 3, 8, 8, seed=1)
    z = block_dct(x, b)
    np.testing.assert_allclose(z[:, ::b * b].numpy(), (b * F.avg_pool2d(x, b)).numpy(), atol=TOL)


@pytest.mark.parametrize("u,v", [(0, 0), (0, 3), (2, 1), (3, 3)])
def test_a_basis_pattern_lights_only_its_own_channel(u, v):
    b = 4
    coef = np.zeros((b, b))
    coef[u, v] = 1.0
    pattern = scipy.fft.idctn(coef, norm="ortho")                 # the (u, v) basis image
    img = torch.zeros(1, 3, 3 * b, 2 * b, dtype=torch.float64)
    img[0, 2] = torch.from_numpy(np.tile(pattern, (3, 2)))       # in the Cr component only
    z = block_dct(img, b)
    k = 2 * b * b + b * u + v
    np.testing.assert_allclose(z[0, k].numpy(), np.ones((3, 2)), atol=TOL)
    others = torch.cat([z[0, :k], z[0, k + 1:]])
    assert others.abs().max() < TOL


def test_ycbcr_round_trip_and_known_colours():
    x = torch.rand(2, 3, 5, 4, dtype=torch.float64) * 255
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)).numpy(), x.numpy(), atol=1e-10)
    colours = torch.tensor([[255., 255, 255], [0, 0, 0], [255, 0, 0]], dtype=torch.float64)
    ycc = rgb_to_ycbcr(colours.T.reshape(1, 3, 3, 1))[0, :, :, 0].T
    expected = [[255, 128, 128], [0, 128, 128],                  # white, black: no chroma
                [0.299 * 255, 128 - 0.168736 * 255, 128 + 0.5 * 255]]   # red (JFIF)
    np.testing.assert_allclose(ycc.numpy(), expected, atol=1e-9)


@pytest.mark.parametrize("b", [2, 4, 8])
def test_fused_upsample_dct_equals_interpolate_then_block_dct(b):
    x = rand(2, 3, 8, 12, seed=b)
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    ref = block_dct(up, b)
    got = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"),
                   upsample_dct_basis(b).repeat(3, 1, 1, 1), stride=b // 2, groups=3)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=TOL)


def test_frontend_standardizes_with_the_first_training_batch_and_freezes():
    fe = DCTFrontend(3, 4, 2).double()
    x = rand(16, 3, 8, 8, seed=3) * 3 + 1
    fe.eval()
    raw = fe(x)                                    # before any training batch: 0 / 1 buffers
    np.testing.assert_allclose(raw.numpy(), fe.transform(x).numpy(), atol=TOL)
    fe.train()
    z = fe(x)
    assert z.shape == (16, 48, 4, 4)
    np.testing.assert_allclose(z.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-10)
    np.testing.assert_allclose(z.std(dim=(0, 2, 3)).numpy(), 1, atol=1e-10)
    mean = fe.mean.clone()
    fe(rand(16, 3, 8, 8, seed=4))                  # a second batch does not refit
    assert torch.equal(fe.mean, mean)            # a buffer left alone: exact
    other = DCTFrontend(3, 4, 2).double()          # the statistics travel with the state
    other.load_state_dict(fe.state_dict())
    other.train()
    other(rand(16, 3, 8, 8, seed=5))
    assert torch.equal(other.mean, mean)         # copied with the state: exact


# --------------------------------------------------------------------------- subsets

@pytest.mark.parametrize("key", sorted(SUBSETS))
def test_subset_tables_counts_unique_down_sets(key):
    comps, b = key
    for count, per_comp in SUBSETS[key].items():
        assert len(per_comp) == comps
        assert sum(len(p) for p in per_comp) == count
        chans = subset_channels(comps, b, count)
        assert len(chans) == len(set(chans)) == count
        assert all(0 <= c < comps * b * b for c in chans)
        pairs = channel_pairs(chans, b)
        for comp in range(comps):
            assert is_down_set([(u, v) for c, u, v in pairs if c == comp])
            assert (comp, 0, 0) in pairs                     # every component keeps its DC


def test_cifar_subsets_are_the_dctnet_fractions():
    counts = {n: [len(p) for p in per] for n, per in SUBSETS[(3, 4)].items()}
    assert counts == {6: [4, 1, 1], 12: [6, 3, 3], 16: [10, 3, 3]}
    fractions = sorted(n / 48 for n in counts)
    np.testing.assert_allclose(fractions, [24 / 192, 48 / 192, 64 / 192], atol=0.005)
    assert subset_channels(3, 4, 6) == [0, 1, 4, 5, 16, 32]


def test_down_set_check_rejects_a_gap():
    assert not is_down_set([(0, 0), (0, 2)])
    assert not is_down_set([(1, 0)])
    assert is_down_set([(0, 0), (1, 0), (0, 1), (1, 1)])


def test_parse_subset_forms_and_errors():
    assert parse_subset("all", 1, 2) == [0, 1, 2, 3]
    assert parse_subset("3", 1, 2) == [0, 1, 2]
    assert parse_subset("5,0,16", 3, 4) == [0, 5, 16]
    for bad in ("7", "0,99", "x"):
        with pytest.raises(UserError):
            parse_subset(bad, 3, 4)


def test_static_selection_equals_a_fixed_binary_gate():
    """Slicing the input channels (and the first layer's weights) gives the same logits as
    zeroing the dropped channels in the full-channel network."""
    full = build("resnet20", (3, 32, 32)).double().eval()
    part = build("resnet20", (3, 32, 32), subset=12).double().eval()
    chans = part.channels
    state = full.backbone.state_dict()
    for name, t in part.backbone.state_dict().items():    # first block: conv1 and shortcut
        src = state[name]
        if src.shape != t.shape:
            assert src.shape[1] == 48 and t.shape[1] == 12
            src = src[:, chans]
        t.copy_(src)
    x = rand(3, 3, 32, 32, seed=9)
    z = full.dct_features(x)
    mask = torch.zeros(48, dtype=torch.float64)
    mask[chans] = 1
    gated = full.backbone(z * mask[None, :, None, None])
    sliced = part(x)
    np.testing.assert_allclose(sliced.detach().numpy(), gated.detach().numpy(), atol=1e-10)
    assert (full.backbone(z) - gated).abs().max() > 1e-6     # the mask does matter


# --------------------------------------------------------------------------- the gate

def test_gate_is_exactly_binary_with_nonzero_gradients():
    torch.manual_seed(0)
    gate = ChannelGate(48).double().train()
    x = rand(8, 48, 4, 4, seed=2)
    y = gate(x)
    g = gate.last_gate
    assert set(torch.unique(g).tolist()) <= {0.0, 1.0}
    ratio = y / x                                          # x * gate: exactly x or 0
    assert set(torch.unique(ratio).tolist()) <= {0.0, 1.0}
    (y.pow(2).sum() + g.sum()).backward()
    assert gate.logits.weight.grad.abs().sum() > 0
    assert gate.logits.bias.grad.abs().sum() > 0
    assert gate.squeeze.weight.grad.abs().sum() > 0


def test_gate_p_on_at_init_is_0_87():
    torch.manual_seed(1)
    gate = ChannelGate(48).train()
    x = torch.randn(64, 48, 4, 4)
    fractions = []
    for _ in range(20):
        gate(x)
        fractions.append(gate.last_gate.mean().item())
    on = sum(fractions) / len(fractions)
    expected = math.exp(2.0) / (math.exp(2.0) + math.exp(0.1))
    assert abs(expected - 0.870) < 1e-3
    assert abs(on - expected) < 0.02                      # 61,440 draws: std ~0.0014


def test_gate_eval_is_deterministic_argmax():
    gate = ChannelGate(6).double().eval()
    x = rand(4, 6, 2, 2, seed=3)
    a, b = gate(x), gate(x)
    assert torch.equal(a, b)                     # the same call repeated in one process: exact
    logits = gate.gate_logits(x)
    np.testing.assert_array_equal(gate.last_gate.numpy(),
                                  (logits[..., 1] > logits[..., 0]).double().numpy())
    hard = gumbel_gate(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), training=False)
    assert hard.tolist() == [1.0, 0.0]


def test_penalty_is_lambda_times_sum_over_channels_mean_over_batch():
    model = build("lenet5", (1, 28, 28), select="gate", gate_lambda=0.5).train()
    model(torch.randn(6, 1, 28, 28))
    g = model.gate.last_gate.detach().clone()
    pen = model.auxiliary_loss()
    assert pen.item() == pytest.approx(0.5 * g.sum(dim=1).mean().item())
    assert model.auxiliary_loss() is None                   # consumed: one penalty per step


def test_large_lambda_drives_the_on_fraction_down():
    torch.manual_seed(0)
    gate = ChannelGate(16).train()
    x = torch.randn(32, 16, 4, 4)
    for _ in range(60):                     # plain gradient descent on the penalty alone
        gate.zero_grad()
        gate(x)
        (1.0 * gate.last_gate.sum(dim=1).mean()).backward()
        with torch.no_grad():
            for p in gate.parameters():
                p -= 0.5 * p.grad
    gate.eval()
    gate(x)
    assert gate.last_gate.mean() < 0.2


# --------------------------------------------------------------------------- the models

@pytest.mark.parametrize("arch,shape,hp,dct_shape", [
    ("resnet20", (3, 32, 32), {}, [48, 16, 16]),
    ("resnet20", (3, 32, 32), {"upsample": 1}, [48, 8, 8]),
    ("lenet5", (1, 28, 28), {}, [4, 14, 14]),
    ("lenet5", (1, 28, 28), {"block": 4, "upsample": 2}, [16, 14, 14]),
])
def test_backbone_shapes(arch, shape, hp, dct_shape):
    model = build(arch, shape, **hp)
    assert model.describe()["dct_shape"] == dct_shape
    assert model.frontend(torch.randn(2, *shape)).shape[1:] == tuple(dct_shape)
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_rgb_baseline_is_the_full_backbone():
    rgb = build("resnet20", (3, 32, 32), input="rgb")
    dct = build("resnet20", (3, 32, 32))
    assert rgb.frontend is None
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # the DCT net is the RGB net without the stem and stage 1: 1 + 6 convs fewer
    n_conv = [sum(isinstance(m, torch.nn.Conv2d) for m in net.backbone.modules())
              for net in (rgb, dct)]
    assert n_conv[0] - n_conv[1] == 7
    lenet = build("lenet5", (1, 28, 28), input="rgb", dropout_conv=0.4, dropout_fc=0.5).eval()
    torch.manual_seed(0)
    cnn = methods.build(RunSpec("cnn", "lenet5", "test", hparams=resolve_hparams(
        "cnn", "lenet5", {})), (1, 28, 28), 10).eval()
    x = torch.randn(2, 1, 28, 28)
    # the cnn method's LeNet-5, exactly: the same modules, weights and input, so the same
    # kernels run on the same operands (equal by construction, on any CPU)
    assert torch.equal(lenet(x), cnn(x))


@pytest.mark.parametrize("hp", [{"select": "gate", "subset": 6}, {"block": 3},
                                {"select": "nope"}, {"upsample": 3}])
def test_bad_options_are_user_errors(hp):
    with pytest.raises(UserError):
        build("resnet20", (3, 32, 32), **hp)
