"""Did we reproduce the papers? Verdicts per published row, ablation effects, and cost.

Verdict of a published test error (reports/published.toml) against one setting of ours:
- *not comparable*, when the paper's setting is not ours (`comparable = false`, with the
  entry's convention as the reason), when we trained on a subset, or when we have fewer
  than 3 seeds (no interval);
- *reproduced*, when the paper's number lies inside our 95% t-interval over seeds, or
  within TOLERANCE of it (a stated tolerance: 0.10 percentage points);
- *not reproduced*, with the direction and size: ours higher or lower by the distance
  from the paper's number to our interval.
A verdict is at our budget: when the paper trained longer, the verdict says so.

Ablations (`[[ablation]]` in published.toml): the test-error change when one component is
removed, paired by seed within one setting (`without − with`), with the 95% t-interval
of the paired differences (n >= 3). Removing it *hurts* when the interval lies above 0,
*helps* when below, and has *no detectable effect* at this budget otherwise; the paper's
own difference is shown beside it, and whether it lies inside our interval.

Cost: wall-clock minutes per run from the records (warm-up, training, evaluation,
checkpoints, data loading; `timing.wall_s + data_load_s + test_eval_s`), the sum for the
setting, and the projection of one run to the paper's budget from the measured minutes
per epoch.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pandas as pd

from reports import aggregate

TOLERANCE = 0.001           # 0.10 percentage points of test error
ABLATION_KEYS = {"name", "with", "without", "arch", "dataset", "paper_with", "paper_without",
                 "source"}


def pp(x: float) -> str:
    return f"{100 * x:.2f}"


def test_error_verdict(paper: float, paper_epochs: int, comparable: bool, why_not: str,
                       ours: aggregate.SeedStats, subset: bool, epochs: float) -> str:
    if not comparable:
        return f"not comparable: {why_not}"
    if subset:
        return "not comparable: ours trained on a subset"
    if ours.n < aggregate.MIN_N_INTERVAL:
        return f"not comparable: n = {ours.n} seeds, no interval (needs 3)"
    at = (f" (at {epochs:g} epochs; the paper trained {paper_epochs})"
          if paper_epochs and epochs != paper_epochs else "")
    if ours.low <= paper <= ours.high:
        return f"reproduced: the paper's {pp(paper)}% is inside our interval{at}"
    gap = ours.low - paper if paper < ours.low else paper - ours.high
    if gap <= TOLERANCE:
        return (f"reproduced within the {100 * TOLERANCE:.2f} pp tolerance: the paper's "
                f"{pp(paper)}% is {100 * gap:.2f} pp outside our interval{at}")
    side = "higher" if paper < ours.low else "lower"
    return (f"not reproduced: ours is {side} by {100 * gap:.2f}–{100 * abs(ours.mean - paper):.2f} "
            f"pp (interval edge–mean){at}")


def macs_verdict(paper: float, ours_paper_convention: float | None, comparable: bool,
                 why_not: str) -> str:
    if not comparable:
        return f"not comparable: {why_not}"
    if ours_paper_convention is None or math.isnan(ours_paper_convention):
        return "not comparable: no count in the paper's convention for this architecture"
    rel = ours_paper_convention / paper - 1
    if abs(rel) <= 0.01:
        return f"reproduced: {ours_paper_convention:,.0f} in the paper's convention ({100 * rel:+.2f}%)"
    return f"not reproduced: {ours_paper_convention:,.0f} in the paper's convention ({100 * rel:+.1f}%)"


# --------------------------------------------------------------------------- ablations

def load_ablations(path: Path) -> list[dict]:
    doc = tomllib.loads(Path(path).read_text())
    out = []
    for i, a in enumerate(doc.get("ablation", [])):
        missing = ABLATION_KEYS - set(a)
        if missing:
            from harness.errors import UserError
            raise UserError(f"{path}: ablation[{i}] lacks {sorted(missing)}")
        out.append(a)
    return out


def ablation_effects(runs: pd.DataFrame, ablations: list[dict]) -> pd.DataFrame:
    """One row per (ablation, setting of ours): the paired effect of removing a component."""
    done = runs[runs["status"] == "complete"] if "status" in runs else runs
    rows = []
    for a in ablations:
        sel = done[(done["arch"] == a["arch"]) & (done["dataset"] == a["dataset"])]
        for cohort, g in sel.groupby("cohort", sort=False):
            w = g[g["method"] == a["with"]].set_index("seed")["test_error"]
            wo = g[g["method"] == a["without"]].set_index("seed")["test_error"]
            seeds = sorted(set(w.index) & set(wo.index))
            if not seeds:
                continue
            diffs = [float(wo[s] - w[s]) for s in seeds]
            st = aggregate.seed_stats(diffs, bounds=(-1.0, 1.0))
            paper = a["paper_without"] - a["paper_with"]
            if st.n < aggregate.MIN_N_INTERVAL:
                verdict = f"no verdict: {st.n} paired seeds (needs 3)"
            elif st.low > 0:
                verdict = "removing it hurts"
            elif st.high < 0:
                verdict = "removing it helps"
            else:
                verdict = "no detectable effect at this budget"
            if st.n >= aggregate.MIN_N_INTERVAL:
                verdict += ("; the paper's difference is inside our interval"
                            if st.low <= paper <= st.high else
                            "; the paper's difference is outside our interval")
            rows.append({"ablation": a["name"], "with": a["with"], "without": a["without"],
                         "arch": a["arch"], "cohort": cohort, "n_pairs": st.n, "diff": st,
                         "paper_diff": paper, "verdict": verdict, "source": a["source"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- cost

def run_minutes(runs: pd.DataFrame) -> pd.Series:
    """Wall-clock minutes of each run (every session), from its record."""
    parts = [runs.get(c) for c in ("wall_s", "data_load_s", "test_eval_s")]
    total = sum(p.fillna(0) for p in parts if p is not None)
    return total / 60


def cost_table(runs: pd.DataFrame, summary: pd.DataFrame, paper_epochs: int = 800) -> pd.DataFrame:
    """Per (method, arch, variant, setting): minutes per run, total, and the projection of
    one run to `paper_epochs` from the measured minutes per epoch."""
    done = runs[runs["status"] == "complete"].copy()
    if done.empty:
        return pd.DataFrame()
    done["minutes"] = run_minutes(done)
    rows = []
    for key, g in done.groupby(aggregate.GROUP, dropna=False, sort=True):
        per_epoch = (g["minutes"] / g["epochs_done"].clip(lower=1)).mean()
        rows.append({**dict(zip(aggregate.GROUP, key)), "device": g["device"].iloc[0],
                     "runs": len(g), "min_per_run": g["minutes"].mean(),
                     "min_total": g["minutes"].sum(), "min_per_epoch": per_epoch,
                     "hours_at_paper_budget": per_epoch * paper_epochs / 60,
                     "unreliable": bool(g["unreliable"].any())})
    return pd.DataFrame(rows)


def step_projection(step_csv: pd.DataFrame, train_images: int, val_images: int,
                    epochs: int, archs=("vgg-small", "vgg-large")) -> pd.DataFrame:
    """Hours for one run of `epochs` epochs, from the step benchmark's per-step times
    (training steps at its batch, plus one inference pass over the validation split)."""
    df = step_csv[step_csv["arch"].isin(archs)] if "arch" in step_csv else pd.DataFrame()
    if df.empty:
        return df
    rows = []
    for _, r in df.iterrows():
        batch = float(r.get("batch", 100) or 100)
        steps = math.ceil(train_images / batch)
        ms = r.get("train_graph_ms")
        mode = "graph"
        if ms is None or (isinstance(ms, float) and math.isnan(ms)):
            ms, mode = r["train_ms"], "eager"
        infer = r.get("infer_ms", 0.0) or 0.0
        per_epoch_s = (steps * ms + math.ceil(val_images / batch) * infer) / 1000
        rows.append({"method": r["method"], "arch": r["arch"], "device": r.get("device_name", ""),
                     "step": mode, "ms_per_step": ms, "hours_per_run": per_epoch_s * epochs / 3600})
    return pd.DataFrame(rows)
