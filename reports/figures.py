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


MAX_OVERLAID = 6   # more curves than this on one axis cannot be told apart: small multiples


def epoch_axis(ax, epochs) -> None:
    """Whole epochs only: ticks at the epochs run (a few of them when there are many), and
    room around a single epoch instead of matplotlib's 0.95 … 1.05."""
    last = int(max(epochs)) if len(epochs) else 1
    pad = max(0.5 if last <= 10 else 0.0, 0.02 * (last - 1))   # whole markers at both ends
    ax.set_xlim(1 - pad, last + pad)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=min(last, 6), integer=True,
                                                             min_n_ticks=1))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:.0f}"))


def curve(ax, g: pd.DataFrame, color, marker, kinds: set, lw: float = 1.5) -> None:
    """One configuration's validation accuracy: the mean over seeds per epoch, with the
    tables' 95% t-interval as a band when every epoch has n >= 3, else each seed's curve."""
    ep, mean, lo, hi = [], [], [], []
    for e, ge in g.groupby("epoch", sort=True):
        band = seed_stats(ge["val_acc"].to_numpy(float))
        ep.append(e)
        mean.append(band.mean)
        lo.append(band.low)
        hi.append(band.high)
    ax.plot(ep, mean, marker=marker, ms=4, color=color, lw=lw)
    if g.groupby("epoch")["val_acc"].count().min() >= MIN_N_INTERVAL:
        ax.fill_between(ep, lo, hi, color=color, alpha=0.15, lw=0)
        kinds.add("band: 95% t-interval over seeds (n ≥ 3)")
    else:
        for _, seed_curve in g.groupby("seed", sort=True):
            seed_curve = seed_curve.sort_values("epoch")
            ax.plot(seed_curve["epoch"], seed_curve["val_acc"], color=color, lw=0.7, alpha=0.5,
                    marker=".", ms=3)       # the dot: a one-epoch seed curve is a point
        kinds.add("thin lines and dots: each seed (n < 3, no interval)")


def learning_curves(history: pd.DataFrame, title: str, out: Path,
                    archs: list[str] | None = None, baseline: str = "cnn") -> Path | None:
    """Validation accuracy per epoch (`curve`), one facet per architecture with every
    configuration overlaid, or, when an architecture has more than MAX_OVERLAID of them,
    small multiples: one panel per configuration, all on one y scale, each with the
    baseline's mean curve in grey for reference."""
    h = history
    if h.empty or "val_acc" not in h:
        return None
    h = h.assign(run=label(h, with_arch=False))
    st = styles(h["run"])
    archs = [a for a in (archs or sorted(h["arch"].unique())) if a in set(h["arch"])]
    names = {a: sorted(h[h["arch"] == a]["run"].unique()) for a in archs}
    kinds: set[str] = set()
    if max(len(v) for v in names.values()) <= MAX_OVERLAID:
        fig, axes = plt.subplots(1, len(archs), figsize=(max(5.0, 3.6 * len(archs)), 4.0), squeeze=False)
        panels = [(ax, a, names[a]) for ax, a in zip(axes[0], archs)]
        titles = {a: a for a in archs}
    else:
        # the baseline's panel first: every other panel shows it again in grey
        cells = [(a, n) for a in archs
                 for n in sorted(names[a], key=lambda n: (not n.startswith(baseline + " ") and n != baseline, n))]
        ncols = min(5, len(cells))
        nrows = math.ceil(len(cells) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols + 0.4, 2.1 * nrows + 0.9),
                                 squeeze=False, sharex=True, sharey=True)
        panels = [(ax, a, [n]) for ax, (a, n) in zip(axes.flat, cells)]
        for ax in list(axes.flat)[len(cells):]:
            ax.set_visible(False)
        titles = None
    for ax, arch, runs in panels:
        part = h[h["arch"] == arch]
        if titles is None:       # a small multiple: the baseline in grey behind the method
            base = part[part["method"] == baseline]
            if not base.empty and runs[0] not in set(base["run"]):
                mean = base.groupby("epoch")["val_acc"].mean()
                ax.plot(mean.index, mean.values, color="0.6", ls="--", lw=1)
            ax.set_title(runs[0] + (f" ({arch})" if len(archs) > 1 else ""), fontsize=8)
        else:
            ax.set_title(titles[arch], fontsize=9)
        for name in runs:
            color, marker = st[name]
            curve(ax, part[part["run"] == name], color, marker, kinds)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        epoch_axis(ax, h["epoch"].to_numpy(float))
    for col in axes.T:          # the lowest panel of each column shows the epochs
        shown = [ax for ax in col if ax.get_visible()]
        if shown:
            shown[-1].xaxis.set_tick_params(labelbottom=True)
            shown[-1].set_xlabel("epoch", fontsize=8)
    for row in axes:
        row[0].set_ylabel("validation accuracy", fontsize=8)
    for ax, _, _ in panels:       # accuracy never leaves [0, 1]
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(0.0, lo), min(1.0, hi))
    if titles is not None:
        handles = [Line2D([], [], color=st[n][0], marker=st[n][1], ms=4, label=n)
                   for n in sorted(set(h["run"]))]
        fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
                   frameon=False)
    elif (h["method"] == baseline).any():
        kinds.add(f"grey dashed: {baseline}, mean over seeds")
    fig.suptitle(f"{title}: validation accuracy, mean over seeds; {'; '.join(sorted(kinds))}",
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


def coincident(u: np.ndarray, v: np.ndarray, du: float = 0.03, dv: float = 0.04) -> list[list[int]]:
    """Groups (of 2 or more) of points whose markers would overlap: positions `u`, `v` in
    axis fractions closer than `du` and `dv` (a marker is about 3% of a panel wide),
    joined transitively."""
    parent = list(range(len(u)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i in range(len(u)):
        for j in range(i):
            if abs(u[i] - u[j]) < du and abs(v[i] - v[j]) < dv:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(u)):
        groups.setdefault(root(i), []).append(i)
    return [sorted(g, key=lambda k: (u[k], k)) for g in groups.values() if len(g) > 1]


def accuracy_vs(summary: pd.DataFrame, xcol: str, xlabel: str, title: str, out: Path,
                mark_unreliable: bool = False) -> Path | None:
    """Test accuracy against a cost, one facet per architecture, log cost axis.

    n >= 3: the mean with its (clipped) 95% t-interval; n < 3: the mean and each seed's
    value as small dots, no interval. Points that would hide each other are drawn side by
    side (dodged along the cost axis) and named in a note under the figure. The Pareto
    front of a facet goes through points with reliable timings only (the hollow ones are
    flagged), and is drawn only when it has at least two; a facet whose front is a single point
    (no other point cheaper or more accurate) names it in the legend instead.
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
    dominant: list[str] = []      # facets whose front is one point: none cheaper or better
    dodged: list[str] = []
    for ax, arch in zip(axes[0], archs):
        sub = s[s["arch"] == arch]
        x = sub[xcol].to_numpy(float)
        acc = 1 - sub["test_error_mean"].to_numpy(float)
        ys = list(acc)
        for _, r in sub.iterrows():
            ys += [1 - r["test_error_high"], 1 - r["test_error_low"]] if r["n"] >= MIN_N_INTERVAL \
                else [1 - v for v in r["test_error_values"]]
        ys = [y for y in ys if np.isfinite(y)]
        lo, hi = min(ys), max(ys)
        pad = 0.08 * (hi - lo) + 0.005
        ylim = (max(0.0, lo - pad), min(1.0, hi + pad))   # accuracy never leaves [0, 1]
        log_axis(ax, x)
        xlo, xhi = (math.log10(b) for b in ax.get_xlim())
        u = (np.log10(x) - xlo) / (xhi - xlo)
        v = (acc - ylim[0]) / max(ylim[1] - ylim[0], 1e-12)
        xs = x.copy()      # where each point is drawn: dodged side by side when they coincide
        for group in coincident(u, v):
            for k, i in enumerate(group):
                shift = (k - (len(group) - 1) / 2) * 0.035 * (xhi - xlo)
                xs[i] = x[i] * 10 ** shift
            dodged.append(f"{arch}: " + ", ".join(sub["name"].iloc[i] for i in group))
        for i, (_, r) in enumerate(sub.iterrows()):
            color, marker = st[r["name"]]
            face = color
            if mark_unreliable and r.get("timing_unreliable"):
                face, hollow = "white", True
            if r["n"] >= MIN_N_INTERVAL:
                elo, ehi = 1 - r["test_error_high"], 1 - r["test_error_low"]   # clipped already
                ax.errorbar(xs[i], acc[i], yerr=[[acc[i] - elo], [ehi - acc[i]]], fmt=marker,
                            capsize=3, color=color, mfc=face, ms=6)
            else:
                ax.plot(xs[i], acc[i], marker=marker, color=color, mfc=face, ms=6, ls="none")
                vals = [1 - val for val in r["test_error_values"]]
                ax.plot([xs[i]] * len(vals), vals, marker=".", color=color, ms=4, ls="none", alpha=0.8)
                seeds_drawn = True
        reliable = np.array([not (mark_unreliable and bool(r.get("timing_unreliable")))
                             for _, r in sub.iterrows()], bool)
        idx = np.flatnonzero(reliable)
        front = idx[pareto_front(x[idx], acc[idx])] if len(idx) else idx
        if len(front) >= 2:
            ax.step(x[front], acc[front], where="post", color="grey", ls="--", lw=1)
            front_drawn = True
        elif len(front) == 1 and len(idx) >= 2:
            dominant.append(f"{arch}: {sub['name'].iloc[front[0]]}")
        ax.set_title(arch, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3, which="major")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_ylim(*ylim)
    axes[0][0].set_ylabel("test accuracy")
    handles = [Line2D([], [], color=c, marker=m, ls="none", label=n) for n, (c, m) in st.items()]
    if front_drawn:
        handles.append(Line2D([], [], color="grey", ls="--", lw=1,
                              label="Pareto front (per architecture" +
                                    (", reliable timings only)" if mark_unreliable else ")")))
    if seeds_drawn:
        handles.append(Line2D([], [], color="k", marker=".", ls="none",
                              label="single seeds (n < 3: no interval)", ms=4))
    if (s["n"] >= MIN_N_INTERVAL).any():
        handles.append(Line2D([], [], color="k", marker="|", ls="none", label="95% t-interval (n ≥ 3)"))
    if hollow:
        handles.append(Line2D([], [], color="k", marker="o", mfc="white", ls="none",
                              label="hollow: timing unreliable"))
        if not front_drawn and not dominant:
            handles.append(Line2D([], [], ls="none", label="no Pareto front: fewer than two "
                                                           "reliable timings per architecture"))
    if dominant and not front_drawn:
        # a one-point front is no line; say so, or a reader looks for the missing front
        handles.append(Line2D([], [], ls="none", label="no Pareto front line: a single point,\n"
                                                       "no other is cheaper or more accurate\n("
                                                       + "; ".join(dominant) + ")"))
    fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if dodged:
        fig.text(0.01, -0.02, "Drawn side by side, at one cost and accuracy: " + "; ".join(dodged)
                 + ".", fontsize=7, ha="left", va="top", wrap=True)
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
    fig.suptitle(f"{title}: forward MACs per image at batch {batch}, by category (each "
                 f"architecture on its own scale)", fontsize=9)
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
