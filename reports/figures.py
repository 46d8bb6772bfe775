"""Seaborn figures for the report. Deterministic: Agg backend, fixed bootstrap seed,
no timestamps or software tags in the PNG metadata."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

BOOT_SEED = 0
OPS_LABELS = {"conv_linear": "conv/linear", "fft": "FFT", "complex_products": "complex products",
              "elementwise": "element-wise", "other": "other"}


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def label(df: pd.DataFrame) -> pd.Series:
    base = df["method"].astype(str) + "/" + df["arch"].astype(str)
    if "variant" in df:
        v = df["variant"].fillna("").astype(str)
        base = base + v.where(v == "", " (" + v + ")")
    return base


def learning_curves(history: pd.DataFrame, dataset: str, out: Path) -> Path | None:
    """Validation accuracy per epoch, mean with a 95% bootstrap CI band over seeds."""
    if "dataset" not in history:       # no readable history.csv at all
        return None
    h = history[history["dataset"] == dataset]
    if h.empty or "val_acc" not in h:
        return None
    h = h.assign(run=label(h))
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(h, x="epoch", y="val_acc", hue="run", errorbar=("ci", 95), n_boot=1000,
                 seed=BOOT_SEED, marker="o", ax=ax)
    ax.set(title=f"{dataset}: validation accuracy (mean, 95% bootstrap CI over seeds)",
           xlabel="epoch", ylabel="validation accuracy")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, out)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of points not dominated (lower x and higher y is better), sorted by x."""
    order = np.argsort(x, kind="stable")
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(front, int)


def accuracy_vs(summary: pd.DataFrame, dataset: str, xcol: str, xlabel: str, out: Path,
                logx: bool = True) -> Path | None:
    """Test accuracy (mean ± 95% CI) against a cost, with the Pareto front drawn."""
    s = summary[(summary["dataset"] == dataset) & summary[xcol].notna()]
    if s.empty:
        return None
    x = s[xcol].to_numpy(float)
    acc = 1 - s["test_error_mean"].to_numpy(float)
    err = np.nan_to_num(s["test_error_ci95"].to_numpy(float))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    palette = sns.color_palette("tab10", len(s))
    for i, name in enumerate(label(s)):
        ax.errorbar(x[i], acc[i], yerr=err[i], fmt="o", capsize=3, color=palette[i], label=name)
    front = pareto_front(x, acc)
    ax.step(x[front], acc[front], where="post", color="grey", ls="--", lw=1, label="Pareto front")
    if logx and (x > 0).all():
        ax.set_xscale("log")
    ax.set(title=f"{dataset}: test accuracy vs {xlabel}", xlabel=xlabel,
           ylabel="test accuracy (mean ± 95% CI)", ylim=(0, 1.02))  # CIs of few seeds overshoot
    ax.legend(fontsize=7, loc="best")
    return save(fig, out)


def ops_breakdown(summary: pd.DataFrame, dataset: str, out: Path) -> Path | None:
    """Stacked forward MACs per category for each method."""
    s = summary[summary["dataset"] == dataset].drop_duplicates(["method", "arch"])
    cols = [f"fwd_{c}" for c in OPS_LABELS if f"fwd_{c}" in s]
    if s.empty or not cols or s[cols].isna().all().all():
        return None
    data = s[cols].fillna(0).to_numpy(float)
    names = list(label(s))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    left = np.zeros(len(names))
    for j, c in enumerate(cols):
        ax.barh(names, data[:, j], left=left, label=OPS_LABELS[c[4:]],
                color=sns.color_palette("Set2")[j])
        left += data[:, j]
    ax.set(title=f"{dataset}: forward MACs by category (batch 1)", xlabel="MACs")
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, out)


def csv_lines(df: pd.DataFrame, x: str, y: str, hue: str, title: str, out: Path,
              logx: bool = False, logy: bool = False) -> Path | None:
    """A line plot of an optional benchmark CSV (approximation error, layer speed)."""
    if df.empty or not {x, y, hue} <= set(df.columns):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(df, x=x, y=y, hue=hue, marker="o", errorbar=None, ax=ax)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set(title=title)
    return save(fig, out)


def bars(df: pd.DataFrame, x: str, y: str, hue: str, title: str, out: Path) -> Path | None:
    if df.empty or not {x, y, hue} <= set(df.columns):
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.barplot(df, x=x, y=y, hue=hue, errorbar=None, ax=ax)
    ax.tick_params(axis="x", rotation=30, labelsize=7)
    ax.set(title=title)
    return save(fig, out)
