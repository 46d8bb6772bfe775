"""reports/figures.py: what a reader sees at a glance (the figure objects are inspected)."""

import numpy as np
import pandas as pd
import pytest

from reports import figures


@pytest.fixture
def drawn(monkeypatch):
    """The figures as drawn, instead of saved."""
    figs = []
    monkeypatch.setattr(figures, "save", lambda fig, path: figs.append(fig) or path)
    return figs


def row(method, macs, acc, time_s, unreliable=False, n=3):
    err = 1 - acc
    return {"method": method, "arch": "lenet5", "variant": "", "n": n, "test_error_mean": err,
            "test_error_low": err - 0.01, "test_error_high": err + 0.01,
            "test_error_values": (err - 0.01, err, err + 0.01)[:n], "macs_fwd": macs,
            "train_s": time_s, "timing_unreliable": unreliable}


def test_coincident_groups():
    u = np.array([0.10, 0.11, 0.50, 0.90, 0.92, 0.94])
    v = np.array([0.50, 0.51, 0.50, 0.20, 0.21, 0.22])
    assert figures.coincident(u, v) == [[0, 1], [3, 4, 5]]
    assert figures.coincident(np.array([0.1, 0.1]), np.array([0.1, 0.9])) == []


def test_coincident_points_are_drawn_apart_and_named(drawn, tmp_path):
    """cemnet and cemnet-no-dropout at one cost and accuracy (before: one hid the other)."""
    s = pd.DataFrame([row("cemnet", 4.9e5, 0.99, 10), row("cemnet-no-dropout", 4.9e5, 0.99, 11),
                      row("cnn", 7.1e5, 0.98, 5)])
    figures.accuracy_vs(s, "macs_fwd", "MACs", "t", tmp_path / "a.png")
    ax = drawn[0].axes[0]
    xs = {round(float(line.get_xdata()[0]), 1) for line in ax.lines if len(line.get_xdata()) == 1
          and line.get_marker() not in ("_", "None", "")}
    assert len(xs) == 3, xs          # three points at three places
    note = " ".join(t.get_text() for t in drawn[0].texts)
    assert "cemnet, cemnet-no-dropout" in note and "cnn" not in note.split(":", 2)[-1]


def test_pareto_front_skips_unreliable_timings(drawn, tmp_path):
    """A hollow (flagged) point that would dominate is not on the front (before: it was)."""
    s = pd.DataFrame([row("a", 1e5, 0.90, 1.0), row("b", 1e5, 0.95, 2.0), row("c", 1e5, 0.97, 4.0),
                      row("fast", 1e5, 0.99, 0.5, unreliable=True)])
    figures.accuracy_vs(s, "train_s", "s", "t", tmp_path / "a.png", mark_unreliable=True)
    ax = drawn[0].axes[0]
    fronts = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(fronts) == 1
    assert sorted(fronts[0].get_xdata()) == [1.0, 2.0, 4.0]
    labels = [t.get_text() for t in drawn[0].legends[0].get_texts()]
    assert "Pareto front (per architecture, reliable timings only)" in labels


def test_a_point_that_beats_every_other_is_named_instead_of_a_front(drawn, tmp_path):
    """The CNN cheaper and more accurate than every CEMNet: no front line, and the legend says
    why (before: the figure simply had no front)."""
    s = pd.DataFrame([row("cnn", 1e5, 0.99, 1.0), row("cemnet", 1e5, 0.98, 2.0),
                      row("cemnet-no-bn-dropout", 1e5, 0.97, 1.5)])
    figures.accuracy_vs(s, "train_s", "s", "t", tmp_path / "a.png", mark_unreliable=True)
    ax = drawn[0].axes[0]
    assert not [line for line in ax.lines if line.get_linestyle() == "--"]
    labels = [t.get_text() for t in drawn[0].legends[0].get_texts()]
    assert any("no other is cheaper or more accurate" in x and "lenet5: cnn" in x
               for x in labels), labels


def history(methods, epochs, seeds=(0, 1, 2)):
    return pd.DataFrame([{"method": m, "arch": "lenet5", "variant": "", "seed": s, "epoch": e,
                          "val_acc": 0.5 + 0.01 * e + 0.001 * s + 0.02 * i}
                         for i, m in enumerate(methods) for s in seeds for e in range(1, epochs + 1)])


def test_one_epoch_has_whole_epoch_ticks(drawn, tmp_path):
    """Before: ticks at 0.95 ... 1.05 for a one-epoch run."""
    figures.learning_curves(history(["cnn", "cemnet"], 1), "t", tmp_path / "l.png")
    ax = drawn[0].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [1.0]


def test_many_methods_become_small_multiples(drawn, tmp_path):
    """Fifteen overlaid curves cannot be told apart: one panel each, the baseline first
    and in grey in the others."""
    names = ["cnn"] + [f"m{i:02d}" for i in range(14)]
    figures.learning_curves(history(names, 3), "t", tmp_path / "l.png")
    panels = [ax for ax in drawn[0].axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels][:2] == ["cnn", "m00"] and len(panels) == 15
    grey = [line for line in panels[1].lines if line.get_linestyle() == "--"]
    assert len(grey) == 1         # the baseline for reference
    few = figures.learning_curves(history(["cnn", "a", "b"], 3), "t", tmp_path / "f.png")
    assert few and len([ax for ax in drawn[1].axes if ax.get_visible()]) == 1
