"""`list` prints each method's default architecture per input shape (as `run` resolves
it), and the spectral/spatial-param defaults follow the README rule."""

import subprocess
import sys

import methods
from harness import data


def cli(*args):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=120)


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
