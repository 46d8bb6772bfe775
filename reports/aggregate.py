"""Results tree -> tidy DataFrames, and seed statistics.

`load_runs` gives one row per run (every status, so failed, diverged and unfinished
runs stay visible) and one row per (run, epoch). `summarize` groups finished runs by
(method, arch, dataset, budget, device) and gives mean, std and a 95% confidence
interval over seeds. The interval is Student's t (mean ± t(0.975, n-1)·s/√n), the
standard choice for the 2–10 seeds a benchmark can afford; it is NaN for n = 1.
Timings are grouped by device, so runs from different devices never share a row, and
op counts by convention id (`ops.convention.id`: an old record counted under sb-macs-v1
never shares a row, a median or a figure with one counted under sb-macs-v2).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness.errors import UserError

GROUP = ["method", "arch", "dataset", "budget", "variant", "device", "ops_convention"]
# spec keys that never distinguish two configurations of one (method, arch, dataset, budget)
NOT_VARIANT = {"method", "arch", "dataset", "budget", "seed"}
CI_METHOD = "95% Student t-interval over seeds"
OPS_CATEGORIES = ("conv_linear", "fft", "complex_products", "elementwise", "other")


def device_label(env: dict) -> str:
    """'cpu: <processor> x<threads>' or the GPU name: what timings depend on."""
    if env.get("gpu"):
        return f"cuda: {env['gpu']}"
    return f"cpu: {env.get('cpu') or 'unknown'} ({env.get('threads', '?')} threads)"


def at_batch(ops: dict, key: str, batch: int | None):
    """MACs per image at batch size `batch`: per_sample + batch_fixed / batch."""
    ps, bf = ops.get("per_sample") or {}, ops.get("batch_fixed") or {}
    if key in ps and key in bf and batch:
        return ps[key] + bf[key] / batch
    return ops.get(key)


def run_row(directory: Path, rec: dict) -> dict:
    spec = rec.get("spec", {})
    env = rec.get("environment", {})
    m = rec.get("metrics", {})
    t = rec.get("timing", {})
    ops = rec.get("ops", {}) or {}
    row = {
        "run_id": rec.get("run_id"), "dir": str(directory),
        "method": spec.get("method"), "arch": spec.get("arch"), "dataset": spec.get("dataset"),
        "budget": spec.get("budget") or "-", "seed": spec.get("seed"),
        "epochs": spec.get("epochs"), "status": rec.get("status"), "reason": rec.get("reason", ""),
        "epochs_done": m.get("epochs_done"), "test_acc": m.get("test_acc"),
        "test_error": m.get("test_error"), "val_acc": m.get("val_acc"),
        "params": rec.get("params"),
        # per image at the run's batch size: the per-batch work (e.g. weight FFTs) is shared
        "macs_fwd": at_batch(ops, "macs_fwd", spec.get("batch_size")),
        "macs_bwd": at_batch(ops, "macs_bwd", spec.get("batch_size")),
        "macs_fwd_b1": ops.get("macs_fwd"), "macs_bwd_b1": ops.get("macs_bwd"),
        "macs_fwd_paper": ops.get("macs_fwd_paper"),
        "ops_convention": (ops.get("convention") or {}).get("id") or "unknown",
        "ops_error": ops.get("error"),
        "train_s": t.get("train_s"), "train_s_per_epoch": t.get("train_s_per_epoch"),
        "throughput_img_s": t.get("throughput_img_s"),
        "peak_mb": (rec.get("memory") or {}).get("peak_mb"),
        "device": device_label(env), "git_sha": (env.get("git") or {}).get("sha"),
        "git_dirty": (env.get("git") or {}).get("dirty"),
        "torch": (env.get("packages") or {}).get("torch"), "python": env.get("python"),
        "reconstruction": (rec.get("method_info") or {}).get("reconstruction", False),
        "spec_json": json.dumps(spec, sort_keys=True, default=str),
    }
    for cat in OPS_CATEGORIES:
        row[f"fwd_{cat}"] = (ops.get("breakdown_fwd") or {}).get(cat)
    return row


def load_runs(root: Path, run_ids: set[str] | None = None, progress: bool = True):
    """(runs, history) DataFrames for every run directory under `root`.

    With `run_ids`, only those runs are read, and runs of the set that have no
    directory or record yet are listed with status 'missing' or 'unfinished'.
    """
    from tqdm import tqdm

    root = Path(root)
    if not root.exists():
        raise UserError(f"results directory {root} does not exist; run the suite first "
                        f"or pass --results-dir")
    dirs = sorted({p.parent for p in root.rglob("result.json")} |
                  {p.parent for p in root.rglob("checkpoint.pt")})
    rows, hist = [], []
    seen = set()
    for d in tqdm(dirs, desc="reading runs", unit="run", disable=not progress or len(dirs) < 50,
                  file=sys.stderr):
        if run_ids is not None and d.name not in run_ids:
            continue
        seen.add(d.name)
        path = d / "result.json"
        if not path.exists():
            rows.append({"run_id": d.name, "dir": str(d), "status": "unfinished",
                         "reason": "checkpoint only: interrupted or still running"})
            continue
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            rows.append({"run_id": d.name, "dir": str(d), "status": "unreadable", "reason": str(exc)})
            continue
        row = run_row(d, rec)
        rows.append(row)
        hpath = d / "history.csv"
        if hpath.exists():
            with open(hpath) as f:
                for h in csv.DictReader(f):
                    hist.append({**{k: row[k] for k in ("run_id", "method", "arch", "dataset",
                                                         "budget", "seed", "device")},
                                 **{k: float(v) for k, v in h.items()}})
    if run_ids is not None:
        for rid in sorted(run_ids - seen):
            rows.append({"run_id": rid, "status": "missing", "reason": "not run yet"})
    runs = pd.DataFrame(rows)
    history = pd.DataFrame(hist)
    if runs.empty:
        raise UserError(f"no runs found under {root}; run a suite first "
                        f"(python -m harness run --suite FILE) or check --results-dir")
    if "spec_json" in runs:
        runs["variant"] = variants(runs)
        if not history.empty:
            history = history.merge(runs[["run_id", "variant"]], on="run_id", how="left")
    return runs, history


def flatten(spec: dict) -> dict:
    flat = {k: v for k, v in spec.items() if k != "hparams"}
    flat.update(spec.get("hparams") or {})
    return flat


def variants(runs: pd.DataFrame) -> list[str]:
    """Per run, the spec settings that differ between configurations sharing its
    (method, arch, dataset, budget), e.g. 'lr=0.01'; '' when there is one configuration."""
    specs = [flatten(json.loads(s)) if isinstance(s, str) else {} for s in runs["spec_json"]]
    key_of = [tuple(str(r.get(k)) for k in ("method", "arch", "dataset", "budget"))
              for _, r in runs.iterrows()]
    out = []
    for i, spec in enumerate(specs):
        peers = [specs[j] for j in range(len(specs)) if key_of[j] == key_of[i] and specs[j]]
        keys = sorted({k for p in peers for k in p} - NOT_VARIANT)
        differing = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in peers}) > 1]
        out.append(", ".join(f"{k}={spec.get(k)}" for k in differing))
    return out


def t_interval(values) -> tuple[float, float, float, int]:
    """(mean, std, half-width of the 95% t-interval, n) of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    std = float(v.std(ddof=1))
    return mean, std, float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)), n


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, arch, dataset, budget, device) over the complete runs."""
    done = runs[runs["status"] == "complete"]
    out = []
    for key, g in done.groupby(GROUP, dropna=False, sort=True):
        mean, std, ci, n = t_interval(g["test_error"])
        row = dict(zip(GROUP, key))
        row.update(
            n=n, seeds=",".join(str(int(s)) for s in sorted(g["seed"])),
            test_error_mean=mean, test_error_std=std, test_error_ci95=ci,
            macs_fwd=g["macs_fwd"].median(), macs_bwd=g["macs_bwd"].median(),
            params=g["params"].median(),
            train_s_per_epoch=g["train_s_per_epoch"].mean(), train_s=g["train_s"].mean(),
            throughput_img_s=g["throughput_img_s"].mean(), peak_mb=g["peak_mb"].mean(),
            epochs=g["epochs_done"].median(), reconstruction=bool(g["reconstruction"].any()),
            **{f"fwd_{c}": g[f"fwd_{c}"].median() for c in OPS_CATEGORIES},
        )
        out.append(row)
    return pd.DataFrame(out)


def paired_vs(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Test-error difference (method − baseline) over seeds present for both.

    Pairs are matched on (arch family irrelevant) dataset, budget, device and seed,
    which removes the seed-to-seed variance that both runs share.
    """
    done = runs[runs["status"] == "complete"]
    base = done[done["method"] == baseline]
    out = []
    keys = ["dataset", "budget", "device", "seed"]
    for (method, arch, dataset, budget, variant, device, _conv), g in done.groupby(GROUP, sort=True):
        if method == baseline:
            continue
        b = base[(base["dataset"] == dataset) & (base["budget"] == budget) & (base["device"] == device)]
        if b.empty:
            continue
        # same architecture when the baseline ran it, and one baseline configuration only:
        # the same variant if it exists, else the only one; several -> no pairing
        b_same = b[b["arch"] == arch]
        b = b_same if not b_same.empty else b[b["arch"] == b["arch"].iloc[0]]
        if b["variant"].nunique() > 1:
            b = b[b["variant"] == variant]
            if b.empty:
                continue
        merged = g.merge(b, on=keys, suffixes=("", "_base"), validate="one_to_one")
        if merged.empty:
            continue
        diff = merged["test_error"] - merged["test_error_base"]
        mean, std, ci, n = t_interval(diff)
        out.append({"method": method, "arch": arch, "variant": variant,
                    "baseline": f"{baseline}/{b['arch'].iloc[0]}",
                    "dataset": dataset, "budget": budget, "n_pairs": n,
                    "diff_mean": mean, "diff_ci95": ci})
    return pd.DataFrame(out)
