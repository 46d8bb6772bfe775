"""Reports on a results tree made by really running a 1-epoch smoke suite (2 seeds)."""

import html.parser
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch

import methods
from harness import runner, store
from harness.errors import UserError
from reports import render

SUITE = """
[suite]
name = "report-smoke"
dataset = "synthetic"
seeds = [0, 1]

[budgets.smoke]
epochs = 1
subset = 300
val_size = 100
threads = 1   # auto threads follow the load, and runs at other counts are other settings

[[runs]]
method = "cnn"
arch = "lenet5"
hparams = { dropout_conv = [0.4, 0.1] }

[[runs]]
method = ["test-broken", "test-nan"]
seeds = [0]
"""


class Broken(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        if self.training:
            raise RuntimeError("broken on purpose")
        return x.flatten(1)[:, :10] * self.w


class NaN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.flatten(1)[:, :10] * self.w * float("nan")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Run the suite for real: 4 cnn runs, one failing and one diverging run."""
    methods._load()
    methods.register("test-broken", archs=("tiny",))(lambda a, s, k: Broken())
    methods.register("test-nan", archs=("tiny",))(lambda a, s, k: NaN())
    root = tmp_path_factory.mktemp("report")
    suite = root / "suite.toml"
    suite.write_text(SUITE)
    from harness.suite import load_suite
    results = root / "results"
    for spec in load_suite(str(suite)).specs:
        try:
            runner.execute(spec, results_dir=results, progress=False)
        except RuntimeError:
            pass  # the failure is recorded in its result.json
    yield root, suite, results
    methods._REGISTRY.pop("test-broken")
    methods._REGISTRY.pop("test-nan")


@pytest.fixture(scope="module")
def report(tree):
    root, suite, results = tree
    md, htm = render.write_report(str(suite), str(root / "out"), results_dir=results, progress=False)
    return root, results, md, htm


def records(results):
    return [json.loads(p.read_text()) for p in Path(results).rglob("result.json")]


def test_two_seeds_show_their_values_not_an_interval(report):
    root, results, md, _ = report
    text = md.read_text()
    for dropout in (0.4, 0.1):
        errs = sorted(r["metrics"]["test_error"] for r in records(results)
                      if r["spec"]["method"] == "cnn" and r["spec"]["hparams"]["dropout_conv"] == dropout)
        assert len(errs) == 2
        row = next(line for line in text.splitlines()
                   if line.startswith("| cnn ") and f"dropout_conv={dropout}" in line)
        # n = 2: the two values and n; a t-interval from two seeds would be ±12.7 s
        assert f"{100 * errs[0]:.2f}, {100 * errs[1]:.2f}% (n=2)" in row
        assert "±" not in row and "[" not in row


def test_figures_exist_and_are_valid_images(report):
    root, _, md, _ = report
    figs = sorted((root / "out" / "figures").glob("*.png"))
    names = {f.name for f in figs}
    assert {"learning_synthetic.png", "acc_macs_synthetic.png", "ops_synthetic.png"} <= names
    assert any(n.startswith("acc_time_synthetic") for n in names)
    for f in figs:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(f)
        assert img.shape[0] > 50 and img.shape[1] > 50
        assert f"figures/{f.name}" in md.read_text()


def test_html_parses_and_embeds_every_figure(report):
    root, _, _, htm = report

    class Parser(html.parser.HTMLParser):
        imgs, tables = [], 0

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])
            if tag == "table":
                Parser.tables += 1

    p = Parser()
    p.feed(htm.read_text())
    p.close()
    n_figs = len(list((root / "out" / "figures").glob("*.png")))
    assert len(p.imgs) == n_figs and all(s.startswith("data:image/png;base64,") for s in p.imgs)
    assert Parser.tables >= 3


def test_failed_and_diverged_runs_are_listed(report):
    _, _, md, _ = report
    section = md.read_text().split("## Failed, diverged and unfinished runs")[1].split("## ")[0]
    assert "test-broken" in section and "failed" in section and "broken on purpose" in section
    assert "test-nan" in section and "diverged" in section


def test_report_is_deterministic(report, tmp_path):
    root, results, md, htm = report
    suite = root / "suite.toml"
    md2, htm2 = render.write_report(str(suite), str(tmp_path / "again"), results_dir=results,
                                    progress=False)
    assert md2.read_text() == md.read_text()
    for f in (root / "out" / "figures").glob("*.png"):
        assert (tmp_path / "again" / "figures" / f.name).read_bytes() == f.read_bytes()


def test_published_validates_and_names_registered_methods():
    pub = render.load_published()
    assert len(pub) > 10
    assert pub["source"].str.len().min() > 10 and pub["convention"].str.len().min() > 5
    registered = set(methods.names())
    assert set(pub["method"]) <= registered, set(pub["method"]) - registered
    for _, e in pub.iterrows():
        assert e["arch"] in methods.get(e["method"]).archs


def test_published_entry_without_source_is_rejected(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('[[entry]]\nmethod = "cnn"\narch = "lenet5"\ndataset = "mnist"\n'
                   'metric = "test_error"\nvalue = 0.1\nconvention = "x"\nepochs = 1\n'
                   'comparable = true\n')
    with pytest.raises(UserError, match="lacks"):
        render.load_published(bad)


def test_empty_and_partial_trees_give_clear_messages(tmp_path, tree):
    out = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path / "nothing"),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "empty").mkdir()
    out = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path / "empty"),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert out.returncode == 2 and "no runs found" in out.stderr and "Traceback" not in out.stderr
    # a suite none of whose runs has started: a clear message, no traceback
    suite = tmp_path / "cnn-only.toml"
    suite.write_text(SUITE.split("[[runs]]\nmethod = [")[0])
    out = subprocess.run([sys.executable, "-m", "harness", "report", str(suite), "--out",
                          str(tmp_path / "o"), "--results-dir", str(tmp_path / "empty")],
                         capture_output=True, text=True)
    assert "Traceback" not in out.stderr
    assert out.returncode == 2 and "no finished runs" in out.stderr


def test_report_covers_the_default_budget_and_names_missing_runs(tmp_path, tree):
    """Like sweep and status, report takes the suite's default budget; missing runs are
    named by their spec (before: every budget was counted, missing rows showed '–')."""
    root, _, results = tree
    suite = tmp_path / "two-budgets.toml"
    suite.write_text(SUITE.replace("[budgets.smoke]", "[budgets.long]\nepochs = 2\nsubset = 300\n"
                                   "val_size = 100\n\n[budgets.smoke]")
                     .replace('seeds = [0, 1]\n', 'seeds = [0, 1]\ndefault_budget = "smoke"\n', 1))
    md, _ = render.write_report(str(suite), str(tmp_path / "out"), results_dir=results, progress=False)
    text = md.read_text()
    head = text.split("\n\n")[1]
    assert head.startswith("6 runs: 4 complete, 1 diverged, 1 failed."), head
    assert "(budget smoke)" in text.splitlines()[0]
    md, _ = render.write_report(str(suite), str(tmp_path / "all"), results_dir=results,
                                progress=False, all_budgets=True)
    text = md.read_text()
    assert text.split("\n\n")[1].startswith("12 runs: 4 complete, 1 diverged, 1 failed, 6 missing")
    problems = text.split("## Failed, diverged and unfinished runs")[1].split("##")[0]
    missing = [line for line in problems.splitlines() if "| missing " in line]
    assert len(missing) == 6
    for line in missing:       # method, arch, dataset, budget and seed from the suite's spec
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] in ("cnn", "test-broken", "test-nan") and cells[3] == "long", cells
        assert cells[1] in ("lenet5", "tiny") and cells[2] == "synthetic" and cells[4] in ("0", "1")
    with pytest.raises(UserError, match="exclude each other"):
        render.write_report(str(suite), str(tmp_path / "x"), results_dir=results, budget="long",
                            all_budgets=True, progress=False)
