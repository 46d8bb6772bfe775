"""Rippel et al. §5.2 speed-up of spectral parameterization, from two runs' history.csv files.

    speed-up = E_spatial / E_spectral

E_spatial: the first epoch at which the spatial run reaches its best validation error e*;
E_spectral: the first epoch at which the spectral run's validation error is <= e*. It is an
epoch count, not wall time (as in the paper). If the spectral run never reaches e*, the
speed-up is reported as an upper bound, < E_spatial / epochs_run ("<" in the table).

Pairs come from a suite (every spectral-param run with its spatial-param twin: the same
spec except the method) or from two explicit run directories / history.csv files:

    python -m reports.speedup --suite benchmarks/rippel.toml --budget short
    python -m reports.speedup --spatial RUN_DIR_A --spectral RUN_DIR_B

Prints a Markdown table beside the paper's Table 1(b) and writes a CSV (default
<results>/_analysis/speedup.csv).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from harness import store
from harness.errors import UserError

# Paper Table 1(b), as quoted by oracleofnj's report: (3x3, 5x5)
PAPER = {"rippel-deep": (2.2, 4.8), "rippel-generic": (2.2, 5.1), "rippel-sp": (2.4, 4.8)}
FIELDS = ["arch", "kernel", "seed", "epochs_run_spatial", "epochs_run_spectral",
          "best_val_error_spatial", "epoch_best_spatial", "epoch_reached_spectral",
          "best_val_error_spectral", "speedup", "speedup_bound", "paper_speedup",
          "spatial_dir", "spectral_dir"]


def read_val_errors(path: Path) -> list[float]:
    """Validation error per epoch (1 - val_acc) from a run directory or a history.csv."""
    path = Path(path)
    if path.is_dir():
        path = store.RunDir(path).history
    if not path.exists():
        raise UserError(f"{path} not found; run the suite first (python -m harness run --suite ...)")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UserError(f"{path} has no epochs")
    errs = [1.0 - float(r["val_acc"]) for r in rows]
    if any(math.isnan(e) for e in errs):
        raise UserError(f"{path}: no validation accuracy (val_size = 0?); the speed-up needs it")
    return errs


def speedup(spatial: list[float], spectral: list[float]) -> dict:
    best = min(spatial)
    e_spatial = spatial.index(best) + 1
    reached = next((i + 1 for i, e in enumerate(spectral) if e <= best + 1e-12), None)
    out = {"epochs_run_spatial": len(spatial), "epochs_run_spectral": len(spectral),
           "best_val_error_spatial": best, "epoch_best_spatial": e_spatial,
           "epoch_reached_spectral": reached, "best_val_error_spectral": min(spectral)}
    if reached is None:
        out.update(speedup=e_spatial / len(spectral), speedup_bound="<")
    else:
        out.update(speedup=e_spatial / reached, speedup_bound="")
    return out


def suite_pairs(suite_path: str, budget: str | None, results_dir) -> list[tuple]:
    from harness.suite import load_suite

    suite = load_suite(suite_path, budget)
    root = store.results_root(results_dir)
    by_key = {}
    for spec in suite.specs:
        if spec.method in ("spatial-param", "spectral-param"):
            key = spec.replace(method="x").to_dict()
            by_key.setdefault(str(sorted(key.items(), key=lambda kv: kv[0])), {})[spec.method] = spec
    pairs = []
    for group in by_key.values():
        if set(group) == {"spatial-param", "spectral-param"}:
            a, b = group["spatial-param"], group["spectral-param"]
            pairs.append((a.arch, a.hparams.get("kernel", ""), a.seed,
                          store.run_dir(root, a), store.run_dir(root, b)))
    if not pairs:
        raise UserError(f"{suite_path}: no spatial-param / spectral-param pairs in budget {suite.budget!r}")
    return pairs


def table(rows: list[dict]) -> str:
    lines = ["| arch | kernel | seed | spatial best val err (epoch) | spectral reaches it at | "
             "speed-up | paper |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        reach = r["epoch_reached_spectral"] if r["epoch_reached_spectral"] else \
            f"not within {r['epochs_run_spectral']}"
        lines.append(f"| {r['arch']} | {r['kernel']}x{r['kernel']} | {r['seed']} | "
                     f"{100 * r['best_val_error_spatial']:.2f}% ({r['epoch_best_spatial']}) | {reach} | "
                     f"{r['speedup_bound']}{r['speedup']:.2f} | {r['paper_speedup']} |")
    return "\n".join(lines)


def paper_value(arch, kernel):
    vals = PAPER.get(arch)
    if not vals or kernel not in (3, 5):
        return ""
    return vals[0] if kernel == 3 else vals[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", help="suite TOML (pairs spectral-param runs with their spatial twins)")
    p.add_argument("--budget", default=None, help="suite budget (default: the suite's default)")
    p.add_argument("--results-dir", default=None, help="results root (default $SPECTRAL_BENCH_RESULTS or ./results)")
    p.add_argument("--spatial", help="spatial run directory or history.csv")
    p.add_argument("--spectral", help="spectral run directory or history.csv")
    p.add_argument("--arch", default="", help="label for --spatial/--spectral")
    p.add_argument("--kernel", type=int, default=0, help="label for --spatial/--spectral")
    p.add_argument("--out", default=None,
                   help="CSV path (default: <results>/_analysis/speedup.csv)")
    args = p.parse_args(argv)
    try:
        if args.suite:
            pairs = suite_pairs(args.suite, args.budget, args.results_dir)
        elif args.spatial and args.spectral:
            pairs = [(args.arch, args.kernel, "", Path(args.spatial), Path(args.spectral))]
        else:
            raise UserError("give --suite, or both --spatial and --spectral")
        rows, missing = [], []
        for arch, kernel, seed, a, b in pairs:
            try:
                res = speedup(read_val_errors(a), read_val_errors(b))
            except UserError as exc:
                missing.append(str(exc))
                continue
            rows.append({"arch": arch, "kernel": kernel, "seed": seed, **res,
                         "paper_speedup": paper_value(arch, kernel),
                         "spatial_dir": str(a), "spectral_dir": str(b)})
        if not rows:
            raise UserError("no finished pairs: " + "; ".join(missing[:2]))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else \
        store.results_root(args.results_dir) / store.ANALYSIS_DIR / "speedup.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    print(table(rows))
    for m in missing:
        print(f"skipped: {m}", file=sys.stderr)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
