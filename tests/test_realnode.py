"""Real-node (Toom-Cook / Winograd) convolution, methods/realnode.py: exact in exact
arithmetic, equal to F.conv2d in float64, fp32 error vs tile size and nodes, conditioning,
gradients, parameters and op counts, checked against independent computations."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import methods
from harness import ops
from harness.errors import UserError
from harness.spec import RunSpec
from methods.realnode import (NODE_SETS, TILES, RealNodeConv2d, finite_nodes, layer_tile,
                              toom_cook_exact)
from helpers import rand

pytestmark = pytest.mark.usefixtures("one_thread")


def net(method, arch="lenet5", shape=(1, 28, 28), **hp):
    torch.manual_seed(0)
    return methods.build(RunSpec(method, arch, "test", hparams=hp), shape, 10)


@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (6, 3), (2, 5), (4, 5), (6, 5)])
def test_toom_cook_is_exact_in_rational_arithmetic(m, r):
    """1-D F(m, r) with the standard nodes on integer data: Fractions, no rounding at all."""
    at, g, bt, _ = toom_cook_exact(m, r)
    rng = np.random.default_rng(m * 10 + r)
    n = m + r - 1
    for _ in range(5):
        d = [Fraction(int(v)) for v in rng.integers(-9, 10, n)]
        w = [Fraction(int(v)) for v in rng.integers(-9, 10, r)]
        gw = [sum(row[k] * w[k] for k in range(r)) for row in g]
        bd = [sum(row[j] * d[j] for j in range(n)) for row in bt]
        y = [sum(row[j] * gw[j] * bd[j] for j in range(n)) for row in at]
        assert y == [sum(w[k] * d[i + k] for k in range(r)) for i in range(m)]


def test_standard_nodes_are_the_winograd_ones():
    assert finite_nodes(3) == [0, 1, -1]                              # F(2, 3)
    assert finite_nodes(5) == [0, 1, -1, 2, -2]                       # F(4, 3) (Lavin & Gray)
    assert finite_nodes(7) == [0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)]
    cheb = finite_nodes(4, "chebyshev")
    assert np.allclose(sorted(cheb), np.sort(np.cos((2 * np.arange(4) + 1) * np.pi / 8)))


@pytest.mark.parametrize("nodes", NODE_SETS)
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("k", [3, 5])
def test_layer_equals_conv2d_in_float64(k, tile, nodes):
    torch.manual_seed(1)
    layer = RealNodeConv2d(3, 4, k, tile=tile, nodes=nodes).double()
    for h, w in [(7, 9), (12, 12), (2, 2), (1, 5)]:      # ragged tiles, maps smaller than a tile
        x = rand(2, 3, h, w, seed=h * w)
        with torch.no_grad():
            y, ref = layer(x), F.conv2d(x, layer.weight, layer.bias, padding=k // 2)
        assert y.dtype == torch.float64 and y.shape == ref.shape
        assert (y - ref).abs().max() <= 1e-11 * ref.abs().max()


def _error_script():
    from measure import realnode_error
    return realnode_error


def test_fp32_error_by_tile_and_nodes(capsys):
    """The float32 error table (measure/realnode_error.py, quick shapes). Bounds: the
    small standard tiles stay at float32 level (the note's < 1e-6 for F(2,3) and F(4,3)),
    every variant below 1e-3, and the error grows with the tile as cond(V) does."""
    script = _error_script()
    rows = script.error_rows()
    with capsys.disabled():
        print("\n" + script.markdown(rows))
    err = {(r["k"], r["tile"], r["nodes"]): r["rel_l2"] for r in rows}
    assert len(err) == 2 * len(TILES) * len(NODE_SETS)
    assert err[(3, 2, "standard")] < 1e-6 and err[(3, 4, "standard")] < 2e-6
    assert err[(5, 2, "standard")] < 5e-6
    assert max(err.values()) < 1e-3
    for k in (3, 5):
        for nodes in NODE_SETS:
            assert err[(k, 6, nodes)] > 5 * err[(k, 2, nodes)]
    conv2d = {r["k"]: r["rel_l2_conv2d_fp32"] for r in rows}
    assert all(1e-8 < v < 1e-6 for v in conv2d.values())


def test_condition_numbers_recorded_and_independent():
    """cond(V) of F(2,3) with nodes 0, 1, -1, inf, and of F(4,3) with 0, +-1, +-2, inf, from a
    Vandermonde built here; describe() of the layer and of the network carry them."""
    def vander(nodes, n):
        rows = [[float(a) ** j for j in range(n)] for a in nodes] + [[0.0] * (n - 1) + [1.0]]
        return np.array(rows)

    layer = RealNodeConv2d(2, 2, 3, tile=2)
    assert layer.describe()["cond_V"] == pytest.approx(np.linalg.cond(vander([0, 1, -1], 4)))
    layer4 = RealNodeConv2d(2, 2, 3, tile=4)
    assert layer4.describe()["cond_V"] == pytest.approx(
        np.linalg.cond(vander([0, 1, -1, 2, -2], 6)))
    assert layer4.describe()["cond_V"] > layer.describe()["cond_V"]
    for key in ("cond_AT", "cond_G", "cond_BT"):
        assert layer.describe()[key] >= 1
    info = net("realnode", tile=4).describe()
    assert [d["F"] for d in info["layers"]] == ["F(4x4, 5x5)", "F(4x4, 5x5)"]
    assert all(d["cond_V"] > 1 for d in info["layers"])


def test_gradcheck_float64():
    torch.manual_seed(0)
    for tile, k in ((2, 3), (4, 5)):
        layer = RealNodeConv2d(2, 3, k, tile=tile).double()
        x = rand(1, 2, 5, 6).requires_grad_()
        assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("arch,shape", [("lenet5", (1, 28, 28)), ("vgg-small", (3, 32, 32))])
def test_same_parameters_and_initial_function_as_the_cnn(arch, shape):
    """The layer is an nn.Conv2d: same parameter count (the cnn's hand formula is checked in
    test_cnn.py), the same initial weights for the same seed, and the same outputs."""
    real, cnn = net("realnode", arch, shape).double().eval(), net("cnn", arch, shape).double().eval()
    assert sum(p.numel() for p in real.parameters()) == sum(p.numel() for p in cnn.parameters())
    sd_r, sd_c = real.state_dict(), cnn.state_dict()
    assert sd_r.keys() == sd_c.keys()
    assert all(torch.equal(sd_r[k], sd_c[k]) for k in sd_c)    # same seed, same init calls: exact
    x = rand(3, *shape)
    with torch.no_grad():
        assert (real(x) - cnn(x)).abs().max() < 1e-10


def test_op_counts_by_hand():
    """Forward MACs of one layer (batch 1): input transform 2 n^3 per channel and tile, filter
    transform n r^2 + n^2 r per (cout, cin), n^2 Cout Cin per tile, output transform
    m n^2 + m^2 n per output channel and tile; no FFT."""
    cin, cout, k, h = 3, 4, 3, 8
    for tile in (2, 4):
        n, t = tile + k - 1, (h // tile) ** 2
        r = ops.count_ops(RealNodeConv2d(cin, cout, k, tile=tile), (cin, h, h))
        expected = (2 * n ** 3 * cin * t + (n * k * k + n * n * k) * cout * cin
                    + n * n * cout * cin * t + (tile * n * n + tile * tile * n) * cout * t)
        assert r["breakdown_fwd"]["conv_linear"] == expected
        assert r["breakdown_fwd"]["fft"] == 0 and r["breakdown_fwd"]["complex_products"] == 0
        assert r["batch_fixed"]["macs_fwd"] == (n * k * k + n * n * k) * cout * cin


def test_tile_is_clamped_to_the_map():
    assert layer_tile(4, (32, 32)) == 4 and layer_tile(6, (8, 8)) == 6
    assert layer_tile(6, (4, 4)) == 4 and layer_tile(4, (2, 2)) == 2 and layer_tile(2, (1, 1)) == 2
    info = net("realnode", "vgg-small", (3, 32, 32), tile=6).describe()["layers"]
    assert [d["F"] for d in info] == ["F(6x6, 3x3)"] * 3 + ["F(4x4, 3x3)", "F(2x2, 3x3)"]


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="tile"):
        net("realnode", tile=3)
    with pytest.raises(UserError, match="nodes"):
        net("realnode", nodes="complex")
    with pytest.raises(UserError, match="odd kernel"):
        RealNodeConv2d(1, 1, 4)
