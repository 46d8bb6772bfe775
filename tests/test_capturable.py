"""Every registered (method, arch) has a CUDA-graph-capturable training step (issue 14).

A CUDA graph cannot contain a host synchronization (`.item()`, `bool(t)`, `nonzero`), a
host<->device copy or a tensor built on the host. `harness.graph.capture_hazards` records
those during one training step (forward, loss, backward, `after_optimizer_step`), after a
warm-up step that fills caches, on the CPU: tensors created without `device=` (they would
land on the CPU next to a CUDA model), tensors built from Python data, float64 constants
rebuilt and cast every call, and host syncs are all visible here. The probe itself is
tested on small modules that commit each hazard.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import methods
from harness.graph import capture_hazards
from harness.spec import RunSpec
from harness.suite import resolve_hparams
from helpers import natural_shape

REGISTRY = [(m, a) for m in methods.names() for a in methods.get(m).archs]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method,arch", REGISTRY, ids=[f"{m}-{a}" for m, a in REGISTRY])
def test_training_step_has_no_capture_hazards(method, arch):
    shape = natural_shape(arch)
    torch.manual_seed(0)
    model = methods.build(RunSpec(method, arch, "test"), shape, 10)
    x = torch.randn(2, *shape)
    y = torch.tensor([3, 7])
    assert capture_hazards(model, x, y) == []


# ------------------------------------------------------------- the probe finds hazards
class _Probe(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(4, 10)

    def forward(self, x):
        x = x.flatten(1)[:, :4]
        if self.kind == "item" and x.sum().item() > 1e9:
            x = x * 2
        if self.kind == "bool" and bool((x > 1e9).any()):
            x = x * 2
        if self.kind == "nonzero":
            x = x + (x > 0).nonzero().shape[0] * 0
        if self.kind == "tensor":
            x = x * torch.tensor([1.0, 1.0, 1.0, 1.0])
        if self.kind == "no-device":
            x = x + torch.zeros(4)
        if self.kind == "float64":
            x = x * torch.ones(4, dtype=torch.float64, device=x.device).to(x.dtype)
        if self.kind == "cpu":
            x = x + x.cpu() * 0
        return self.lin(x)


@pytest.mark.parametrize("kind,word", [("item", "_local_scalar_dense"),
                                       ("bool", "_local_scalar_dense"),
                                       ("nonzero", "nonzero"), ("tensor", "lift_fresh"),
                                       ("no-device", "torch.zeros without device="),
                                       ("float64", "torch.float64"), ("cpu", ".cpu()")])
def test_probe_reports_each_hazard(kind, word):
    found = capture_hazards(_Probe(kind), torch.randn(2, 1, 2, 2), torch.tensor([1, 2]))
    assert any(word in line for line in found), found


def test_probe_is_quiet_on_a_clean_module():
    assert capture_hazards(_Probe("none"), torch.randn(2, 1, 2, 2), torch.tensor([1, 2])) == []


OPTIONS = [("cemnet", "lenet5", {"pool": "freq-avg"}), ("cemnet", "lenet5", {"wf": "projected"}),
           ("cemnet", "lenet5", {"activation": "leaky", "wf_blocks": 1}),
           ("fcnn", "lenet5", {"pool": "freq-avg", "activation": "modrelu", "bias": "dc"}),
           ("2srelu", "lenet5", {"candidate": 3}), ("2srelu", "lenet5", {"pool": "freq-avg"}),
           ("dct-select", "resnet20", {"select": "gate", "gate_lambda": 0.01}),
           ("dct-select", "lenet5", {"subset": "3"}),
           ("spectral-pooling", "rippel-sp", {"onesided": False})]


@pytest.mark.parametrize("method,arch,hp", OPTIONS,
                         ids=[f"{m}-{a}-{'-'.join(map(str, h.values()))}" for m, a, h in OPTIONS])
def test_options_have_no_capture_hazards(method, arch, hp):
    shape = natural_shape(arch)
    torch.manual_seed(0)
    model = methods.build(RunSpec(method, arch, "test", hparams=resolve_hparams(
        method, arch, hp)), shape, 10)
    assert capture_hazards(model, torch.randn(2, *shape), torch.tensor([3, 7])) == []
