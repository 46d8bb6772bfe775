"""The layer-replacement methods (fno, gfnet, ffc, realnode, hartley) in the cnn skeleton
(methods/skeleton.py): same skeleton as methods.cnn, trainable, capture-friendly forward and
backward, and present in the suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

import methods
from harness.spec import RunSpec
from harness.suite import load_suite, resolve_hparams
from methods.skeleton import ReplacedCNN

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parent.parent
NEW = ("fno", "gfnet", "ffc", "realnode", "hartley")
ARCHS = (("lenet5", (1, 28, 28)), ("vgg-small", (3, 32, 32)))
CASES = [(m, a, s) for m in NEW for a, s in ARCHS]
IDS = [f"{m}-{a}" for m, a, _ in CASES]


def build(method, arch, shape, **hp):
    torch.manual_seed(0)
    return methods.build(RunSpec(method, arch, "test", hparams=hp), shape, 10)


@pytest.mark.parametrize("method,arch,shape", CASES, ids=IDS)
def test_cnn_skeleton_with_each_conv_replaced(method, arch, shape):
    """Module for module the cnn, except that each nn.Conv2d position holds the method's
    layer; BN widths, dropout rates, pools and the head are the cnn's."""
    net, cnn = build(method, arch, shape), build("cnn", arch, shape)
    assert isinstance(net, ReplacedCNN) and len(net) == len(cnn)
    replaced = 0
    for mine, base in zip(net, cnn):
        if type(base) is nn.Conv2d:
            replaced += 1
            assert callable(getattr(mine, "describe", None))
        else:
            assert type(mine) is type(base) and repr(mine) == repr(base)
    assert replaced == (2 if arch == "lenet5" else 5) == len(net.describe()["layers"])
    info = net.describe()
    assert info["method"] == method and info["arch"] == arch
    json.dumps(info)


@pytest.mark.parametrize("method,arch,shape", CASES, ids=IDS)
def test_trains_a_step(method, arch, shape):
    net = build(method, arch, shape).train()
    x, y = torch.randn(4, *shape), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in net.parameters()]
    out = net(x)
    assert out.shape == (4, 10) and not out.is_complex()
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(before, net.parameters()))


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


# Ops that break CUDA-graph capture: device -> host reads (.item(), nonzero) and tensors
# built from Python data in forward (torch.tensor(...) dispatches lift_fresh).
UNCAPTURABLE = {"_local_scalar_dense", "item", "nonzero", "lift_fresh", "lift_fresh_copy",
                "masked_select"}


@pytest.mark.parametrize("method,arch,shape", CASES, ids=IDS)
def test_forward_backward_are_capture_friendly(method, arch, shape):
    net = build(method, arch, shape).train()
    x = torch.randn(2, *shape)
    with _Recorder() as rec:
        net(x).sum().backward()
    assert not (rec.ops & UNCAPTURABLE), rec.ops & UNCAPTURABLE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method,arch,shape", CASES, ids=IDS)
def test_cuda_graph_capture(method, arch, shape):
    net = build(method, arch, shape).cuda().train()
    x = torch.randn(8, *shape, device="cuda")
    graphed = torch.cuda.make_graphed_callables(net, (x,))
    out = graphed(x)
    out.sum().backward()
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()


def test_suites_list_the_new_methods():
    mnist = load_suite(str(REPO / "benchmarks" / "mnist-all.toml"), "short")
    assert {(s.method, s.arch) for s in mnist.specs} >= {(m, "lenet5") for m in NEW}
    for budget in ("smoke", "short", "full"):
        suite = load_suite(str(REPO / "benchmarks" / "cifar10-modern.toml"), budget)
        pairs = {(s.method, s.arch) for s in suite.specs}
        assert pairs >= {(m, "vgg-small") for m in NEW + ("cnn",)}, budget
        assert all(s.dataset == "cifar10" for s in suite.specs)
        for s in suite.specs:
            resolve_hparams(s.method, s.arch, s.hparams)
