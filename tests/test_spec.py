"""RunSpec: canonical types, validation, and run ids that never change.

A run id names a run's directory (harness.store): if the hash of a spec changed, every
existing results tree would be orphaned (finished runs trained again, reports finding
nothing). The ids below were computed with the code before the restructuring of issue 13
(commit dda0671) and must stay what they are.
"""

import hashlib
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.spec import RunSpec, parse_assignments
from harness.suite import installed_suites, load_suite, make_spec

# (method, arch, dataset, --set overrides, training arguments) -> run id at dda0671
PINNED = [
    (("cnn", "lenet5", "mnist", {}, {}), "03ca0fb8f711-s0"),
    (("cnn", None, "cifar10", {"dropout_conv": "0.3"}, {"epochs": 3, "seed": 4}), "5b2bce30c380-s4"),
    (("cemnet", "lenet5", "mnist", {"wf": "projected", "dropout_conv": "0.4", "bn": "false"},
      {"epochs": 10, "seed": 2, "budget": "reference"}), "2c6c6766fecc-s2"),
    (("cemnet-no-wf-bn-dropout", "vgg-small", "cifar10", {"precision": "tf32", "act_std": "0.2"},
      {"threads": 1}), "af804d3df20a-s0"),
    (("dct-select", None, "cifar10", {"subset": "6", "gate_lambda": "0.01"}, {"lr": 0.01}),
     "86e05ec435cf-s0"),
    (("spectral-pooling", None, "mnist", {"gamma": "0.9", "freq_dropout": "false"},
      {"batch_size": 50}), "ee84141fc3a4-s0"),
    (("spatial-param", "rippel-deep", "cifar10", {"kernel": "5"}, {}), "9ad40da96f7b-s0"),
    (("fno", None, "mnist", {"modes": "8", "optimizer": "adam", "graph": "off"}, {"subset": 600}),
     "26a5c1789191-s0"),
    (("2srelu", "lenet5", "mnist", {"candidate": "3"}, {}), "2d1043dc130d-s0"),
]
# sha256 of every run id of every installed suite and budget, one per line, sorted, at
# dda0671; the ids themselves are in suite_run_ids.txt (budgets added since add ids)
SUITES_DIGEST = "185abf6cc4027d1dbf532314a4dfad6d518305efd9d0bd8586578fbf023f94fe"   # 479 specs
SUITE_RUN_IDS = Path(__file__).with_name("suite_run_ids.txt")


@pytest.mark.parametrize("args,run_id", PINNED, ids=[r for _, r in PINNED])
def test_run_ids_are_those_of_the_code_before(args, run_id):
    method, arch, dataset, overrides, train = args
    assert make_spec(method, arch, dataset, dict(overrides), **train).run_id == run_id


def test_every_suite_keeps_its_run_ids():
    pinned = SUITE_RUN_IDS.read_text().split()
    assert hashlib.sha256("\n".join(pinned).encode()).hexdigest() == SUITES_DIGEST
    ids = {s.run_id for name in installed_suites()
           for budget in load_suite(name).budgets for s in load_suite(name, budget).specs}
    assert sorted(set(pinned) - ids) == []


def test_run_id_is_independent_of_number_spelling_and_types_are_checked():
    from harness.errors import UserError
    from harness.spec import RunSpec
    assert RunSpec("cnn", "lenet5", "mnist", lr=1).run_id == RunSpec("cnn", "lenet5", "mnist", lr=1.0).run_id
    assert RunSpec("cnn", "lenet5", "mnist", epochs=3.0).epochs == 3
    with pytest.raises(UserError, match="whole number"):
        RunSpec("cnn", "lenet5", "mnist", batch_size=2.5)

def test_assignments_of_set_and_sbatch():
    assert parse_assignments(["wf=projected", " lr = 0.1 "]) == {"wf": "projected", "lr": "0.1"}
    assert parse_assignments(["--exclude=node1"], "--sbatch") == {"exclude": "node1"}
    with pytest.raises(UserError, match="--set expects key=value, got 'wf'; e.g. --set wf=projected"):
        parse_assignments(["wf"])
