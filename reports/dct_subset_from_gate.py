"""From DCT gate runs to static subsets (DCTNet's "train with the gate, keep the channels it
switches on most often").

For every finished `dct-select` run with `select=gate` (all runs under the results root, or
the runs of a suite and budget), this rebuilds the model from its record, loads the final
checkpoint, and records each channel's on-frequency on the run's validation split with the
evaluation-mode (deterministic argmax) gate. Runs that differ only in seed are averaged.
It prints, per gate_lambda: the achieved on-fraction (mean over channels and images), the
test error, the per-component on-frequency maps, and the derived static subsets: the k
most frequently selected channels for each requested k (ties: lower component, then lower
u + v, then lower u), as `--set subset=...` strings, with flags saying whether each
component's selection is a down-set and whether the cut falls inside a tie (then the
frequencies do not determine the subset: e.g. every gate always on, or always off).
`--out` writes all of it as JSON.

    python -m reports.dct_subset_from_gate --suite benchmarks/dct-cifar10.toml --budget short
    python -m reports.dct_subset_from_gate --results-dir results --counts 6,12,16
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

import methods
from harness import data as datasets
from harness import store
from harness.errors import UserError
from harness.spec import RunSpec
from harness.store import RunDir, RunRecord
from harness.suite import load_suite
from methods.dct import channel_pairs, is_down_set


def gate_runs(results_root: Path, suite: str | None, budget: str | None):
    """(run directory, RunSpec, record) of finished gate runs."""
    if suite:
        specs = load_suite(suite, budget).specs
        candidates = [(store.run_dir(results_root, s), s) for s in specs]
    else:
        candidates = [(d, RunSpec.from_dict(r["spec"])) for d, r in store.iter_records(results_root)
                      if RunRecord.from_json(r).spec.get("method") == "dct-select"]
    for directory, spec in candidates:
        if spec.method != "dct-select" or spec.hparams.get("select") != "gate":
            continue
        record = RunDir(directory).record()
        if record is None or not record.is_complete:
            print(f"skipping {directory}: not finished", file=sys.stderr)
            continue
        if not RunDir(directory).checkpoint.exists():
            print(f"skipping {directory}: no {store.CHECKPOINT}", file=sys.stderr)
            continue
        yield directory, spec, record


@torch.no_grad()
def on_frequency(directory: Path, spec: RunSpec, data_dir, batch: int = 500) -> torch.Tensor:
    """Per-channel fraction of validation images for which the gate is on (float64, (C,))."""
    data = datasets.load(spec.dataset, data_dir, val_size=spec.val_size,
                         subset=spec.subset or None)
    model = methods.build(spec, data.input_shape, data.num_classes)
    ckpt = torch.load(RunDir(directory).checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    x = data.x_val if len(data.y_val) else data.x_train
    total = torch.zeros(model.gate.channels, dtype=torch.float64)
    for i in range(0, len(x), batch):
        total += model.gate_on(x[i:i + batch]).double().sum(dim=0)
    return total / len(x)


def derive(freq: torch.Tensor, components: int, block: int, count: int) -> dict:
    order = sorted(range(len(freq)), key=lambda k: (-round(freq[k].item(), 12),) +
                   ((lambda c, u, v: (c, u + v, u))(*channel_pairs([k], block)[0])))
    chans = sorted(order[:count])
    pairs = channel_pairs(chans, block)
    down = all(is_down_set([(u, v) for c, u, v in pairs if c == comp])
               for comp in range(components))
    tied = count < len(freq) and abs(freq[order[count - 1]] - freq[order[count]]).item() < 1e-12
    return {"count": count, "channels": chans, "subset": ",".join(map(str, chans)),
            "down_set": down, "tied_at_cut": tied,
            "per_component": [sum(1 for c, _, _ in pairs if c == comp)
                              for comp in range(components)]}


def frequency_map(freq: torch.Tensor, components: int, block: int) -> list:
    """[component][u][v] on-frequencies."""
    return freq.reshape(components, block, block).tolist()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results-dir", default=None,
                    help="results root (default $SPECTRAL_BENCH_RESULTS or ./results)")
    ap.add_argument("--suite", default=None, help="only the gate runs of this suite TOML")
    ap.add_argument("--budget", default=None,
                    help="the suite budget (default: the suite's default)")
    ap.add_argument("--data-dir", default=None, help="dataset directory")
    ap.add_argument("--counts", default="6,12,16", help="subset sizes to derive (default 6,12,16)")
    ap.add_argument("--out", default=None, help="write the table as JSON here")
    args = ap.parse_args(argv)
    try:
        counts = [int(c) for c in args.counts.split(",") if c.strip()]
        root = store.results_root(args.results_dir)
        groups: dict[tuple, list] = defaultdict(list)
        for directory, spec, record in gate_runs(root, args.suite, args.budget):
            freq = on_frequency(directory, spec, args.data_dir)
            hp = dict(spec.hparams)
            key = (spec.dataset, spec.arch, spec.budget, float(hp.pop("gate_lambda")),
                   json.dumps(hp, sort_keys=True))
            groups[key].append({"run": str(directory), "seed": spec.seed, "freq": freq,
                                "test_error": record.metrics.get("test_error"),
                                "block": hp["block"]})
        if not groups:
            raise UserError("no finished dct-select runs with select=gate found; run the gate "
                            "runs of benchmarks/dct-cifar10.toml first")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = []
    print(f"{'dataset':<10} {'budget':<7} {'lambda':>8} {'seeds':>5} {'on-fraction':>11} "
          f"{'test err':>9}  derived subsets")
    for key in sorted(groups):
        dataset, arch, budget, lam, _ = key
        runs = groups[key]
        block = runs[0]["block"]
        n_chan = len(runs[0]["freq"])
        components = n_chan // (block * block)
        freq = torch.stack([r["freq"] for r in runs]).mean(dim=0)
        errs = [r["test_error"] for r in runs if r["test_error"] is not None]
        derived = [derive(freq, components, block, k) for k in counts if k <= n_chan]
        row = {"dataset": dataset, "arch": arch, "budget": budget, "gate_lambda": lam,
               "seeds": [r["seed"] for r in runs], "runs": [r["run"] for r in runs],
               "on_fraction": freq.mean().item(), "on_channels_mean": freq.sum().item(),
               "test_error_mean": sum(errs) / len(errs) if errs else None,
               "on_frequency": frequency_map(freq, components, block), "derived": derived}
        table.append(row)
        subsets = "; ".join(
            f"{d['count']}: {d['subset']}{'' if d['down_set'] else ' (not a down-set)'}"
            f"{' (tie at the cut: order by frequency index)' if d['tied_at_cut'] else ''}"
            for d in derived)
        err = f"{100 * row['test_error_mean']:.2f}%" if errs else "-"
        print(f"{dataset:<10} {budget or '-':<7} {lam:>8g} {len(runs):>5} "
              f"{row['on_fraction']:>11.3f} {err:>9}  {subsets}")
        names = ("Y", "Cb", "Cr") if components == 3 else ("Y",)
        for comp, name in enumerate(names):
            grid = row["on_frequency"][comp]
            print(f"    {name:<2} on-frequency (rows u, cols v): " +
                  " | ".join(" ".join(f"{p:.2f}" for p in r) for r in grid))
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
