"""Build the comparison report: tables and figures -> report.md + single-file report.html.

    python -m harness report benchmarks/mnist-table1.toml --out reports/out/mnist
    python -m harness report results/ --out reports/out/all

The report is a list of blocks (heading, text, table, figure) rendered twice: Markdown
with relative image links, and one HTML file with the images embedded as base64.
"""

from __future__ import annotations

import base64
import html
import math
import tomllib
from pathlib import Path

import pandas as pd

from harness.errors import UserError
from reports import aggregate, figures

PUBLISHED = Path(__file__).with_name("published.toml")
PUBLISHED_KEYS = {"method", "arch", "dataset", "metric", "value", "source", "convention",
                  "epochs", "comparable"}
# Optional benchmark CSVs the report picks up when present
BENCH_OUT = Path(__file__).resolve().parent.parent / "benchmarks" / "out"
APPROX_CSV = BENCH_OUT / "approx_error.csv"
LAYER_CSV = BENCH_OUT / "layer_bench.csv"
STEP_CSV = BENCH_OUT / "step_bench.csv"


# --------------------------------------------------------------------------- published

def load_published(path: Path = PUBLISHED) -> pd.DataFrame:
    """The papers' numbers; every entry must name its source and convention."""
    doc = tomllib.loads(Path(path).read_text())
    entries = doc.get("entry", [])
    for i, e in enumerate(entries):
        missing = PUBLISHED_KEYS - set(e)
        if missing:
            raise UserError(f"{path}: entry[{i}] lacks {sorted(missing)}")
        if not str(e["source"]).strip() or not str(e["convention"]).strip():
            raise UserError(f"{path}: entry[{i}] has an empty source or convention")
    return pd.DataFrame(entries)


# --------------------------------------------------------------------------- formatting

def fmt_num(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.{digits}g}{unit}" if x / div < 100 else f"{x / div:.1f}{unit}"
    return f"{x:.{digits}g}"


def fmt_pct_ci(mean, ci) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    if ci is None or math.isnan(ci):
        return f"{100 * mean:.2f}%"
    return f"{100 * mean:.2f} ± {100 * ci:.2f}%"


def comparison_table(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in summary.iterrows():
        name = r["method"] + (" †" if r["reconstruction"] else "")
        rows.append({
            "method": name, "arch": r["arch"], "dataset": r["dataset"], "budget": r["budget"],
            "variant": r["variant"] or "–", "epochs": fmt_num(r["epochs"]), "n": int(r["n"]),
            "test error (95% CI)": fmt_pct_ci(r["test_error_mean"], r["test_error_ci95"]),
            "fwd MACs": fmt_num(r["macs_fwd"]), "bwd MACs": fmt_num(r["macs_bwd"]),
            "params": fmt_num(r["params"]), "s/epoch": f"{r['train_s_per_epoch']:.2f}",
            "s to final epoch": f"{r['train_s']:.1f}", "img/s": f"{r['throughput_img_s']:.0f}",
            "peak MB": f"{r['peak_mb']:.0f}", "device": r["device"],
            "ops convention": r.get("ops_convention", "unknown"),
        })
    return pd.DataFrame(rows)


def paper_vs_measured(published: pd.DataFrame, summary: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each published number beside our measurement(s) of the same (method, arch, dataset)."""
    from harness.ops import CONVENTION_ID

    rows = []
    for _, p in published.iterrows():
        ours = summary[(summary["method"] == p["method"]) & (summary["arch"] == p["arch"])
                       & (summary["dataset"] == p["dataset"])]
        for _, o in ours.iterrows():
            flags = []
            if not p["comparable"]:
                flags.append("not comparable (convention/setting differs)")
            if p["metric"] in ("macs_fwd", "macs_bwd") and o.get("ops_convention") != CONVENTION_ID:
                flags.append(f"ours counted under {o.get('ops_convention')}, not {CONVENTION_ID}")
            if p["metric"] == "test_error" and p["epochs"] and o["epochs"] != p["epochs"]:
                flags.append(f"budget differs: paper {p['epochs']} epochs, ours {fmt_num(o['epochs'])}")
            if p["metric"] == "test_error":
                ours_txt = fmt_pct_ci(o["test_error_mean"], o["test_error_ci95"])
                diff = f"{100 * (o['test_error_mean'] - p['value']):+.2f} pp"
                paper_txt = f"{100 * p['value']:.2f}%"
            elif p["metric"] in ("macs_fwd", "macs_bwd"):
                ours_val = o[p["metric"]]
                paper_conv = None
                if p["metric"] == "macs_fwd":
                    sel = runs[(runs["method"] == p["method"]) & (runs["arch"] == p["arch"])
                               & (runs["dataset"] == p["dataset"])]
                    if "macs_fwd_paper" in sel and sel["macs_fwd_paper"].notna().any():
                        paper_conv = sel["macs_fwd_paper"].dropna().iloc[0]
                ours_txt = fmt_num(ours_val, 4) + (f" (paper convention: {fmt_num(paper_conv, 4)})"
                                                   if paper_conv else "")
                # a comparable figure is the paper's layers only: compare like with like
                ref_val = paper_conv if (paper_conv and p["comparable"]) else ours_val
                diff = (f"{100 * (ref_val / p['value'] - 1):+.1f}%"
                        if ref_val and not math.isnan(ref_val) else "–")
                paper_txt = fmt_num(p["value"], 4)
            else:
                ours_txt, diff, paper_txt = "–", "–", fmt_num(p["value"])
            rows.append({"method": p["method"], "arch": p["arch"], "dataset": p["dataset"],
                         "metric": p["metric"], "paper": paper_txt, "ours": ours_txt,
                         "ours: budget": f"{o['budget']} (n={int(o['n'])})", "difference": diff,
                         "flag": "; ".join(flags) or "", "source": p["source"],
                         "paper convention": p["convention"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- rendering

def to_markdown(blocks, out_dir: Path) -> str:
    parts = []
    for kind, *rest in blocks:
        if kind == "h1":
            parts.append(f"# {rest[0]}\n")
        elif kind == "h2":
            parts.append(f"## {rest[0]}\n")
        elif kind == "p":
            parts.append(rest[0] + "\n")
        elif kind == "table":
            df = rest[0]
            parts.append((df.to_markdown(index=False) if not df.empty else "_none_") + "\n")
        elif kind == "img":
            path, caption = rest
            parts.append(f"![{caption}]({path.relative_to(out_dir).as_posix()})\n")
    return "\n".join(parts)


def to_html(blocks, title: str) -> str:
    body = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "table":
            df = rest[0]
            body.append(df.to_html(index=False, border=0, classes="t", escape=True)
                        if not df.empty else "<p><em>none</em></p>")
        elif kind == "img":
            path, caption = rest
            data = base64.b64encode(path.read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(caption)}" '
                        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}'
                        f"</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "table.t td,table.t th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}figcaption{font-size:12px;color:#555}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def footer(runs: pd.DataFrame) -> pd.DataFrame:
    done = runs[runs["status"].isin(["complete", "diverged", "failed"])]
    items = {
        "devices": sorted(done["device"].dropna().unique()),
        "torch": sorted(done["torch"].dropna().unique()),
        "python": sorted(done["python"].dropna().unique()),
        "git SHAs": sorted({f"{s[:10]}{' (dirty)' if d else ''}"
                            for s, d in zip(done["git_sha"].fillna(""), done["git_dirty"]) if s}),
        "op-count conventions": sorted(done["ops_convention"].dropna().unique()),
        "seeds": sorted(int(s) for s in done["seed"].dropna().unique()),
        "confidence intervals": [aggregate.CI_METHOD],
    }
    return pd.DataFrame([{"item": k, "value": ", ".join(map(str, v)) or "–"} for k, v in items.items()])


def write_report(source: str, out: str, results_dir=None, budget: str | None = None,
                 baseline: str = "cnn", progress: bool = True) -> tuple[Path, Path]:
    """Write report.md, report.html and figures/ for a suite file or a results directory."""
    from harness import store

    out_dir = Path(out)
    src = Path(source)
    run_ids = None
    if src.suffix == ".toml":
        from harness.spec import load_suite
        budgets = [budget] if budget else None
        suite = load_suite(str(src), budget)
        if budgets is None:
            budgets = list(suite.budgets) or [suite.budget]
        specs = [s for b in budgets for s in load_suite(str(src), b).specs]
        run_ids = {s.run_id for s in specs}
        root = store.results_root(results_dir)
        title = f"spectral-bench report: {suite.name}"
    elif src.is_dir():
        root, title = src, f"spectral-bench report: {src}"
    elif not src.exists():
        raise UserError(f"{src} does not exist; pass a suite .toml file or a results directory")
    else:
        raise UserError(f"{src} is neither a suite .toml file nor a results directory")
    runs, history = aggregate.load_runs(root, run_ids, progress=progress)
    if "method" not in runs:
        raise UserError(f"no finished runs for {src} under {root}: "
                        f"{len(runs)} runs are {', '.join(sorted(runs['status'].unique()))}")
    summary = aggregate.summarize(runs)
    paired = aggregate.paired_vs(runs, baseline)
    published = load_published()
    figdir = out_dir / "figures"
    blocks = [("h1", title),
              ("p", f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in
                                                       runs["status"].value_counts().sort_index().items())
               + f". Test error is the final-epoch test error (no selection on the test set); "
                 f"intervals are {aggregate.CI_METHOD}. MACs are per image at the run's batch size "
                 f"(work done once per batch, such as weight FFTs, is shared by the batch) in the "
                 f"harness convention (see footer); the ops breakdown figure is at batch 1; † marks a reconstruction of a method whose "
                 f"formulas are not public.")]
    blocks += [("h2", "Comparison"), ("table", comparison_table(summary) if not summary.empty
                                       else pd.DataFrame())]
    if not paired.empty:
        p = paired.assign(**{"Δ test error (95% CI)": [fmt_pct_ci(m, c) for m, c in
                                                        zip(paired["diff_mean"], paired["diff_ci95"])]})
        blocks += [("h2", f"Paired by seed against {baseline}"),
                   ("p", "Difference in test error (method − baseline) over the seeds both ran."),
                   ("table", p[["method", "arch", "variant", "baseline", "dataset", "budget", "n_pairs",
                                "Δ test error (95% CI)"]])]
    pvm = paper_vs_measured(published, summary, runs) if not summary.empty else pd.DataFrame()
    blocks += [("h2", "Paper vs measured"),
               ("p", "Published numbers (reports/published.toml) beside ours. Flags mark "
                     "different budgets and numbers whose convention does not match ours."),
               ("table", pvm)]
    blocks.append(("h2", "Figures"))
    for ds in sorted(summary["dataset"].unique()) if not summary.empty else []:
        tag = store.slug(ds)
        for path, cap in (
            (figures.learning_curves(history, ds, figdir / f"learning_{tag}.png"),
             f"{ds}: validation accuracy per epoch"),
            *ops_figures(summary, ds, figdir, tag),
            *time_figures(summary, ds, figdir, tag),
        ):
            if path is not None:
                blocks.append(("img", path, cap))
    if APPROX_CSV.exists():
        df = pd.read_csv(APPROX_CSV)
        path = figures.csv_lines(df, "kept_fraction", "mean_rel_error", "method",
                                 "Relative l2 reconstruction error vs fraction of values kept",
                                 figdir / "approx_error.png", logx=True)
        if path:
            blocks.append(("img", path, f"Rippel Fig. 4a analogue ({APPROX_CSV.name})"))
    if LAYER_CSV.exists():
        df = pd.read_csv(LAYER_CSV)
        if {"fwd_ms", "bwd_ms", "layer", "shape"} <= set(df.columns):
            if "error" in df:
                df = df[df["error"].isna()]
            df = df.assign(**{"forward + backward (ms)": df["fwd_ms"] + df["bwd_ms"]})
            for group, g in df.groupby(df["group"] if "group" in df else "all"):
                path = figures.bars(g, "shape", "forward + backward (ms)", "layer",
                                    f"Layer benchmark: {group} (batch {g['batch'].iloc[0]})"
                                    if "batch" in g else f"Layer benchmark: {group}",
                                    figdir / f"layer_bench_{store.slug(str(group))}.png")
                if path:
                    blocks.append(("img", path, f"Layer speed benchmark, {group} ({LAYER_CSV.name})"))
    if STEP_CSV.exists():
        blocks += step_bench_blocks(pd.read_csv(STEP_CSV), figdir)
    problems = runs[runs["status"] != "complete"]
    blocks += [("h2", "Failed, diverged and unfinished runs"),
               ("table", problems.reindex(columns=["method", "arch", "dataset", "budget", "seed",
                                                   "status", "reason", "run_id"]).fillna("–"))]
    blocks += [("h2", "Environment"), ("table", footer(runs))]
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    htm = out_dir / "report.html"
    store.atomic_write(md, lambda f: f.write(to_markdown(blocks, out_dir).encode()))
    store.atomic_write(htm, lambda f: f.write(to_html(blocks, title).encode()))
    return md, htm


def ops_figures(summary: pd.DataFrame, ds: str, figdir: Path, tag: str):
    """Accuracy vs MACs and the MACs breakdown, one pair per op-count convention: counts
    under two conventions never share an axis (file names carry the convention when a
    dataset has runs under more than one)."""
    from harness import store

    s = summary[summary["dataset"] == ds]
    conventions = sorted(s["ops_convention"].dropna().unique()) if "ops_convention" in s else []
    for conv in conventions or [None]:
        part = s if conv is None else s[s["ops_convention"] == conv]
        suffix = "" if len(conventions) <= 1 else f"_{store.slug(str(conv))}"
        label = "" if conv is None else f" ({conv})"
        yield (figures.accuracy_vs(part, ds, "macs_fwd", f"forward MACs{label}",
                                   figdir / f"acc_macs_{tag}{suffix}.png"),
               f"{ds}: accuracy vs forward MACs{label}")
        yield (figures.ops_breakdown(part, ds, figdir / f"ops_{tag}{suffix}.png"),
               f"{ds}: forward MACs by category{label}")


STEP_COLUMNS = {"method": "method", "variant": "arch", "device_name": "device",
                "threads": "threads", "precision": "precision", "train_ms": "train ms",
                "train_graph_ms": "graph ms", "infer_ms": "infer ms", "peak_mb": "peak MB",
                "baseline": "baseline", "train_ratio": "train ×", "train_graph_ratio": "graph ×",
                "infer_ratio": "infer ×", "peak_ratio": "peak mem ×",
                "frac_peak_train": "train % of matmul peak", "capture": "capture"}


def step_bench_blocks(df: pd.DataFrame, figdir: Path) -> list:
    """The step benchmark (benchmarks/step_bench.py): a table and, per device, training-step
    time by method for each architecture."""
    from harness import store

    if df.empty or not {"method", "arch", "train_ms"} <= set(df.columns):
        return []
    if "error" in df:
        df = df[df["error"].isna()]
    cols = [c for c in STEP_COLUMNS if c in df.columns]
    table = df[cols].copy()
    for c in cols:
        if c == "frac_peak_train":
            table[c] = [f"{100 * v:.1f}%" if v == v else "–" for v in table[c]]
        elif c.endswith(("_ms", "_mb", "_ratio")):
            table[c] = [f"{v:.3g}" if v == v else "–" for v in table[c]]
    blocks = [("h2", "Step benchmark"),
              ("p", f"benchmarks/step_bench.py ({STEP_CSV.name}): one training step "
                    f"(forward, loss, backward, optimizer) at batch {df['batch'].iloc[0]}, eager "
                    f"and (on CUDA) replayed from a CUDA graph; ×: ratio to the baseline of the "
                    f"same architecture; op counts {', '.join(sorted(df['convention'].unique()))}."),
              ("table", table.rename(columns=STEP_COLUMNS))]
    for i, (dev, g) in enumerate(df.groupby("device_name")):
        path = figures.bars(g, "arch", "train_ms", "method",
                            f"Training step (ms) on {dev}, batch {g['batch'].iloc[0]}",
                            figdir / f"step_bench_{i}_{store.slug(str(dev))}.png")
        if path:
            blocks.append(("img", path, f"Step benchmark on {dev} ({STEP_CSV.name})"))
    return blocks


def time_figures(summary: pd.DataFrame, ds: str, figdir: Path, tag: str):
    """Accuracy vs training time, one figure per device: timings are never mixed."""
    s = summary[summary["dataset"] == ds]
    for i, dev in enumerate(sorted(s["device"].dropna().unique())):
        yield (figures.accuracy_vs(s[s["device"] == dev], ds, "train_s", "training time to final "
                                   "epoch (s)", figdir / f"acc_time_{tag}_{i}.png"),
               f"{ds}: accuracy vs training time on {dev}")
