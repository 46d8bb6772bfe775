"""The contract every registered method keeps, tested for each (method, architecture) of
`methods.names()` without test code of its own: a new method (one file, one line in
`methods._METHOD_MODULES`) is picked up here.

For each (method, arch), at its natural input size (MNIST 1x28x28 for the LeNet family,
CIFAR-10 3x32x32 otherwise): the model builds, takes one training step, `describe()` is
JSON, an unknown option and a bad value of every declared choice are refused when a spec
is made, the op count has no unsupported operator, and the parameter count is the one in
tests/param_counts.toml (a method or architecture missing there is reported as a skip,
with the line to add, not failed). Also: the `Option` declarations themselves.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest
import torch

import methods
from harness import ops
from harness.errors import UserError
from harness.ops import count_params
from harness.spec import RunSpec
from harness.step import make_optimizer, make_scheduler, train_step
from harness.suite import make_spec, resolve_hparams
from helpers import counted, natural_shape
from methods import Option

pytestmark = pytest.mark.usefixtures("one_thread")

REGISTRY = [(m, a) for m in methods.names() for a in methods.get(m).archs]
IDS = [f"{m}-{a}" for m, a in REGISTRY]
PARAM_COUNTS = Path(__file__).with_name("param_counts.toml")
CHOICES = [(m, a, k) for m, a in REGISTRY for k, o in methods.get(m).options_for(a).items()
           if o.choices]


def dataset_of(shape) -> str:
    return "synthetic" if tuple(shape) == (1, 28, 28) else "synthetic-cifar"


def built(method: str, arch: str):
    shape = natural_shape(arch)
    torch.manual_seed(0)
    return methods.build(RunSpec(method, arch, "test"), shape, 10), shape


@pytest.mark.parametrize("method,arch", REGISTRY, ids=IDS)
def test_builds_and_takes_one_training_step(method, arch):
    model, shape = built(method, arch)
    spec = RunSpec(method, arch, "test", batch_size=2)
    opt = make_optimizer(spec, model.parameters())
    sched = make_scheduler(spec, opt, steps_per_epoch=1)
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(1)
    model.train()
    loss, correct = train_step(model, opt, sched, torch.randn(2, *shape), torch.tensor([3, 7]), 0.0)
    assert math.isfinite(loss.item()) and 0 <= correct.item() <= 2
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), "nothing learned"
    with torch.no_grad():
        assert model.eval()(torch.randn(3, *shape)).shape == (3, 10)


@pytest.mark.parametrize("method,arch", REGISTRY, ids=IDS)
def test_describe_is_json(method, arch):
    model, _ = built(method, arch)
    info = methods.get(method)
    record = {"description": info.description, "reconstruction": info.reconstruction,
              **(model.describe() if hasattr(model, "describe") else {})}
    json.loads(json.dumps(record))       # no default=str: plain JSON values only


@pytest.mark.parametrize("method,arch", REGISTRY, ids=IDS)
def test_an_unknown_option_is_refused_naming_the_valid_ones(method, arch):
    with pytest.raises(UserError, match="has no option 'no_such_option'; valid options: "):
        resolve_hparams(method, arch, {"no_such_option": "1"})


@pytest.mark.parametrize("method,arch,key", CHOICES, ids=[f"{m}-{a}-{k}" for m, a, k in CHOICES])
def test_a_bad_choice_is_refused_when_the_spec_is_made(method, arch, key):
    option = methods.get(method).options_for(arch)[key]
    bad = "no-such-value" if option.kind is str else str(max(option.choices) + 1)
    with pytest.raises(UserError, match=f"bad value {key}=") as exc:
        make_spec(method, arch, dataset_of(natural_shape(arch)), {key: bad})
    assert bad in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("method,arch", REGISTRY, ids=IDS)
def test_every_registered_method_counts(method, arch):
    """Zero unsupported operators (count_ops raises UnsupportedOperatorError otherwise),
    and the forward counts of fvcore and FlopCounterMode agree category by category."""
    r = counted(method, arch)
    assert r["crosscheck_fwd"]["agree"], r["crosscheck_fwd"]
    assert r["crosscheck_fwd"]["flop_counter_macs"] == r["macs_fwd"]
    assert r["macs_fwd"] > 0 and r["macs_bwd"] > 0
    assert r["per_sample"]["macs_fwd"] + r["batch_fixed"]["macs_fwd"] == r["macs_fwd"]
    assert r["convention"]["id"] == ops.CONVENTION_ID
    assert set(r["breakdown_fwd"]) == set(ops.CATEGORIES)
    json.dumps(r)


@pytest.mark.parametrize("method,arch", REGISTRY, ids=IDS)
def test_parameter_count_is_recorded(method, arch):
    table = tomllib.loads(PARAM_COUNTS.read_text())["params"]
    try:
        with torch.device("meta"):      # counts depend on shapes only
            model = methods.build(RunSpec(method, arch, "test"), natural_shape(arch), 10)
    except Exception:   # noqa: BLE001 - a builder that needs real tensors
        model, _ = built(method, arch)
    n = count_params(model)
    key = f"{method}/{arch}"
    if key not in table:
        pytest.skip(f"no parameter count for {key} in {PARAM_COUNTS.name}; it has {n}: "
                    f'add "{key}" = {n}')
    assert n == table[key], f"{key}: {n} parameters, {table[key]} recorded"


# ----------------------------------------------------------------------------- Option

def test_intervals_have_open_and_closed_ends():
    closed_open = Option(0.1, interval="[0, 1)")
    closed_open.check("p", 0.0)
    closed_open.check("p", 0.999)
    for bad in (1.0, -0.1, float("nan"), "x", True):
        with pytest.raises(UserError, match=r"bad value p="):
            closed_open.check("p", bad)
    open_inf = Option(1.0, interval="(0, inf)")
    open_inf.check("t", 1e9)
    with pytest.raises(UserError, match=r"use a number in \(0, inf\)"):
        open_inf.check("t", 0)
    whole = Option(-1, interval="[-1, inf)")
    whole.check("n", -1)
    with pytest.raises(UserError, match="whole number"):
        whole.check("n", 2.0)
    with pytest.raises(ValueError, match="bad interval"):
        Option(0, interval="0..1")


def test_choices_booleans_rules_and_per_arch_defaults():
    choice = Option("a", choices=("a", "b"))
    with pytest.raises(UserError, match=r"bad value k='c': use one of a, b \(e.g. --set k=a\)"):
        choice.check("k", "c")
    with pytest.raises(UserError, match="use true or false"):
        Option(True).check("flag", "yes")
    odd = Option(3, interval="[1, inf)", rule=lambda k: k % 2 == 1, use="an odd size")
    with pytest.raises(UserError, match="bad value k=4: use an odd size"):
        odd.check("k", 4)
    per_arch = Option(4, per_arch={"lenet5": 2}, archs=("lenet5", "resnet20"))
    assert (per_arch.default_for("lenet5"), per_arch.default_for("resnet20")) == (2, 4)
    assert "lenet5: 2" in per_arch.describe()
