"""Seaborn/matplotlib figures for the report. Deterministic: Agg backend, no timestamps
or software tags in the PNG metadata.

Every figure shows runs of ONE setting (reports.aggregate.COHORT). Cost axes are
logarithmic and faceted by architecture: a LeNet-5 at 4e5 MACs and a Rippel net at
1e8 differ by 250x, and methods are only ever compared at the same architecture.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from reports.aggregate import MIN_N_INTERVAL, seed_stats  # noqa: E402

OPS_LABELS = {"conv_linear": "conv/linear", "fft": "FFT", "complex_products": "complex products",
              "elementwise": "element-wise", "other": "other"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def label(df: pd.DataFrame, with_arch: bool = True) -> pd.Series:
    base = df["method"].astype(str)
    if with_arch:
        base = base + "/" + df["arch"].astype(str)
    if "variant" in df:
        v = df["variant"].fillna("").astype(str)
        base = base + v.where(v == "", " (" + v + ")")
    return base


def styles(names) -> dict:
    """A fixed (colour, marker) pair per name, so a method looks the same in every facet:
    tab10's strong colours for the first ten names, then tab20's light shades of the same
    hues (with other markers), so that no two of up to twenty names share a colour."""
    names = sorted(set(names))
    tab20 = sns.color_palette("tab20", 20)
    palette = tab20[0::2] + tab20[1::2]          # the ten strong shades, then the ten light
    return {n: (palette[i % 20], MARKERS[i % len(MARKERS)]) for i, n in enumerate(names)}


def human(v: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def log_ticks(lo: float, hi: float, max_ticks: int = 5) -> list[float]:
    """Round ticks (1, 2, 5 x 10^k and finer when the range is narrow) in [lo, hi]: at
    least three where possible, at most `max_ticks`, so labels never crowd."""
    ks = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    ticks: list[float] = []
    for mults in ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
        ticks = [m * 10.0 ** k for k in ks for m in mults if lo <= m * 10.0 ** k <= hi]
        if len(ticks) >= 3:
            break
    return ticks[:: math.ceil(len(ticks) / max_ticks)] if len(ticks) > max_ticks else ticks


def log_axis(ax, values, axis: str = "x") -> None:
    """Log scale with a few round, labelled ticks (matplotlib's own labels crowd or vanish
    on ranges under a decade)."""
    v = np.asarray([x for x in values if x > 0], float)
    lo, hi = (v.min(), v.max()) if len(v) else (1.0, 10.0)
    lo, hi = lo / 1.4, hi * 1.4           # room for markers at the ends
    getattr(ax, f"set_{axis}scale")("log")
    getattr(ax, f"set_{axis}lim")(lo, hi)
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(matplotlib.ticker.FixedLocator(log_ticks(lo, hi)))
    a.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: human(x)))
    a.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.tick_params(axis=axis, labelsize=8)


def arch_order(s: pd.DataFrame, col: str) -> list[str]:
    """Architectures from the cheapest to the most expensive (by median `col`)."""
    return list(s.groupby("arch")[col].median().sort_values(kind="stable").index)


def learning_curves(history: pd.DataFrame, title: str, out: Path,
                    archs: list[str] | None = None) -> Path | None:
    """Validation accuracy per epoch, one facet per architecture: the mean over seeds, with
    the tables' interval as a band where a curve has n >= 3 seeds (the 95% Student
    t-interval over seeds, `aggregate.seed_stats`, clipped to [0, 1]), and each seed's own
    curve, thin and without a band, where n < 3."""
    h = history
    if h.empty or "val_acc" not in h:
        return None
    h = h.assign(run=label(h, with_arch=False))
    st = styles(h["run"])
    archs = [a for a in (archs or sorted(h["arch"].unique())) if a in set(h["arch"])]
    fig, axes = plt.subplots(1, len(archs), figsize=(max(5.0, 3.6 * len(archs)), 4.0), squeeze=False)
    kinds = set()
    for ax, arch in zip(axes[0], archs):
        for name, g in h[h["arch"] == arch].groupby("run", sort=True):
            color, marker = st[name]
            ep, mean, lo, hi = [], [], [], []
            for e, ge in g.groupby("epoch", sort=True):
                band = seed_stats(ge["val_acc"].to_numpy(float))
                ep.append(e)
                mean.append(band.mean)
                lo.append(band.low)
                hi.append(band.high)
            ax.plot(ep, mean, marker=marker, ms=4, color=color)
            if g.groupby("epoch")["val_acc"].count().min() >= MIN_N_INTERVAL:
                ax.fill_between(ep, lo, hi, color=color, alpha=0.15, lw=0)
                kinds.add("95% t-interval over seeds (n ≥ 3)")
            else:
                for _, seed_curve in g.groupby("seed", sort=True):
                    seed_curve = seed_curve.sort_values("epoch")
                    ax.plot(seed_curve["epoch"], seed_curve["val_acc"], color=color, lw=0.7,
                            alpha=0.5)
                kinds.add("each seed's curve (n < 3: no interval)")
        ax.set_title(arch, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.set_ylim(max(0.0, ax.get_ylim()[0]), min(1.0, ax.get_ylim()[1]))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0][0].set_ylabel("validation accuracy")
    used = sorted(set(h["run"]))
    handles = [Line2D([], [], color=st[n][0], marker=st[n][1], ms=4, label=n) for n in used]
    fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"{title}: validation accuracy, mean over seeds; {' / '.join(sorted(kinds))}",
                 fontsize=9)
    fig.tight_layout()
    return save(fig, out)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of points not dominated (lower x and higher y is better), sorted by x.
    At equal x only the best y survives, so ties never make a vertical 'front'."""
    order = np.lexsort((-np.asarray(y, float), np.asarray(x, float)))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(front, int)


def accuracy_vs(summary: pd.DataFrame, xcol: str, xlabel: str, title: str, out: Path,
                mark_unreliable: bool = False) -> Path | None:
    """Test accuracy against a cost, one facet per architecture, log cost axis.

    n >= 3: the mean with its (clipped) 95% t-interval; n < 3: the mean and each seed's
    value as small dots, no interval. The Pareto front of a facet is drawn (and named
    in the legend) only when it has at least two points.
    """
    s = summary[summary[xcol].notna() & (summary[xcol] > 0)]
    if s.empty:
        return None
    s = s.assign(name=label(s, with_arch=False))
    st = styles(s["name"])
    archs = arch_order(s, "macs_fwd" if "macs_fwd" in s else xcol)   # the same order in every figure
    # each facet its own y range: methods are compared within an architecture only
    fig, axes = plt.subplots(1, len(archs), figsize=(max(5.0, 3.6 * len(archs)), 4.0), squeeze=False)
    front_drawn, seeds_drawn, hollow = False, False, False
    for ax, arch in zip(axes[0], archs):
        ys = []
        sub = s[s["arch"] == arch]
        x = sub[xcol].to_numpy(float)
        acc = 1 - sub["test_error_mean"].to_numpy(float)
        for i, (_, r) in enumerate(sub.iterrows()):
            color, marker = st[r["name"]]
            face = color
            if mark_unreliable and r.get("timing_unreliable"):
                face, hollow = "white", True
            if r["n"] >= MIN_N_INTERVAL:
                lo, hi = 1 - r["test_error_high"], 1 - r["test_error_low"]   # clipped already
                ax.errorbar(x[i], acc[i], yerr=[[acc[i] - lo], [hi - acc[i]]], fmt=marker,
                            capsize=3, color=color, mfc=face, ms=6)
                ys += [lo, hi]
            else:
                ax.plot(x[i], acc[i], marker=marker, color=color, mfc=face, ms=6, ls="none")
                vals = [1 - v for v in r["test_error_values"]]
                ax.plot([x[i]] * len(vals), vals, marker=".", color=color, ms=4, ls="none", alpha=0.8)
                seeds_drawn = True
                ys += vals
            ys.append(acc[i])
        front = pareto_front(x, acc)
        if len(front) >= 2:
            ax.step(x[front], acc[front], where="post", color="grey", ls="--", lw=1)
            front_drawn = True
        log_axis(ax, x)
        ax.set_title(arch, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3, which="major")
        ax.tick_params(axis="y", labelsize=8)
        lo, hi = min(ys), max(ys)
        pad = 0.08 * (hi - lo) + 0.005
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))   # accuracy never leaves [0, 1]
    axes[0][0].set_ylabel("test accuracy")
    handles = [Line2D([], [], color=c, marker=m, ls="none", label=n) for n, (c, m) in st.items()]
    if front_drawn:
        handles.append(Line2D([], [], color="grey", ls="--", lw=1, label="Pareto front (per architecture)"))
    if seeds_drawn:
        handles.append(Line2D([], [], color="k", marker=".", ls="none",
                              label="single seeds (n < 3: no interval)", ms=4))
    if (s["n"] >= MIN_N_INTERVAL).any():
        handles.append(Line2D([], [], color="k", marker="|", ls="none", label="95% t-interval (n ≥ 3)"))
    if hollow:
        handles.append(Line2D([], [], color="k", marker="o", mfc="white", ls="none",
                              label="hollow: timing unreliable"))
    fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, out)


def ops_breakdown(summary: pd.DataFrame, title: str, out: Path, batch: int = 1) -> Path | None:
    """Stacked forward MACs per image at batch `batch` (the report's one batch size) per
    category, one panel per architecture with its own linear axis (on one axis the small
    models' bars would be invisible)."""
    s = summary.drop_duplicates(["method", "arch", "variant"])
    cols = [f"fwd_{c}" for c in OPS_LABELS if f"fwd_{c}" in s]
    if s.empty or not cols or s[cols].isna().all().all():
        return None
    s = s.assign(total=s[cols].fillna(0).sum(axis=1))
    archs = arch_order(s, "total")
    counts = [int((s["arch"] == a).sum()) for a in archs]
    fig, axes = plt.subplots(len(archs), 1, figsize=(7.5, 0.32 * sum(counts) + 0.9 * len(archs) + 0.6),
                             gridspec_kw={"height_ratios": [c + 1.2 for c in counts]}, squeeze=False)
    colors = sns.color_palette("Set2")
    for ax, arch in zip(axes[:, 0], archs):
        sub = s[s["arch"] == arch].sort_values("total", kind="stable")
        names = list(label(sub, with_arch=False))
        data = sub[cols].fillna(0).to_numpy(float)
        left = np.zeros(len(names))
        for j, c in enumerate(cols):
            ax.barh(names, data[:, j], left=left, color=colors[j], label=OPS_LABELS[c[4:]])
            left += data[:, j]
        ax.set_title(f"{arch}", fontsize=9, loc="left")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: human(x)))
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, left.max() * 1.05 if left.max() > 0 else 1)
    axes[-1, 0].set_xlabel(f"forward MACs per image at batch {batch}", fontsize=8)
    used = [j for j, c in enumerate(cols) if s[c].fillna(0).gt(0).any()]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[j]) for j in used]
    fig.suptitle(f"{title}: forward MACs by category (each architecture on its own scale)",
                 fontsize=9)
    fig.tight_layout()
    fig.legend(handles, [OPS_LABELS[cols[j][4:]] for j in used], fontsize=8, ncol=len(used),
               loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False)
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
    """One panel per value of `x` (an architecture, a layer shape), each on its own scale,
    with a horizontal bar per `hue` value named on its axis: times differ by orders of
    magnitude between panels, and a shared axis or a legend over the bars hides them."""
    if df.empty or not {x, y, hue} <= set(df.columns):
        return None
    groups = list(dict.fromkeys(df[x]))
    colours = {name: style[0] for name, style in styles(df[hue]).items()}
    per_panel = max(df[df[x] == g][hue].nunique() for g in groups)
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(4.3 * ncols, nrows * (0.22 * per_panel + 1.1) + 0.6))
    for ax, g in zip(axes.flat, groups):
        part = df[df[x] == g].groupby(hue)[y].mean().sort_values()
        ax.barh(list(part.index), part.values, color=[colours[h] for h in part.index])
        ax.set_title(str(g), fontsize=9)
        ax.set_xlabel(y, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, out)
