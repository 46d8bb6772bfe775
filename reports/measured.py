"""The standalone measurements in a report: whatever of them exists under the results root.

    python -m measure.approx_error  -> <results>/_measure/approx_error.csv  -> a figure
    python -m measure.layers        -> <results>/_measure/layer_bench.csv   -> figures per group
    python -m measure.steps         -> <results>/_measure/step_bench.csv    -> a table, figures
                                       (and render's paper-budget projection of the cost)
(`harness.store.measurement_csv` names the files for both sides.) A file there that is
not a readable CSV (or not a regular file at all) is left out with a warning. A case
that failed (its `error` column) is listed in a table with its error; the figures show
the cases that were measured.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd

from harness import files
from harness.errors import UserError
from harness.text import plural

from harness import store
from reports import figures

APPROX_CSV, LAYER_CSV, STEP_CSV = "approx_error", "layer_bench", "step_bench"


def read_measurement(path: Path) -> pd.DataFrame | None:
    """The measurement CSV at `path`; None (and a warning) when absent or unreadable."""
    if not path.exists():
        return None
    try:
        data = files.read_bounded(path, "measurement", "delete it or measure again", 64 * 2**20)
        return pd.read_csv(io.BytesIO(data))
    except (UserError, ValueError, UnicodeDecodeError) as exc:   # pandas' parser errors are ValueErrors
        print(f"warning: {' '.join(str(exc).split())}; left out of the report", file=sys.stderr)
        return None


def blocks(root: Path, figdir: Path) -> list:
    """Figures (and the step table) of the measurements found under `root`."""
    approx, layer, steps = (store.measurement_csv(root, n) for n in (APPROX_CSV, LAYER_CSV, STEP_CSV))
    blocks: list = []
    if (df := read_measurement(approx)) is not None:
        path = figures.csv_lines(df, "kept_fraction", "mean_rel_error", "method",
                                 "Relative l2 reconstruction error vs fraction of values kept",
                                 figdir / "approx_error.png", logx=True)
        if path:
            blocks.append(("img", path, f"Rippel Fig. 4a analogue ({approx.name})"))
    if (df := read_measurement(layer)) is not None:
        if {"fwd_ms", "bwd_ms", "layer", "shape"} <= set(df.columns):
            failed, df = split_failed(df)
            if not failed.empty:
                blocks += [("p", f"Layer benchmark cases that failed ({layer.name}):"),
                           ("table", failed[[c for c in ("group", "layer", "shape", "error")
                                             if c in failed]])]
            df = df.assign(**{"forward + backward (ms)": df["fwd_ms"] + df["bwd_ms"]})
            for group, g in df.groupby(df["group"] if "group" in df else "all"):
                path = figures.bars(g, "shape", "forward + backward (ms)", "layer",
                                    f"Layer benchmark: {group} (batch {g['batch'].iloc[0]})"
                                    if "batch" in g else f"Layer benchmark: {group}",
                                    figdir / f"layer_bench_{store.slug(str(group))}.png")
                if path:
                    blocks.append(("img", path, f"Layer speed benchmark, {group} ({layer.name})"))
    if (df := read_measurement(steps)) is not None:
        blocks += step_bench_blocks(df, figdir)
    return blocks


STEP_COLUMNS = {"method": "method", "variant": "arch", "device_name": "device",
                "threads": "threads", "precision": "precision", "train_ms": "train ms",
                "train_graph_ms": "graph ms", "train_compiled_ms": "compiled ms",
                "compiled_vs_eager": "compiled / eager", "compile_s": "compile s",
                "infer_ms": "infer ms", "peak_mb": "peak MB", "graph_pool_mb": "graph pool MB",
                "baseline": "baseline", "train_ratio": "train ×", "train_graph_ratio": "graph ×",
                "train_compiled_ratio": "compiled ×", "best_ratio": "best mode ×",
                "vs_fp32": "vs fp32", "infer_ratio": "infer ×", "peak_ratio": "peak mem ×",
                "faults_per_step": "page faults / step",
                "frac_peak_train": "train % of matmul peak", "capture": "capture",
                "error": "error"}


def split_failed(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows with an error, the rows without)."""
    if "error" not in df:
        return df.iloc[:0], df
    failed = df["error"].notna() & (df["error"].astype(str).str.strip() != "")
    return df[failed], df[~failed]


def step_bench_blocks(df: pd.DataFrame, figdir: Path) -> list:
    """The step benchmark (measure.steps): a table and, per device, training-step
    time by method for each architecture."""
    if df.empty or not {"method", "arch", "train_ms"} <= set(df.columns):
        return []
    failed, measured = split_failed(df)
    cols = [c for c in STEP_COLUMNS if c in df.columns and (c != "error" or not failed.empty)]
    table = df[cols].copy()
    for c in cols:
        if c == "frac_peak_train":
            table[c] = [f"{100 * v:.1f}%" if v == v else "–" for v in table[c]]
        elif c.endswith(("_ms", "_mb", "_ratio", "_s", "_step", "vs_eager", "vs_fp32")):
            table[c] = [f"{v:.3g}" if v == v else "–" for v in table[c]]
        elif c == "error":
            table[c] = [v if isinstance(v, str) else "" for v in table[c]]
    blocks = [("h2", "Step benchmark"),
              ("p", f"measure.steps ({STEP_CSV}.csv): one training step "
                    f"(forward, loss, backward, optimizer) at batch {df['batch'].iloc[0]}, eager, "
                    f"(on CUDA) replayed from a CUDA graph and (with --compile) compiled; ×: "
                    f"ratio to the baseline of the same architecture and precision, best mode ×: "
                    f"each in its fastest mode; peak MB: the eager step's allocator footprint "
                    f"(resident state, the batch, the step's peak), graph pool MB: what the "
                    f"graph's private pool adds; op counts "
                    f"{', '.join(sorted(df['convention'].astype(str).unique()))}."
                    + (f" {plural(len(failed), 'case')} failed: {'its' if len(failed) == 1 else 'their'} error is in the table."
                       if not failed.empty else "")),
              ("table", table.rename(columns=STEP_COLUMNS))]
    keys = ["device_name"] + (["precision"] if "precision" in measured else [])
    for i, (key, g) in enumerate(measured.groupby(keys)):
        dev = " ".join(map(str, key))
        if "variant" in g:      # e.g. dct-select/resnet20 and its [input=rgb] baseline
            g = g.assign(method=[m + (v.removeprefix(a) if isinstance(v, str) else "")
                                 for m, a, v in zip(g["method"], g["arch"], g["variant"])])
        path = figures.bars(g, "arch", "train_ms", "method",
                            f"Training step (ms) on {dev}, batch {g['batch'].iloc[0]}",
                            figdir / f"step_bench_{i}_{store.slug(str(dev))}.png")
        if path:
            blocks.append(("img", path, f"Step benchmark on {dev} ({STEP_CSV}.csv)"))
    return blocks
