"""harness/batchnorm.py: is evaluation using BatchNorm running statistics that have settled?

The weight of the initial statistics is checked against the running mean itself: fed
batches of constant mean mu, a BatchNorm's running mean after t steps is
(1 - w) * mu with w = (1 - momentum)^t, so w = 1 - running_mean / mu."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from harness import batchnorm
from harness.suite import make_spec
from harness.runner import execute


def trained_bn(momentum: float, steps: int, mu: float = 5.0) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(3, momentum=momentum).train()
    for _ in range(steps):
        bn(mu + torch.randn(64, 3))
    return bn


@pytest.mark.parametrize("momentum, steps", [(0.01, 50), (0.1, 10), (0.01, 200)])
def test_initial_weight_matches_the_running_mean(momentum, steps):
    bn = trained_bn(momentum, steps)
    info = batchnorm.unsettled(nn.Sequential(bn))
    measured = 1 - bn.running_mean / 5.0       # independent: from the statistics themselves
    assert info is not None and info["steps"] == steps and info["layers"] == 1
    torch.testing.assert_close(torch.full((3,), info["initial_weight"]), measured,
                               atol=0.02, rtol=0)
    # the number of steps it asks for brings the weight under the threshold, one fewer does not
    n = info["steps_needed"]
    assert (1 - momentum) ** n <= batchnorm.THRESHOLD < (1 - momentum) ** (n - 1)


def test_settled_statistics_and_cumulative_averages_are_not_flagged():
    assert batchnorm.unsettled(nn.Sequential(trained_bn(0.1, 40))) is None      # 0.9^40 = 1.5%
    cumulative = nn.BatchNorm1d(3, momentum=None).train()
    cumulative(torch.randn(8, 3))
    no_stats = nn.BatchNorm1d(3, track_running_stats=False)
    assert batchnorm.unsettled(nn.Sequential(cumulative, no_stats, nn.Linear(3, 3))) is None


def test_short_cemnet_run_warns_and_records_it(tmp_path):
    """CEMNet's BatchNorm momentum 0.01 after 6 steps: the run says so on stderr, in its
    record and in its summary line (before: nothing told the user)."""
    out = subprocess.run([sys.executable, "-m", "harness", "run", "--method", "cemnet", "--dataset",
                          "synthetic", "--subset", "600", "--epochs", "1", "--results-dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("warning: BatchNorm")]
    assert len(warnings) == 1 and "after 6 training steps at momentum 0.01" in warnings[0], out.stderr
    assert "train at least 299 steps (here 50 epochs" in warnings[0]
    assert "BatchNorm statistics not settled" in out.stdout
    record = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert record["batchnorm"]["unsettled"] is True and record["batchnorm"]["steps"] == 6
    assert record["batchnorm"]["initial_weight"] == pytest.approx(0.99 ** 6)


def test_long_enough_run_has_no_warning(tmp_path):
    spec = make_spec("cnn", None, "synthetic", epochs=1, subset=3000)    # 30 steps at 0.1
    record = execute(spec, results_dir=tmp_path, progress=False)
    assert "batchnorm" not in record
