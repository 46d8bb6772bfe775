"""Report statistics and comparability on a results tree of hand-written run records.

The tree is written directly in the record schema (result.json + history.csv), with
the fields other branches add (spec.threads, spec.precision, environment.precision,
contention, timing.step_mode, ops.convention.id sb-macs-v2), so every number in the
report can be checked against a hand computation:

- cnn/lenet5 and spectral-param/lenet5 with n = 2 seeds (no interval allowed);
- cnn/vgg-small and spectral-param/vgg-small with n = 3 seeds (a clipped t-interval);
- spectral-pooling/rippel-sp, which has no cnn twin;
- a cnn/lenet5 seed whose record says the load exceeded the cores, and a
  configuration all of whose runs are flagged;
- the same cnn/lenet5 at 1 thread and with precision tf32 (separate settings);
- a record from before the new fields (no threads/precision/contention).
"""

import hashlib
import json
import math
import re
import statistics
from pathlib import Path

import pytest
from scipy import stats

from reports import aggregate, render

CLEAN_S = 10.0          # s/epoch of a clean run
LOADED_S = 40.0         # s/epoch of the run on the overloaded machine
REASON = "load average 4.52 exceeded the 2 available cores"

# (method, arch, seed) -> test error; chosen so that n = 3 intervals need clipping
ERRORS = {
    ("cnn", "lenet5", 0): 0.034, ("cnn", "lenet5", 1): 0.041,
    ("spectral-param", "lenet5", 0): 0.036, ("spectral-param", "lenet5", 1): 0.030,
    ("cnn", "vgg-small", 0): 0.002, ("cnn", "vgg-small", 1): 0.004, ("cnn", "vgg-small", 2): 0.120,
    ("spectral-param", "vgg-small", 0): 0.010, ("spectral-param", "vgg-small", 1): 0.500,
    ("spectral-param", "vgg-small", 2): 0.990,
    ("spectral-pooling", "rippel-sp", 0): 0.650, ("spectral-pooling", "rippel-sp", 1): 0.660,
}
MACS = {"lenet5": 7.0e5, "vgg-small": 6.8e7, "rippel-sp": 1.1e8}


def write_run(root: Path, method: str, arch: str, seed: int, test_error: float, *,
              threads=2, precision="fp32", unreliable=False, s_per_epoch=CLEAN_S,
              new_fields=True, dataset="mnist", subset=5000, n_train=5000, n_test=1000,
              macs=None, fft_share=0.05):
    epochs = 2
    spec = {"method": method, "arch": arch, "dataset": dataset, "epochs": epochs,
            "batch_size": 100, "lr": 0.004, "optimizer": "rmsprop", "momentum": 0.0,
            "weight_decay": 0.0, "schedule": "cosine", "lr_min": 1e-7, "warmup_epochs": 0.0,
            "clip_norm": 0.0, "val_size": 5000, "subset": subset, "seed": seed, "budget": "short",
            "hparams": {}}
    env = {"python": "3.11.7", "device": "cpu", "cpu": "Test CPU", "cpu_count": 2,
           "threads": threads, "packages": {"torch": "2.13.0+cpu"},
           "git": {"sha": "0" * 40, "dirty": False}}
    ops_conv = "sb-macs-v2"
    timing = {"train_s": epochs * s_per_epoch, "train_s_per_epoch": s_per_epoch,
              "throughput_img_s": n_train / s_per_epoch}
    if new_fields:
        spec.update(threads=threads, precision=precision)
        env["precision"] = {"policy": precision, "tf32_matmul": precision == "tf32",
                            "tf32_cudnn": precision == "tf32", "float32_matmul_precision": "highest"}
        timing.update(step_mode="graph")
    else:
        ops_conv = "sb-macs-v1"
    macs = macs or MACS[arch]
    rec = {
        "schema_version": 1, "status": "complete", "spec": spec,
        "dataset": {"name": dataset, "n_train": n_train, "n_val": n_test, "n_test": n_test},
        "method_info": {"reconstruction": False}, "params": 100_000,
        "ops": {"macs_fwd": macs, "macs_bwd": 2 * macs, "convention": {"id": ops_conv},
                "breakdown_fwd": {"conv_linear": (0.95 - fft_share) * macs, "fft": fft_share * macs,
                                  "complex_products": 0.0, "elementwise": 0.05 * macs, "other": 0.0}},
        "metrics": {"epochs_done": epochs, "test_error": test_error, "test_acc": 1 - test_error,
                    "val_acc": 1 - test_error},
        "timing": timing, "memory": {"peak_mb": 500.0}, "environment": env,
    }
    if new_fields:
        rec["contention"] = {
            "load_start": [4.52 if unreliable else 0.3] * 3, "load_end": [4.4 if unreliable else 0.2] * 3,
            "cores": 2, "epoch_train_s": {"min": s_per_epoch, "median": s_per_epoch, "max": s_per_epoch},
            "unreliable": unreliable, "reasons": [REASON] if unreliable else []}
    key = json.dumps({k: v for k, v in spec.items() if k != "seed"}, sort_keys=True)
    run_id = f"{hashlib.sha256(key.encode()).hexdigest()[:12]}-s{seed}"
    rec["run_id"] = run_id
    d = root / dataset / f"{method}-{arch}" / run_id
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps(rec))
    lines = ["epoch,train_loss,train_acc,val_loss,val_acc,lr,train_s,eval_s,data_s"]
    for e in range(1, epochs + 1):
        acc = (1 - test_error) * (0.9 + 0.1 * e / epochs)
        lines.append(f"{e},0.5,{acc},0.4,{acc},0.001,{s_per_epoch},0.1,0.1")
    (d / "history.csv").write_text("\n".join(lines) + "\n")
    return rec


def build_tree(root: Path) -> Path:
    for (method, arch, seed), err in ERRORS.items():
        # seed 1 of cnn/lenet5 ran on an overloaded machine
        loaded = (method, arch, seed) == ("cnn", "lenet5", 1)
        write_run(root, method, arch, seed, err, unreliable=loaded,
                  s_per_epoch=LOADED_S if loaded else CLEAN_S)
    # every run of spectral-pooling at 1 thread flagged (a row with only unreliable timings)
    for seed in (0, 1):
        write_run(root, "spectral-pooling", "rippel-sp", seed, 0.6 + seed / 100, threads=1,
                  unreliable=True, s_per_epoch=LOADED_S)
    # the same cnn/lenet5 at 1 thread, and with TF32: never averaged with the 2-thread fp32 runs
    write_run(root, "cnn", "lenet5", 0, 0.300, threads=1)
    write_run(root, "cnn", "lenet5", 0, 0.400, precision="tf32")
    # an old record without the new fields
    write_run(root, "cnn", "lenet5", 0, 0.200, new_fields=False, subset=0, n_train=55000,
              n_test=10000)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("records") / "results")


@pytest.fixture(scope="module")
def report(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    md, htm = render.write_report(str(tree), str(out), progress=False)
    return md.read_text(), htm.read_text(), out


def table_rows(md: str, setting_heading: str) -> list[list[str]]:
    """The body rows of the first table after the heading that contains `setting_heading`."""
    lines = md.split("\n")
    start = next(i for i, ln in enumerate(lines) if setting_heading in ln and not ln.startswith("|"))
    rows, seen = [], False
    for ln in lines[start + 1:]:
        if ln.startswith("|"):
            seen = True
            if not set(ln) <= set("|:- "):
                rows.append([c.strip() for c in ln.strip("|").split("|")])
        elif seen:
            break
    return rows


def setting_number(md: str, text: str) -> int:
    """The number of the setting whose description contains `text` (from the Settings table)."""
    for line in md.split("## Settings")[1].split("## Comparison")[0].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 2 and text in cells[1]:
            return int(cells[0])
    raise AssertionError(f"no setting with {text!r}")


MAIN = "5,000 train / 1,000 test (--subset 5000: val and test cut to N/5) · budget short · " \
       "precision fp32 · ops sb-macs-v2 · cpu: Test CPU · 2 threads"


def comparison_rows(md: str, description: str) -> dict:
    comp = md.split("## Comparison")[1].split("## Paper vs measured")[0]
    n = setting_number(md, description)
    header, *body = table_rows(comp, f"Setting {n}:")
    return {(r[0], r[1]): dict(zip(header, r)) for r in body}


def paired_rows(md: str, description: str) -> dict:
    comp = md.split("## Comparison")[1].split("## Paper vs measured")[0]
    n = setting_number(md, description)
    header, *body = table_rows(comp, f"Setting {n}, paired by seed")
    return {(r[0], r[1]): dict(zip(header, r)) for r in body}


def t_bounds(values, lo=0.0, hi=1.0):
    m = statistics.mean(values)
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, max(lo, m - half), min(hi, m + half)


def test_n2_shows_values_and_no_interval(report):
    md, htm, _ = report
    rows = comparison_rows(md, MAIN)
    # n = 2: both values, sorted, and n; no interval of any form
    assert rows[("cnn", "lenet5")]["test error"] == "3.40, 4.10% (n=2)"
    assert rows[("spectral-param", "lenet5")]["test error"] == "3.00, 3.60% (n=2)"
    assert "±" not in md and "±" not in htm
    for row in rows.values():
        if row["n"] == "2":
            assert "[" not in row["test error"]


def test_n3_interval_is_the_clipped_t_interval(report):
    md, _, _ = report
    rows = comparison_rows(md, MAIN)
    for method in ("cnn", "spectral-param"):
        errs = [ERRORS[(method, "vgg-small", s)] for s in range(3)]
        m, lo, hi = t_bounds(errs)
        assert rows[(method, "vgg-small")]["test error"] == \
            f"{100 * m:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] (n=3)"
    # these intervals run past 0 and 100% unclipped: the clipping is exercised
    assert t_bounds([ERRORS[("cnn", "vgg-small", s)] for s in range(3)], -9, 9)[1] < 0
    assert t_bounds([ERRORS[("spectral-param", "vgg-small", s)] for s in range(3)], -9, 9)[2] > 1


def test_every_interval_in_the_report_is_within_bounds(report, tree):
    md, _, _ = report
    pct = re.findall(r"\[(-?[\d.]+), (-?[\d.]+)\] \(n=", md.split("## Comparison")[1].split("## Figures")[0])
    pp = re.findall(r"\[([+-][\d.]+), ([+-][\d.]+)\] \(n=", md)
    assert pct and pp
    for lo, hi in pct:
        lo, hi = float(lo), float(hi)
        if (lo, hi) in {(float(a), float(b)) for a, b in pp}:
            continue
        assert 0 <= lo <= hi <= 100
    for lo, hi in pp:
        assert -100 <= float(lo) <= float(hi) <= 100
    runs, _ = aggregate.load_runs(tree, progress=False)
    s = aggregate.summarize(runs)
    has = s["n"] >= 3
    assert ((s.loc[has, "test_error_low"] >= 0) & (s.loc[has, "test_error_high"] <= 1)).all()
    assert s.loc[~has, "test_error_low"].isna().all()


def test_pairs_only_within_one_architecture(report):
    md, _, _ = report
    rows = paired_rows(md, MAIN)
    assert rows[("spectral-param", "lenet5")]["baseline"] == "cnn/lenet5"
    assert rows[("spectral-param", "vgg-small")]["baseline"] == "cnn/vgg-small"
    # lenet5, n = 2 pairs: the two differences, no interval
    d = sorted(ERRORS[("spectral-param", "lenet5", s)] - ERRORS[("cnn", "lenet5", s)] for s in (0, 1))
    assert rows[("spectral-param", "lenet5")]["Δ test error (method − baseline)"] == \
        f"{100 * d[0]:+.2f}, {100 * d[1]:+.2f} pp (n=2)"
    # vgg-small, n = 3: the paired t-interval against the vgg-small cnn, clipped to ±100 pp
    diffs = [ERRORS[("spectral-param", "vgg-small", s)] - ERRORS[("cnn", "vgg-small", s)]
             for s in range(3)]
    m, lo, hi = t_bounds(diffs, -1, 1)
    assert rows[("spectral-param", "vgg-small")]["Δ test error (method − baseline)"] == \
        f"{100 * m:+.2f} pp [{100 * lo:+.2f}, {100 * hi:+.2f}] (n=3)"
    # rippel-sp has no cnn twin: said so, nothing computed
    sp = rows[("spectral-pooling", "rippel-sp")]
    assert sp["baseline"].startswith("no same-arch baseline") and sp["n pairs"] == "0"
    assert sp["Δ test error (method − baseline)"] == "–"
    # no row anywhere pairs one architecture with another's baseline
    for (method, arch), row in rows.items():
        assert row["baseline"].startswith((f"cnn/{arch}", "no same-arch baseline"))


def test_declared_cross_arch_baseline_is_named(tree):
    runs, _ = aggregate.load_runs(tree, progress=False)
    p = aggregate.paired_vs(runs, "cnn/lenet5")
    sp = p[(p["method"] == "spectral-pooling") & (p["diff"].map(lambda d: d.n) == 2)].iloc[0]
    assert sp["baseline"] == "cnn/lenet5: declared baseline, other architecture"
    assert sp["diff"].values == tuple(sorted(
        ERRORS[("spectral-pooling", "rippel-sp", s)] - ERRORS[("cnn", "lenet5", s)] for s in (0, 1)))


def test_contention_flag_and_timing_not_mixed(report):
    md, htm, _ = report
    rows = comparison_rows(md, MAIN)
    cnn = rows[("cnn", "lenet5")]
    # the flagged seed is left out of the timing mean (clean seed only) and the row is marked
    assert cnn["s/epoch"] == f"{CLEAN_S:.2f} {render.EXCLUDED}"
    assert cnn["n"] == "2"     # its accuracy still counts
    assert REASON in md and "seed 1" in md
    # a row whose runs are all flagged: timing shown, marked unreliable, with the reasons
    flagged = comparison_rows(md, "precision fp32 · ops sb-macs-v2 · cpu: Test CPU · 1 thread")
    sp = flagged[("spectral-pooling", "rippel-sp")]
    assert sp["s/epoch"] == f"{LOADED_S:.2f} {render.UNRELIABLE}"
    assert sp["img/s"].endswith(render.UNRELIABLE)
    assert f"{render.UNRELIABLE} timing unreliable, spectral-pooling/rippel-sp" in md
    assert "timing unreliable" in htm
    # unflagged rows carry no mark
    assert not rows[("cnn", "vgg-small")]["s/epoch"].endswith((render.UNRELIABLE, render.EXCLUDED))


def test_threads_and_precision_never_averaged_together(report, tree):
    md, _, _ = report
    one = comparison_rows(md, "precision fp32 · ops sb-macs-v2 · cpu: Test CPU · 1 thread")
    tf32 = comparison_rows(md, "precision tf32")
    assert one[("cnn", "lenet5")]["test error"] == "30.00% (n=1)"
    assert tf32[("cnn", "lenet5")]["test error"] == "40.00% (n=1)"
    runs, _ = aggregate.load_runs(tree, progress=False)
    s = aggregate.summarize(runs)
    cnn = s[(s["method"] == "cnn") & (s["arch"] == "lenet5")]
    assert sorted(cnn["n"]) == [1, 1, 1, 2]
    assert cnn["cohort"].nunique() == 4


def test_train_test_sizes_and_subset_marked(report):
    md, _, _ = report
    row = comparison_rows(md, MAIN)[("cnn", "lenet5")]
    assert row["train"] == "5,000 (subset)" and row["test"] == "1,000 (subset)"
    old = comparison_rows(md, "55,000 train / 10,000 test")[("cnn", "lenet5")]
    assert old["train"] == "55,000" and old["test"] == "10,000"


def test_old_records_read_as_unrecorded(report):
    md, _, _ = report
    n = setting_number(md, "55,000 train / 10,000 test")
    desc = next(line for line in md.splitlines() if line.startswith(f"### Setting {n}:"))
    assert "precision unrecorded" in desc and "sb-macs-v1" in desc


def test_paper_vs_measured_names_the_setting(report):
    md, _, _ = report
    pvm = md.split("## Paper vs measured")[1].split("## Figures")[0]
    lines = [ln for ln in pvm.splitlines() if ln.startswith("| cnn ") and "test_error" in ln]
    # one row per setting of ours: never a pooled mean over settings
    assert len(lines) == 4
    assert any("ours trained on a subset" in ln for ln in lines)


def test_figures_one_set_per_setting(report):
    md, htm, out = report
    names = sorted(p.name for p in (out / "figures").glob("*.png"))
    settings = md.split("## Settings")[1].split("## Comparison")[0]
    n_settings = sum(bool(re.match(r"\|\s+\d+\s+\|", ln)) for ln in settings.splitlines())
    assert n_settings == 4   # main, 1 thread, tf32, the old record
    assert sum(n.startswith("acc_macs_") for n in names) == n_settings
    assert htm.count("data:image/png;base64,") == len(names)


def test_html_headers_align_with_their_cells(report):
    _, htm, _ = report
    for table in re.findall(r"<table.*?</table>", htm, re.S):
        heads = re.findall(r'<th class="(\w)"', table)
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S):
            assert re.findall(r'<td class="(\w)"', row) == heads


# --------------------------------------------------------------------------- figures

def test_pareto_front_keeps_only_the_best_of_equal_costs():
    import numpy as np
    from reports.figures import pareto_front
    x = np.array([1.0, 1.0, 2.0, 3.0, 0.5, 3.0])
    y = np.array([0.5, 0.7, 0.6, 0.9, 0.1, 0.8])
    assert list(pareto_front(x, y)) == [4, 1, 3]


@pytest.mark.parametrize("lo,hi", [(2.1e5, 1.0e6), (7.8e7, 1.5e8), (0.7, 9.6), (28.0, 61.0),
                                   (1e3, 1e9), (95.0, 190.0)])
def test_log_ticks_are_few_round_and_in_range(lo, hi):
    from reports.figures import log_ticks
    t = log_ticks(lo, hi)
    assert 1 <= len(t) <= 5 and all(lo <= v <= hi for v in t) and t == sorted(t)
    if hi / lo >= 1.9:
        assert len(t) >= 2
    for v in t:  # 1, 1.5, 2, 3, 4, 5, 6 or 8 times a power of ten
        m = v / 10 ** math.floor(math.log10(v) + 1e-9)
        assert any(math.isclose(m, k) for k in (1, 1.5, 2, 3, 4, 5, 6, 8))


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figures the report functions make, before they are closed."""
    from reports import figures
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path
    monkeypatch.setattr(figures, "save", keep)
    return figs


def test_accuracy_figure_bounds_facets_and_front(tree, tmp_path, captured):
    from reports import figures
    runs, _ = aggregate.load_runs(tree, progress=False)
    s = aggregate.summarize(runs)
    main = s[s["cohort"] == s.loc[s["n"] == 3, "cohort"].iloc[0]]
    figures.accuracy_vs(main, "macs_fwd", "MACs", "t", tmp_path / "a.png")
    fig = captured[-1]
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert set(axes) == {"lenet5", "vgg-small", "rippel-sp"}       # one facet per architecture
    for ax in axes.values():
        assert ax.get_xscale() == "log"
        lo, hi = ax.get_ylim()
        assert 0 <= lo < hi <= 1
        for line in ax.get_lines():                                 # error bars included
            assert all(0 <= y <= 1 for y in line.get_ydata())
        for coll in ax.collections:
            for seg in coll.get_segments():
                assert all(0 <= y <= 1 for _, y in seg)
    # lenet5: cnn and spectral-param at equal MACs -> a one-point front, not drawn;
    # vgg-small: the same; so no facet has a front line, and the legend says why
    dashed = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert not dashed
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any("Pareto front (per architecture" in t for t in legend)
    assert any(t.startswith("no Pareto front line: a single point") and "lenet5: " in t
               and "vgg-small: " in t for t in legend), legend
    assert "single seeds (n < 3: no interval)" in legend
    # a facet with a real front: it is drawn and named
    two = main[main["arch"] == "lenet5"].copy()
    two.loc[two["method"] == "cnn", "macs_fwd"] = 3.0e5
    figures.accuracy_vs(two, "macs_fwd", "MACs", "t", tmp_path / "b.png")
    fig = captured[-1]
    assert [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert any("Pareto" in t.get_text() for t in fig.legends[0].get_texts())


def test_time_figure_marks_unreliable_timings_hollow(tree, tmp_path, captured):
    from reports import figures
    runs, _ = aggregate.load_runs(tree, progress=False)
    s = aggregate.summarize(runs)
    flagged = s[s["timing_unreliable"]]
    assert len(flagged) == 1
    figures.accuracy_vs(s[s["cohort"] == flagged["cohort"].iloc[0]], "train_s", "s", "t",
                        tmp_path / "t.png", mark_unreliable=True)
    fig = captured[-1]
    assert "hollow: timing unreliable" in [t.get_text() for t in fig.legends[0].get_texts()]
    ax = next(a for a in fig.axes if a.get_title() == "rippel-sp")
    assert any(ln.get_markerfacecolor() == "white" for ln in ax.get_lines())


def test_ops_figure_gives_each_architecture_its_own_axis(tree, tmp_path, captured):
    from reports import figures
    runs, _ = aggregate.load_runs(tree, progress=False)
    s = aggregate.summarize(runs)
    figures.ops_breakdown(s[s["cohort"] == s.loc[s["n"] == 3, "cohort"].iloc[0]], "t", tmp_path / "o.png")
    fig = captured[-1]
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["lenet5", "vgg-small", "rippel-sp"]
    # every bar fills a visible part of its own axis (on one shared axis lenet5's would be < 1%)
    for ax in fig.axes:
        right = max(p.get_x() + p.get_width() for p in ax.patches)
        assert right / ax.get_xlim()[1] > 0.9
