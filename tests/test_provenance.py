"""Code provenance (harness/fingerprint.py): what a run records, when a report calls its
row stale, and `sweep --rerun-stale`."""

import json
import shutil
from pathlib import Path

import pytest

from harness import fingerprint, schedule
from harness.store import RunDir

REPO = Path(__file__).resolve().parent.parent
CODE = "def f(x):\n    return x + 1\n"


def test_hash_ignores_comments_docstrings_and_layout_but_not_code():
    base = fingerprint.source_hash(CODE)
    assert fingerprint.source_hash('"""A module."""\n# a comment\ndef f(x):\n    """Add one."""\n'
                                   '    return (x +\n            1)  # why\n') == base
    assert fingerprint.source_hash(CODE.replace("+ 1", "+ 2")) != base
    assert fingerprint.source_hash("def f(x):\n    '''only a docstring'''\n") != \
        fingerprint.source_hash("def f(x):\n    pass\n    return None\n")


def test_a_method_depends_on_its_module_its_methods_imports_and_the_training_path():
    files = set(fingerprint.fingerprint("cemnet")["files"])
    assert {"methods/cemnet.py", "methods/fourier.py", "methods/freqpool.py", "methods/cnn.py",
            "methods/__init__.py"} <= files
    assert set(fingerprint.TRAINING_PATH) <= files
    assert "methods/fno.py" not in files and "harness/store.py" not in files
    assert not any(f.startswith("reports/") for f in files)


def copy_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    for d in ("methods", "harness"):
        shutil.copytree(REPO / d, repo / d, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def test_check_current_stale_and_unknown(tmp_path):
    repo = copy_repo(tmp_path)
    rec = fingerprint.fingerprint("cnn", repo)
    assert fingerprint.check(rec, repo).state == "current"
    cnn = repo / "methods/cnn.py"
    cnn.write_text('"""Reworded."""\n' + cnn.read_text().split('"""', 2)[2] + "\n# a new comment\n")
    fingerprint.file_hash.cache_clear()
    assert fingerprint.check(rec, repo).state == "current"           # documentation only
    step = repo / "harness/step.py"
    step.write_text(step.read_text() + "\nEXTRA = 1\n")
    fingerprint.file_hash.cache_clear()
    prov = fingerprint.check(rec, repo)
    assert prov.state == "stale" and prov.changed == ("harness/step.py",)
    (repo / "harness/graph.py").unlink()
    fingerprint.file_hash.cache_clear()
    assert fingerprint.check(rec, repo).changed == ("harness/graph.py", "harness/step.py")
    assert fingerprint.check(None, repo).state == "unknown"
    assert fingerprint.check(dict(rec, scheme="other"), repo).state == "unknown"
    planted = dict(rec, files={"../../etc/passwd.py": "0"})
    assert fingerprint.check(planted, repo).state == "unknown"       # never read outside the packages


def write_suite(tmp_path) -> Path:
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\ndataset = "synthetic"\nseeds = [0]\n'
                     '[[runs]]\nmethod = "cnn"\nepochs = 1\nsubset = 200\n')
    return suite


@pytest.fixture
def in_process(monkeypatch):
    from helpers import InProcessExecutor
    monkeypatch.setattr(schedule.local.submitit, "LocalExecutor", InProcessExecutor)


def test_sweep_records_the_fingerprint_and_reruns_exactly_the_stale_runs(tmp_path, in_process):
    suite, results = write_suite(tmp_path), tmp_path / "r"
    lines = []

    def sweep(**kw):
        lines.clear()
        return schedule.sweep(str(suite), executor="local", results_dir=results, devices=["cpu"],
                              max_parallel=1, out=lines.append, **kw)

    assert len(sweep()["local"]["done"]) == 1
    (run_dir,) = [p.parent for p in results.rglob("result.json") if "_suites" not in p.parts]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["environment"]["code"] == fingerprint.fingerprint("cnn")
    # the record says methods/cnn.py was another version: stale, and nothing else is rerun
    rec["environment"]["code"]["files"]["methods/cnn.py"] = "0" * 16
    rec["finished"] = "then"
    (run_dir / "result.json").write_text(json.dumps(rec))
    sweep(dry_run=True)
    assert any("done (stale: methods/cnn.py changed)" in ln for ln in lines)
    assert sweep()["todo"] == 0 and "nothing to run" in lines[-1]
    sweep(dry_run=True, rerun_stale=True)
    assert "1 stale to rerun" in lines[0] and any(" stale (stale: methods/cnn.py" in ln for ln in lines)
    assert len(sweep(rerun_stale=True)["local"]["done"]) == 1
    again = RunDir(run_dir).record()
    assert again.raw["finished"] != "then"
    assert fingerprint.check(again.environment["code"]).state == "current"
    assert sweep(rerun_stale=True)["todo"] == 0                      # current now: nothing to do


def test_report_flags_stale_rows_and_names_the_files(tmp_path, in_process):
    from reports import render

    suite, results = write_suite(tmp_path), tmp_path / "r"
    schedule.sweep(str(suite), executor="local", results_dir=results, devices=["cpu"],
                   max_parallel=1, out=lambda _: None)
    md, _ = render.write_report(str(results), str(tmp_path / "out"), progress=False)
    assert "1 made by the code of this checkout, 0 by code that has changed since" in md.read_text()
    (path,) = [p for p in results.rglob("result.json") if "_suites" not in p.parts]
    rec = json.loads(path.read_text())
    rec["environment"]["code"]["files"]["harness/train.py"] = "0" * 16
    path.write_text(json.dumps(rec))
    md, _ = render.write_report(str(results), str(tmp_path / "out"), progress=False)
    text = md.read_text()
    assert "0 made by the code of this checkout, 1 by code that has changed since" in text
    prov = text.split("## Code provenance")[1].split("##")[0]
    assert "| stale " in prov and "harness/train.py" in prov
    del rec["environment"]["code"]
    path.write_text(json.dumps(rec))
    md, _ = render.write_report(str(results), str(tmp_path / "out"), progress=False)
    assert "no code fingerprint in the record" in md.read_text()
