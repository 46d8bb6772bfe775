"""One interval method and one MAC batch size for a whole report: learning-curve bands are
the tables' t-interval, and every MAC figure (tables, scatter, ops bars) is per image at
the report's one batch size."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reports import aggregate, figures, render


@pytest.fixture
def captured(monkeypatch):
    figs = []
    monkeypatch.setattr(figures, "save", lambda fig, path: (figs.append(fig), path)[1])
    return figs


def history(seeds: dict) -> pd.DataFrame:
    return pd.DataFrame([{"method": "cnn", "arch": "lenet5", "variant": "", "seed": s, "epoch": e + 1,
                          "val_acc": acc} for s, accs in seeds.items() for e, acc in enumerate(accs)])


def test_learning_curve_band_is_the_t_interval_over_seeds(captured, tmp_path):
    seeds = {0: [0.90, 0.95, 0.97], 1: [0.80, 0.93, 0.96], 2: [0.85, 0.91, 0.99]}
    figures.learning_curves(history(seeds), "t", tmp_path / "l.png")
    (band,) = [c for c in captured[-1].axes[0].collections]
    # fill_between's polygon: the lower edge left to right, then the upper edge back
    verts = band.get_paths()[0].vertices
    per_epoch = np.array(list(seeds.values())).T
    for e, accs in enumerate(per_epoch, start=1):
        lo, hi = stats.t.interval(0.95, len(accs) - 1, loc=accs.mean(), scale=stats.sem(accs))
        ys = verts[np.isclose(verts[:, 0], e), 1]
        assert min(ys) == pytest.approx(max(0.0, lo)) and max(ys) == pytest.approx(min(1.0, hi))
    assert "95% t-interval over seeds" in captured[-1]._suptitle.get_text()


def test_two_seeds_draw_their_curves_and_no_band(captured, tmp_path):
    figures.learning_curves(history({0: [0.9, 0.95], 1: [0.8, 0.93]}), "t", tmp_path / "l.png")
    ax = captured[-1].axes[0]
    assert not ax.collections                       # no band of any kind
    assert len(ax.get_lines()) == 3                 # the mean and each seed's curve
    assert "no interval" in captured[-1]._suptitle.get_text()


def write_run(root, method, seed, b1, per_sample, batch_size=100):
    """A record whose forward count splits into per-sample and per-batch work (weight FFTs)."""
    cats = {"conv_linear": 0, "fft": b1, "complex_products": 0, "elementwise": 0, "other": 0}
    ps = dict(cats, fft=per_sample)
    spec = {"method": method, "arch": "lenet5", "dataset": "mnist", "seed": seed, "epochs": 1,
            "batch_size": batch_size}
    rec = {"run_id": f"{method}{seed}", "status": "complete", "spec": spec,
           "ops": {"macs_fwd": b1, "macs_bwd": 2 * b1, "convention": {"id": "sb-macs-v2"},
                   "breakdown_fwd": cats, "per_sample": {"macs_fwd": per_sample, "macs_bwd": 2 * per_sample,
                                                         "breakdown_fwd": ps}},
           "metrics": {"test_error": 0.01 + seed / 1000, "epochs_done": 1},
           "timing": {"train_s": 1.0, "train_s_per_epoch": 1.0, "throughput_img_s": 10.0},
           "memory": {"peak_mb": 1.0}, "environment": {"cpu": "x", "threads": 1}}
    d = root / f"{method}{seed}"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps(rec))


def cemnet_and_cnn(root):
    for seed in range(3):
        write_run(root, "cemnet", seed, 1_858_871, 478_472)
        write_run(root, "cnn", seed, 709_088, 709_088)


def test_the_report_states_its_one_batch_size(tmp_path):
    cemnet_and_cnn(tmp_path / "r")
    md, _ = render.write_report(str(tmp_path / "r"), str(tmp_path / "out"), progress=False)
    text = md.read_text()
    assert "Every MAC figure in this report is per image at batch 100" in text
    assert "forward MACs per image at batch 100" in text and "batch 1)" not in text


def test_every_mac_figure_is_at_the_reports_one_batch_size(tmp_path, captured):
    """CEMNet-like counts: 1,858,871 MACs at batch 1, of which 478,472 per sample; the CNN
    709,088 with nothing shared. At batch 100 CEMNet is 0.69x the CNN, at batch 1 2.6x: a
    report shows one of them everywhere, never both."""
    cemnet_and_cnn(tmp_path / "r")
    runs, _ = aggregate.load_runs(tmp_path / "r", progress=False)
    assert set(runs["macs_batch"]) == {100}
    s = aggregate.summarize(runs).set_index("method")
    at100 = 478_472 + (1_858_871 - 478_472) / 100
    assert s.loc["cemnet", "macs_fwd"] == pytest.approx(at100)
    assert s.loc["cemnet", "fwd_fft"] == pytest.approx(at100)          # the ops bars too
    assert s.loc["cemnet", "macs_fwd"] / s.loc["cnn", "macs_fwd"] == pytest.approx(0.69, abs=0.01)
    figures.ops_breakdown(s.reset_index(), "t", tmp_path / "o.png", batch=100)
    ax = captured[-1].axes[0]
    assert ax.get_xlabel() == "forward MACs per image at batch 100"
    widths = [p.get_width() for p in ax.patches]
    assert any(w == pytest.approx(at100) for w in widths) and max(widths) < 1_000_000   # not batch 1
    # a suite whose runs train at several batch sizes: the most common one, for every row
    write_run(tmp_path / "r", "cnn", 7, 709_088, 709_088, batch_size=50)
    runs, _ = aggregate.load_runs(tmp_path / "r", progress=False)
    assert set(runs["macs_batch"]) == {100}
