"""Every registered (method, arch) has a training step that a CUDA graph can capture and
that never waits for the GPU (issues 14 and 22), as far as a CPU can tell.

A CUDA graph cannot contain a host synchronization (`.item()`, `bool(t)`, `nonzero`), a
host<->device copy or a tensor built on the host, and replays Python state and CPU
scalars as they were at capture. `harness.hazards.capture_hazards` records those during
the model's part of one training step (forward, loss, backward, `after_optimizer_step`),
after a warm-up step that fills caches, on the CPU: tensors created without `device=`
(they would land on the CPU next to a CUDA model), tensors built from Python data,
float64 constants rebuilt and cast every call, host syncs, Python attributes the step
changes and tensors held outside parameters and buffers are all visible here.
`harness.hazards.host_syncs` counts the host syncs of one whole training step (optimizer
and scheduler included) with the optimizer a CUDA run builds, for every optimizer and
graph mode. The probes themselves are tested on small modules that commit each hazard.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import methods
from harness.hazards import capture_hazards, host_syncs
from harness.spec import OPTIMIZERS, RunSpec
from harness.suite import resolve_hparams
from helpers import natural_shape

REGISTRY = [(m, a) for m in methods.names() for a in methods.get(m).archs]

pytestmark = pytest.mark.usefixtures("one_thread")


def build(method: str, arch: str):
    """The model at its natural input size and a batch of 2."""
    shape = natural_shape(arch)
    torch.manual_seed(0)
    model = methods.build(RunSpec(method, arch, "test"), shape, 10)
    return model, torch.randn(2, *shape), torch.tensor([3, 7])


@pytest.mark.parametrize("method,arch", REGISTRY, ids=[f"{m}-{a}" for m, a in REGISTRY])
def test_training_step_has_no_hazards_and_never_waits_for_the_gpu(method, arch):
    """The model's part of the step has no capture hazard; then one full training step
    (clipping on) whose optimizer part is every optimizer's (OPTIMIZERS) as a CUDA run
    builds it under each graph mode has no host synchronization."""
    model, x, y = build(method, arch)
    assert capture_hazards(model, x, y) == []           # warms the model up
    spec = RunSpec(method, arch, "test", clip_norm=1.0)
    assert host_syncs(model, spec, x, y, optimizers=OPTIMIZERS) == []


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 0.0), (0.9, 1e-4)])
def test_whole_step_never_waits_for_the_gpu_with_momentum_and_decay(momentum, weight_decay):
    """The optimizers' other code paths (momentum buffers, weight decay), which do not
    depend on the model."""
    model, x, y = build("cnn", "lenet5")
    capture_hazards(model, x, y)
    spec = RunSpec("cnn", "lenet5", "test", momentum=momentum, weight_decay=weight_decay,
                   clip_norm=1.0)
    assert host_syncs(model, spec, x, y, optimizers=OPTIMIZERS) == []


# ------------------------------------------------------------- the probe finds hazards
class _Probe(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(4, 10)
        self.steps = 0                                   # Python state
        self.scale = torch.tensor(2.0)                   # not a buffer: stays on the CPU
        self.weights = torch.ones(4)
        self.register_buffer("scale_buffer", torch.tensor(2.0))
        self.cache = None

    def forward(self, x):
        x = x.flatten(1)[:, :4]
        if self.kind == "counter":
            self.steps += 1
            x = x * (0.5 if self.steps % 2 else 1.0)
        if self.kind == "cpu-scalar":
            x = x * self.scale
        if self.kind == "cpu-tensor":
            x = x * self.weights
        if self.kind == "none":                          # the right ways: a buffer, a cache
            if self.cache is None:                       # built from the input, on its device
                self.cache = torch.ones(4, device=x.device, dtype=x.dtype)
            x = x * self.scale_buffer * self.cache
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
                                       ("float64", "torch.float64"), ("cpu", ".cpu()"),
                                       ("counter", "Python attribute steps changed"),
                                       ("cpu-scalar", "reads scale, a 0-dim tensor"),
                                       ("cpu-tensor", "reads weights, a tensor that is not")])
def test_probe_reports_each_hazard(kind, word):
    found = capture_hazards(_Probe(kind), torch.randn(2, 1, 2, 2), torch.tensor([1, 2]))
    assert any(word in line for line in found), found


def test_probe_is_quiet_on_a_clean_module():
    assert capture_hazards(_Probe("none"), torch.randn(2, 1, 2, 2), torch.tensor([1, 2])) == []


class _SyncingSGD(torch.optim.SGD):
    """SGD whose step reads a tensor lr on the host, as torch 2.13's does."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.data.add_(p.grad, alpha=-torch.as_tensor(group["lr"]))   # -> .item()


def test_host_sync_probe_finds_a_sync_in_the_optimizer_and_names_it(monkeypatch):
    monkeypatch.setattr(torch.optim, "SGD", _SyncingSGD)
    found = host_syncs(_Probe("none"), RunSpec("cnn", "lenet5", "test"), torch.randn(2, 1, 2, 2),
                       torch.tensor([1, 2]), optimizers=("rmsprop", "sgd"))
    assert found and all(line.startswith("optimizer=sgd graph=") for line in found), found
    assert any("_local_scalar_dense" in line for line in found)


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
