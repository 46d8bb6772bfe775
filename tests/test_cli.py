"""CLI: one-line user errors with exit status 2, help, list, and the run/skip cycle."""

import subprocess
import sys

import pytest

from harness.__main__ import main


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize("args,expect", [
    (["run", "--method", "nope", "--dataset", "synthetic"], "valid methods: "),
    (["run", "--dataset", "imagenet"], "valid datasets: mnist"),
    (["run", "--dataset", "synthetic", "--set", "dropout_conv"], "key=value"),
    (["run", "--dataset", "synthetic", "--set", "nope=1"], "valid options:"),
    (["run", "--dataset", "synthetic", "--set", "dropout_conv=abc"], "bad value"),
    (["run", "--dataset", "synthetic", "--arch", "resnet"], "valid architectures"),
    (["run", "--dataset", "synthetic", "--epochs", "0"], "--epochs must be >= 1"),
    (["run", "--dataset", "synthetic", "--device", "cuda:7"] if True else [], "cuda"),
    (["run", "--dataset", "missing.npz"], "does not exist"),
    (["run", "--suite", "nope.toml"], "does not exist"),
])
def test_user_errors_are_one_line_exit_2(capsys, args, expect):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert expect in err


def test_help_and_list():
    out = run_cli("--help")
    assert out.returncode == 0 and "run" in out.stdout and "SPECTRAL_BENCH_DATA" in out.stdout
    out = run_cli("run", "--help")
    assert out.returncode == 0 and "--set KEY=VALUE" in out.stdout and "--force" in out.stdout
    out = run_cli("list")
    assert out.returncode == 0 and "cnn" in out.stdout and "lenet5" in out.stdout
    assert "synthetic" in out.stdout


def test_run_then_skip(tmp_path):
    args = ["run", "--dataset", "synthetic", "--epochs", "1", "--subset", "300",
            "--results-dir", str(tmp_path), "--quiet"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "test error" in first.stdout
    assert "notice: --subset 300: training on 300 images, validating on 60 and testing on 60" \
        in first.stderr
    second = run_cli(*args)
    assert second.returncode == 0 and "already done" in second.stderr
    assert first.stdout == second.stdout
