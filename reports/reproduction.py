"""Did we reproduce the papers? Verdicts per published row, ablation effects, and cost.

Test error (reports/published.toml, reports/published.py), per setting of ours:
- *not comparable* when the paper's setting, recipe, dataset size or architecture is not
  ours, or its budget is longer-than-stated or unknown (`published.mismatches`);
- otherwise the equivalence test of `reports.inference.compare_to_published` (the
  published number counts as one run unless the paper gives its own n and spread):
  *reproduced*, *different* or *inconclusive* (with the seeds that would decide it),
  and *inconclusive (n < 3)* without an interval;
- a shorter run of the paper's recipe is capped: equivalence reads *consistent at a
  reduced budget*, a difference *not comparable* (a shorter run may well differ); it is
  never *reproduced*.
Verdicts are made within one setting, i.e. on one CPU or GPU model: another model moves a
run like another seed, and hardware never caps a verdict.

Op counts: a CNN figure is *reproduced* when the convention's one rule (conv + every
fully connected layer, harness/ops/convention.py) gives the printed figure to its printed
precision, *fitted* when only another reading of the layers does (`PAPER_READINGS`), and
*not reproduced* otherwise.

Ablations (`[[ablation]]`): the test-error change when one component is removed, paired
by seed within one setting (without − with), Holm-adjusted over the ablations of the
setting, with the probability that the component helps and the minimum detectable
difference; the paper's own difference beside it.

Cost: wall-clock minutes per run from the records; one run projected to the paper's
budget as the measured time per epoch (training, validation, checkpoint) times its epochs
plus the fixed costs once (warm-up, graph capture, data load, test evaluation).
"""

from __future__ import annotations

import json
import math

import pandas as pd

from harness.ops.convention import CONVENTION_ID, PAPER_READINGS, PAPER_RULE, paper_figure
from harness.text import plural
from reports import aggregate, inference, published
from reports.formats import fmt_num, fmt_stat, row_stats
from reports.published import load_ablations  # noqa: F401  (the report's entry point)

CONSISTENT = "consistent at a reduced budget"
NOT_COMPARABLE = "not comparable"
FEW_SEEDS = "inconclusive (n < 3)"
WORDS = (inference.REPRODUCED, inference.DIFFERENT, inference.INCONCLUSIVE, FEW_SEEDS, CONSISTENT,
         NOT_COMPARABLE)


def pp(x: float, sign: bool = False) -> str:
    return f"{100 * x:+.2f}" if sign else f"{100 * x:.2f}"


def statistics_reason(eq: inference.Equivalence) -> str:
    m = f"[{pp(-eq.margin, True)}, {pp(eq.margin, True)}] pp"   # the equivalence region
    if eq.n < inference.MIN_N:
        return f"{plural(eq.n, 'seed')}: no interval (needs {inference.MIN_N})"
    interval = f"[{pp(eq.low, True)}, {pp(eq.high, True)}] pp"
    if eq.word == inference.REPRODUCED:
        return f"the 90% interval of ours − paper, {interval}, lies inside {m}"
    if eq.word == inference.DIFFERENT:
        side = "higher" if eq.diff > 0 else "lower"
        return (f"ours is {side} by {pp(abs(eq.diff))} pp (p = {eq.p_diff:.3f}), outside "
                f"{m}")
    text = (f"the 90% interval {interval} is not inside {m}, nor is the difference both "
            f"significant and outside it")
    if eq.seeds is not None:
        return text + (f"; about {eq.seeds} seeds would decide it (80% power at the observed "
                       f"difference and spread)")
    spread = f"s = {pp(eq.spread)} pp"
    if eq.model == "one run":
        spread += ", as ours: the published number is one run"
    if abs(eq.diff) < eq.margin:
        return text + f"; no number of seeds decides it: the spread ({spread}) is too wide for {m}"
    return text + (f"; no number of seeds decides it: the difference lies too close to the margin "
                   f"for the spread ({spread})")


def test_error_verdict(eq: inference.Equivalence, reasons: list[str], reduced: str) -> tuple[str, str]:
    """(verdict word, reason) from the test and the caps (`published.mismatches`)."""
    if reasons:
        return NOT_COMPARABLE, "; ".join(reasons)
    why = statistics_reason(eq)
    if eq.n < inference.MIN_N:
        return FEW_SEEDS, why + (f"; at {reduced}" if reduced else "")
    if not reduced:
        return eq.word, why
    if eq.word == inference.REPRODUCED:
        return CONSISTENT, f"{why}, at {reduced}"
    if eq.word == inference.DIFFERENT:
        return NOT_COMPARABLE, f"at {reduced}, where a shorter run may well differ: {why}"
    return inference.INCONCLUSIVE, f"at {reduced}: {why}"


def macs_verdict(paper: float, terms: tuple[int, int, int] | None, comparable: bool,
                 why_not: str, resolution: float = 1.0) -> tuple[str, str]:
    """(verdict, reason) of a published op count against the paper convention's one rule
    (`terms` = conv, fc, fc_out from the record's paper_terms)."""
    if not comparable:
        return NOT_COMPARABLE, why_not
    if terms is None:
        return NOT_COMPARABLE, "no paper-rule terms in the records (recount: python -m harness ops)"
    rule = paper_figure(terms[0], terms[1])
    rel = 100 * (rule / paper - 1)
    half = (resolution or 1.0) / 2
    if abs(rule - paper) <= half:
        return "reproduced", f"{rule:,} per image under the stated rule ({PAPER_RULE})"
    for name, reading in PAPER_READINGS:
        value = reading(*terms)
        if abs(value - paper) <= half:
            return "fitted", (f"{value:,} only if the paper counted {name}; the stated rule "
                              f"({PAPER_RULE}) gives {rule:,} ({rel:+.2f}%)")
    return "not reproduced", f"{rule:,} per image under the stated rule ({PAPER_RULE}), {rel:+.2f}%"


# --------------------------------------------------------------------------- the table

def _group_runs(runs: pd.DataFrame, o) -> pd.DataFrame:
    done = runs[runs["status"] == "complete"]
    return done[(done["method"] == o["method"]) & (done["arch"] == o["arch"])
                & (done["cohort"] == o["cohort"]) & (done["variant"] == o["variant"])]


def _optional(p, key, scale=1.0):
    v = p.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v * scale


def provenance_flag(g: pd.DataFrame) -> str:
    """'' when every run's code is current, else what is stale or unknown."""
    if "code_state" not in g:
        return ""
    stale = g[g["code_state"] == "stale"]
    unknown = g[g["code_state"] == "unknown"]
    parts = []
    if not stale.empty:
        files = sorted({f for c in stale["code_changed"] for f in str(c).split(", ") if f})
        parts.append(f"stale: {plural(len(stale), 'run')} made by code that has changed since ({', '.join(files)})")
    if not unknown.empty:
        parts.append(f"provenance unknown for {plural(len(unknown), 'run')}")
    return "; ".join(parts)


def _test_error_row(p, recipes, o, g) -> dict:
    eq = inference.compare_to_published(o["test_error_values"], p["value"], p["margin_pp"] / 100,
                                        _optional(p, "paper_n"), _optional(p, "paper_sd_pp", 0.01))
    spec = json.loads(g["spec_json"].iloc[0]) if not g.empty else {}
    reasons, reduced = published.mismatches(p, recipes, spec, float(o["epochs"]), int(o["subset"]),
                                            o["n_train"])
    word, why = test_error_verdict(eq, reasons, reduced)
    diff = (f"{pp(eq.diff, True)} pp [{pp(eq.low, True)}, {pp(eq.high, True)}]"
            if eq.n >= inference.MIN_N else f"{pp(eq.diff, True)} pp" if eq.n else "–")
    return {"paper": f"{pp(p['value'])}%", "difference (90%)": diff, "margin": f"{p['margin_pp']:.2f} pp",
            "verdict": word, "why": why}


def _macs_row(p, o, g, batch: int) -> dict:
    ours = o[p["metric"]]
    terms = None
    if p["metric"] == "macs_fwd" and not g.empty and {"paper_conv", "paper_fc"} <= set(g) \
            and g[["paper_conv", "paper_fc"]].notna().all(axis=None):
        first = g.iloc[0]
        terms = (int(first["paper_conv"]), int(first["paper_fc"]), int(first["paper_fc_out"]))
    comparable = bool(p["comparable"]) and p["metric"] == "macs_fwd"
    word, why = macs_verdict(p["value"], terms, comparable, p["convention"], _optional(p, "resolution") or 1)
    ref = paper_figure(terms[0], terms[1]) if (terms and comparable) else ours
    diff = f"{100 * (ref / p['value'] - 1):+.2f}%" if ref and not math.isnan(ref) else "–"
    ours_txt = f"{fmt_num(ours, 4)} at batch {batch}"
    if terms and comparable:
        ours_txt += f" (paper rule: {paper_figure(terms[0], terms[1]):,} per image)"
    return {"paper": fmt_num(p["value"], 4), "ours": ours_txt, "difference (90%)": diff,
            "margin": "–", "verdict": word, "why": why}


def paper_vs_measured(entries: pd.DataFrame, recipes: dict, summary: pd.DataFrame,
                      runs: pd.DataFrame, setting_no: dict) -> pd.DataFrame:
    """Each published number beside ours for the same (method, arch, dataset), one row per
    setting and configuration of ours (never pooled), with its verdict and why."""
    rows = []
    batch = int(runs["macs_batch"].iloc[0]) if "macs_batch" in runs and len(runs) else 1
    for _, p in entries.iterrows():
        ours = summary[(summary["method"] == p["method"]) & (summary["arch"] == p["arch"])
                       & (summary["dataset"] == p["dataset"])]
        for _, o in ours.iterrows():
            g = _group_runs(runs, o)
            flags = [provenance_flag(g)]
            if p["metric"] in ("macs_fwd", "macs_bwd") and o.get("ops_convention") != CONVENTION_ID:
                flags.append(f"ours counted under {o.get('ops_convention')}, not {CONVENTION_ID}")
            if p["metric"] == "test_error":
                row = {"ours": fmt_stat(row_stats(o)), **_test_error_row(p, recipes, o, g)}
            elif p["metric"] in ("macs_fwd", "macs_bwd"):
                row = _macs_row(p, o, g, batch)
            else:
                row = {"paper": fmt_num(p["value"], 4), "ours": "–", "difference (90%)": "–",
                       "margin": "–", "verdict": NOT_COMPARABLE,
                       "why": f"{p['metric']} is not measured here"}
            rows.append({"method": p["method"], "arch": p["arch"], "variant": o["variant"] or "–",
                         "dataset": p["dataset"], "metric": p["metric"], "paper": row.pop("paper"),
                         "ours": row.pop("ours"), "ours: setting": setting_no.get(o["cohort"], "–"),
                         "ours: budget": f"{o['budget']} (n={int(o['n'])})", **row,
                         "flag": "; ".join(f for f in flags if f), "source": p["source"],
                         "paper convention": p["convention"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- ablations

def ablation_effects(runs: pd.DataFrame, ablations: list[dict]) -> pd.DataFrame:
    """One row per (ablation, setting of ours): the paired effect of removing a component,
    Holm-adjusted over the ablations of each setting."""
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
            # the component helps when removing it raises the error: better = +1
            effect = inference.paired_effect([float(wo[s] - w[s]) for s in seeds], better=+1)
            rows.append({"ablation": a["name"], "with": a["with"], "without": a["without"],
                         "arch": a["arch"], "cohort": cohort, "n_pairs": effect.n, "diff": effect,
                         "paper_diff": a["paper_without"] - a["paper_with"], "source": a["source"]})
    table = aggregate.holm_per_setting(pd.DataFrame(rows))
    if not table.empty:
        table["verdict"] = [ablation_verdict(e, paper)
                            for e, paper in zip(table["diff"], table["paper_diff"])]
    return table


def ablation_verdict(e: inference.Effect, paper: float) -> str:
    if e.n < inference.MIN_N:
        return f"no verdict: {plural(e.n, 'paired seed')} (needs {inference.MIN_N})"
    if e.p_holm < inference.ALPHA:
        verdict = "removing it hurts" if e.mean > 0 else "removing it helps"
    else:
        verdict = "no detectable effect at this budget"
    inside = e.low <= paper <= e.high
    return verdict + f"; the paper's difference is {'inside' if inside else 'outside'} our 95% interval"


# --------------------------------------------------------------------------- cost

def _col(df: pd.DataFrame, name: str, default: float = 0.0) -> pd.Series:
    return df[name].fillna(default) if name in df else pd.Series(default, index=df.index)


def run_minutes(runs: pd.DataFrame) -> pd.Series:
    """Wall-clock minutes of each run (every session), from its record."""
    return (_col(runs, "wall_s") + _col(runs, "data_load_s") + _col(runs, "test_eval_s")) / 60


def epoch_and_fixed_s(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per run: seconds per epoch (training, validation, checkpoint: the wall time less
    warm-up and graph capture) and the fixed seconds of one session (warm-up and capture
    of one session, data load, test evaluation)."""
    sessions = _col(runs, "sessions", 1.0).clip(lower=1)
    once = _col(runs, "warmup_s") + _col(runs, "capture_s")
    per_epoch = (_col(runs, "wall_s") - once) / _col(runs, "epochs_done", 1.0).clip(lower=1)
    return per_epoch, once / sessions + _col(runs, "data_load_s") + _col(runs, "test_eval_s")


def cost_table(runs: pd.DataFrame, summary: pd.DataFrame, paper_epochs: int = 800) -> pd.DataFrame:
    """Per (method, arch, variant, setting): minutes per run, total, and one run projected
    to `paper_epochs`: time per epoch × epochs + the fixed costs once."""
    done = runs[runs["status"] == "complete"].copy()
    if done.empty:
        return pd.DataFrame()
    done["minutes"] = run_minutes(done)
    done["epoch_s"], done["fixed_s"] = epoch_and_fixed_s(done)
    rows = []
    for key, g in done.groupby(aggregate.GROUP, dropna=False, sort=True):
        rows.append({**dict(zip(aggregate.GROUP, key)), "device": g["device"].iloc[0],
                     "runs": len(g), "min_per_run": g["minutes"].mean(),
                     "min_total": g["minutes"].sum(), "min_per_epoch": g["epoch_s"].mean() / 60,
                     "hours_at_paper_budget": (g["epoch_s"] * paper_epochs + g["fixed_s"]).mean() / 3600,
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
        if isinstance(r.get("precision"), str) and r["precision"] != "fp32":
            mode += f", {r['precision']}"          # one row per precision policy measured
        infer = r.get("infer_ms", 0.0) or 0.0
        per_epoch_s = (steps * ms + math.ceil(val_images / batch) * infer) / 1000
        rows.append({"method": r["method"], "arch": r["arch"], "device": r.get("device_name", ""),
                     "step": mode, "ms_per_step": ms, "hours_per_run": per_epoch_s * epochs / 3600})
    return pd.DataFrame(rows)
