"""User input -> RunSpec (harness/suite.py): suites named from any directory, the suite file
read once, and a bad method option refused before anything runs, on every path."""

import subprocess
import sys
import textwrap

import pytest

import benchmarks     # noqa: F401 - the installed suites' package, imported before any chdir
from harness import schedule, suite
from harness.__main__ import main
from harness.env import REPO
from harness.errors import UserError
from harness.suite import installed_suites, load_suite

SMOKE = REPO / "benchmarks" / "smoke.toml"


def test_a_suite_is_found_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    assert {"smoke", "mnist-table1", "cifar10-table2"} <= set(installed_suites())
    by_path = [s.run_id for s in load_suite(str(SMOKE)).specs]
    monkeypatch.chdir(tmp_path)
    for name in ("smoke", "smoke.toml", "benchmarks/smoke.toml"):
        assert [s.run_id for s in load_suite(name).specs] == by_path
    assert main(["sweep", "smoke", "--dry-run", "--results-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert all(rid in out for rid in by_path) and "dry run: nothing submitted" in out
    with pytest.raises(UserError, match="suite file nope does not exist; .*installed: .*smoke"):
        load_suite("nope")


def test_the_suite_file_is_read_once_slurm_table_included(tmp_path, monkeypatch):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent("""
        [suite]
        name = "s"
        dataset = "synthetic"
        [[runs]]
        method = "cnn"
        [slurm]
        partition = "from-the-file"
        """))
    reads = []
    real = suite.read_suite
    monkeypatch.setattr(suite, "read_suite", lambda p: reads.append(p) or real(p))
    lines = []
    summary = schedule.sweep(str(path), results_dir=tmp_path / "r", dry_run=True, out=lines.append)
    assert len(reads) == 1
    assert summary["suite"].slurm == {"partition": "from-the-file"}
    assert summary["options"].partition == "from-the-file"


BAD = textwrap.dedent("""
    [suite]
    name = "bad"
    dataset = "synthetic"
    [[runs]]
    method = "cemnet"
    hparams = {wf = "projektd"}
    """)


@pytest.mark.parametrize("how", ["run", "run --suite", "sweep --dry-run", "sweep (slurm)",
                                 "sweep --executor local"])
def test_a_bad_option_value_is_refused_before_anything_runs(how, tmp_path, capsys):
    suite_file = tmp_path / "bad.toml"
    suite_file.write_text(BAD)
    results = tmp_path / "r"
    argv = {"run": ["run", "--method", "cemnet", "--dataset", "synthetic", "--set", "wf=projektd"],
            "run --suite": ["run", "--suite", str(suite_file)],
            "sweep --dry-run": ["sweep", str(suite_file), "--dry-run"],
            "sweep (slurm)": ["sweep", str(suite_file), "--partition", "debug"],
            "sweep --executor local": ["sweep", str(suite_file), "--executor", "local"]}[how]
    assert main([*argv, "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "bad value wf='projektd': use one of spatial, projected, none" in err
    assert not results.exists()


def test_list_prints_each_methods_options():
    out = subprocess.run([sys.executable, "-m", "harness", "list"], capture_output=True, text=True,
                         timeout=120, cwd=REPO).stdout
    cemnet = out.split("  cemnet ")[1].split("\n  cemnet-no-dropout")[0]
    assert "options: wf=spatial {spatial|projected|none}" in cemnet
    assert "dropout_conv=0.5 in [0, 1]" in cemnet
    dct = out.split("  dct-select ")[1].split("\n  fcnn")[0]
    assert "options (lenet5): input=dct {dct|rgb}" in dct and "block=2 in [1, inf)" in dct
    assert "options (resnet20): input=dct {dct|rgb}" in dct and "block=4 in [1, inf)" in dct
