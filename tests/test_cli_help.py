"""CLI help: defaults shown, ops/status documented with examples, --version, and `list`
printing each method's default architecture per input shape (as `run` resolves it)."""

import re
import subprocess
import sys

import pytest

import harness
import methods
from harness import data
from harness.spec import RunSpec


def cli(*args):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=120)


def test_version():
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"spectral-bench {harness.__version__}"


def test_run_help_shows_the_defaults_that_run():
    out = cli("run", "--help").stdout
    flat = " ".join(out.split())
    assert "--method METHOD method name (see `list`) (default: cnn)" in flat
    assert f"epochs (default: {RunSpec.epochs})" in flat
    assert f"batch size (default: {RunSpec.batch_size})" in flat
    assert f"(default: {RunSpec.lr})" in flat and "(default: auto)" in flat
    assert "(default: None)" not in flat and "(default: False)" not in flat


@pytest.mark.parametrize("command", ["ops", "status", "report", "list", "sweep"])
def test_every_subcommand_has_help_and_an_example(command):
    out = cli(command, "--help")
    assert out.returncode == 0
    assert re.search(rf"^\s+python -m harness {command}\b", out.stdout, re.M), out.stdout
    assert "(default: None)" not in out.stdout


def test_ops_and_status_are_described():
    top = " ".join(cli("--help").stdout.split())
    assert "ops print forward/backward op counts" in top
    assert "status pending, running, done and failed runs" in top
    ops = " ".join(cli("ops", "--help").stdout.split())
    assert "(default: mnist)" in ops and "(default: cnn)" in ops


def test_spectral_param_defaults_follow_the_readme_rule():
    for name in ("spectral-param", "spatial-param", "cnn", "cemnet", "fcnn"):
        assert methods.resolve_arch(name, None, (1, 28, 28)) == "lenet5"
        assert methods.resolve_arch(name, None, (3, 32, 32)) == "vgg-small"


def test_list_prints_each_default_architecture():
    out = cli("list").stdout
    shapes = list(dict.fromkeys(tuple(s) for s, _ in data.SHAPES.values()))
    assert shapes == [(1, 28, 28), (3, 32, 32)]
    for name in methods.names():
        block = out.split(f"  {name} ")[1]
        line = next(ln for ln in block.splitlines() if "default arch:" in ln)
        want = ", ".join(f"{'x'.join(map(str, s))} -> {methods.resolve_arch(name, None, s)}"
                         for s in shapes)
        assert line.split("default arch: ")[1] == want
    # the two methods whose defaults differ from the lenet5/vgg-small rule
    assert "1x28x28 -> lenet5, 3x32x32 -> resnet20" in out.split("  dct-select ")[1].split("\n  ")[1]
    assert "1x28x28 -> rippel-sp, 3x32x32 -> rippel-sp" in out.split("  spectral-pooling ")[1]
