"""Results tree -> tidy DataFrames, and seed statistics.

`load_runs` gives one row per run (every status, so failed, diverged and unfinished
runs stay visible) and one row per (run, epoch). Every run gets a *setting* (`cohort`):
the dataset, train/test sizes, budget, precision policy (with cuDNN benchmark and compile
mode), op-count convention, device class and thread count. Only runs of one setting are
ever compared or averaged, so a run with other threads, precision or compile mode is a
separate row, never part of a mean.

`summarize` gives one row per (method, arch, variant, setting) over the finished runs.
Statistics over seeds (`seed_stats`): with n >= 3, the mean and a 95% Student
t-interval (mean ± t(0.975, n-1)·s/√n, the usual choice for the 3–10 seeds a benchmark
affords) clipped to the quantity's range; with n < 3 no interval at all, only the
values and n (a t-interval from 2 values is ±12.7 s and says nothing). Paired
differences follow the same rule.

Paired differences (`paired_vs`) also carry the paired t-test, Holm-adjusted over the
comparisons of one setting (the family), the probability of improvement with its
bootstrap interval and the minimum detectable difference (reports.inference).

MACs are per image at ONE batch size for the whole report (`macs_batch`: the training
batch size of most runs): per_sample + batch_fixed / batch, so that work done once per
batch (weight FFTs) is shared alike in every table and figure.

Each run's code provenance (`code_state`: current, stale or unknown) compares the code
fingerprint in its record with this checkout (harness.fingerprint).

Timings of runs whose record flags contention (`contention.unreliable`) are not
averaged with clean ones: a row's timing is the mean of its clean runs, or, when
every run is flagged, of the flagged runs with the row marked.

Records come from a shared directory, so a field may hold anything: a number that is
not a number reads as missing, and a record the tables cannot use (no method, arch,
dataset or seed; "complete" without a test error) is listed as `unreadable` with the
reason, and named in one warning line on stderr.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness import files, fingerprint, store
from harness.errors import UserError
from harness.ops.convention import CATEGORIES as OPS_CATEGORIES
from harness.store import RunRecord, is_number
from reports import inference

# What makes two runs comparable at all (the "setting"); see the module docstring.
COHORT = ["dataset", "n_train", "n_test", "budget", "precision", "ops_convention",
          "device_class", "threads"]
GROUP = ["method", "arch", "variant", "cohort"]
# spec keys that never distinguish two configurations of one (method, arch, setting)
NOT_VARIANT = {"method", "arch", "dataset", "budget", "seed"}
MIN_N_INTERVAL = 3
CI_METHOD = ("n ≥ 3 seeds: mean and 95% Student t-interval [low, high], clipped to [0, 100]% "
             "(paired differences: to [−100, 100] pp); n < 3: the individual values and n, "
             "no interval")
TIMING_COLS = ("train_s", "train_s_per_epoch", "throughput_img_s")
UNKNOWN = "unrecorded"


def device_class(env: dict) -> str:
    """The processor or GPU model: what timings depend on besides the thread count."""
    if env.get("gpu"):
        return f"cuda: {env['gpu']}"
    return f"cpu: {env.get('cpu') or 'unknown'}"


def device_label(env: dict, threads=None) -> str:
    """'cpu: <processor> (<threads> threads)' or the GPU name."""
    if env.get("gpu"):
        return device_class(env)
    t = threads if threads is not None else env.get("threads", "?")
    return f"{device_class(env)} ({t} thread{'' if t == 1 else 's'})"


def _num(value):
    """A record's number, or None for anything else (a string, a bool, null, NaN)."""
    return value if is_number(value) else None


def _table(value) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value) -> str | None:
    return None if value is None else str(value)


def precision_policy(spec: dict, env: dict) -> str:
    """spec.precision, else environment.precision.policy; unrecorded in older records.
    Runs with cuDNN's algorithm search on (spec.cudnn_benchmark) and compiled runs
    (spec.compile) are policies of their own: never averaged or compared with the others."""
    p = spec.get("precision") or _table(env.get("precision")).get("policy")
    if not p:
        return UNKNOWN
    p = f"{p}, cudnn_benchmark on" if spec.get("cudnn_benchmark") is True else str(p)
    return f"{p}, compile on" if spec.get("compile") is True else p


def precision_flags(env: dict) -> str:
    """The TF32 flags in force during the run, as recorded (environment.precision)."""
    f = _table(env.get("precision"))
    if "tf32_matmul" not in f:
        return UNKNOWN
    return (f"TF32 matmul {'on' if f['tf32_matmul'] else 'off'}, "
            f"cuDNN {'on' if f.get('tf32_cudnn') else 'off'}"
            + (", cuDNN benchmark on" if f.get("cudnn_benchmark") else ""))


def per_image(b1, per_sample, batch: int):
    """MACs per image at `batch` from the batch-1 count and the per-sample part (records
    without the split: the batch-1 count)."""
    if not is_number(per_sample) or not is_number(b1):
        return b1
    return per_sample + (b1 - per_sample) / batch


def macs_batch(runs: pd.DataFrame) -> int:
    """The one batch size of a report's MACs: the training batch size of most finished
    runs (the smaller one on a tie); 1 when none is recorded."""
    done = runs[runs["status"] == "complete"] if "status" in runs else runs
    sizes = done["batch_size"].dropna().astype(int) if "batch_size" in done else pd.Series([], dtype=int)
    if sizes.empty:
        return 1
    counts = sizes.value_counts()
    return int(min(counts[counts == counts.max()].index))


def set_macs_batch(runs: pd.DataFrame, batch: int) -> pd.DataFrame:
    """`macs_fwd`, `macs_bwd` and the forward breakdown (`fwd_<category>`) at `batch`."""
    runs = runs.copy()
    runs["macs_batch"] = batch
    for col in ("macs_fwd", "macs_bwd", *(f"fwd_{c}" for c in OPS_CATEGORIES)):
        if f"{col}_b1" in runs:
            runs[col] = [per_image(b1, ps, batch) for b1, ps in zip(runs[f"{col}_b1"], runs[f"{col}_ps"])]
    return runs


def record_problem(rec: dict) -> str:
    """Why the tables cannot use a record ('' when they can): its spec must name the
    method, arch and dataset (text) and the seed (a whole number); a complete run must
    hold its test error."""
    r = RunRecord.from_json(rec)
    bad = [f"spec.{k}" for k in ("method", "arch", "dataset") if not isinstance(r.spec.get(k), str)]
    seed = r.spec.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        bad.append("spec.seed")
    if r.is_complete and not is_number(r.metrics.get("test_error")):
        bad.append("metrics.test_error")
    return f"lacks {', '.join(bad)} (or holds something else there)" if bad else ""


def run_row(directory: Path, rec: dict) -> dict:
    r = RunRecord.from_json(rec)
    spec, env, m, t, ops, ds = r.spec, r.environment, r.metrics, r.timing, r.ops, r.dataset
    threads = _num(r.threads)
    git, packages = _table(env.get("git")), _table(env.get("packages"))
    reasons = r.contention.get("reasons")
    per_sample, paper_terms = _table(ops.get("per_sample")), _table(ops.get("paper_terms"))
    code = fingerprint.check(env.get("code"))
    row = {
        "run_id": str(r.run_id if r.run_id is not None else directory.name), "dir": str(directory),
        "method": spec.get("method"), "arch": spec.get("arch"), "dataset": spec.get("dataset"),
        "budget": str(spec.get("budget") or "-"), "seed": spec.get("seed"),
        "epochs": _num(spec.get("epochs")), "status": r.status, "reason": _text(r.reason),
        "epochs_done": _num(m.get("epochs_done")), "test_acc": _num(m.get("test_acc")),
        "test_error": _num(m.get("test_error")), "val_acc": _num(m.get("val_acc")),
        "params": _num(r.params),
        "n_train": _num(ds.get("n_train")), "n_val": _num(ds.get("n_val")), "n_test": _num(ds.get("n_test")),
        "subset": int(_num(spec.get("subset")) or 0),
        "precision": precision_policy(spec, env), "precision_flags": precision_flags(env),
        "threads": int(threads) if threads is not None else -1,
        "device_class": device_class(env),
        # per image at batch 1 and the per-sample part; set_macs_batch gives the report's batch
        "batch_size": _num(spec.get("batch_size")),
        "macs_fwd_b1": _num(ops.get("macs_fwd")), "macs_bwd_b1": _num(ops.get("macs_bwd")),
        "macs_fwd_ps": _num(per_sample.get("macs_fwd")), "macs_bwd_ps": _num(per_sample.get("macs_bwd")),
        "macs_fwd_paper": _num(ops.get("macs_fwd_paper")),
        **{f"paper_{k}": _num(paper_terms.get(k)) for k in ("conv", "fc", "fc_out")},
        "ops_convention": str(_table(ops.get("convention")).get("id") or UNKNOWN),
        "ops_error": _text(ops.get("error")),
        "train_s": _num(t.get("train_s")), "train_s_per_epoch": _num(t.get("train_s_per_epoch")),
        "throughput_img_s": _num(t.get("throughput_img_s")), "step_mode": _text(t.get("step_mode")),
        "wall_s": _num(t.get("wall_s")), "data_load_s": _num(t.get("data_load_s")),
        "test_eval_s": _num(t.get("test_eval_s")), "sessions": _num(t.get("sessions")),
        "warmup_s": _num(t.get("warmup_s")), "capture_s": _num(t.get("capture_s")),
        "unreliable": r.unreliable, "bn_unsettled": r.batchnorm_unsettled,
        "unreliable_reasons": "; ".join(map(str, reasons)) if isinstance(reasons, list) else "",
        "peak_mb": _num(r.memory.get("peak_mb")),
        "device": device_label(env, threads),
        "git_sha": str(git["sha"]) if git.get("sha") else None, "git_dirty": git.get("dirty"),
        "code_state": code.state, "code_changed": ", ".join(code.changed), "code_why": code.why,
        "torch": _text(packages.get("torch")), "python": _text(env.get("python")),
        "reconstruction": r.method_info.get("reconstruction", False),
        "spec_json": json.dumps(spec, sort_keys=True, default=str),
    }
    for cat in OPS_CATEGORIES:
        row[f"fwd_{cat}_b1"] = _num(_table(ops.get("breakdown_fwd")).get(cat))
        row[f"fwd_{cat}_ps"] = _num(_table(per_sample.get("breakdown_fwd")).get(cat))
    return row


def cohort_key(row) -> str:
    """The setting of a run as one hashable string (missing sizes read as null)."""
    def plain(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return int(v) if isinstance(v, (int, float, np.integer, np.floating)) else str(v)
    return json.dumps([plain(row.get(k)) for k in COHORT])


def read_history(path: Path, keys: dict) -> list[dict]:
    """The rows of a history.csv as floats, each with `keys`; ValueError if malformed."""
    # a regular file (not a FIFO, device or link) of a sane size: 800 epochs are 100 KB
    data = files.read_bounded(path, "history", "delete it", limit=64 * 2**20)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    out = []
    for h in rows:
        if None in h or any(v is None for v in h.values()):
            raise ValueError("a row with a different number of fields than the header")
        out.append({**keys, **{k: float(v) for k, v in h.items()}})
    return out


def load_runs(root: Path, run_ids: set[str] | None = None, progress: bool = True, warn=None):
    """(runs, history) DataFrames for every run directory under `root`.

    With `run_ids`, only those runs are read, and runs of the set that have no
    directory or record yet are listed with status 'missing' or 'unfinished'. A record
    or history that cannot be used is listed (status 'unreadable', or without a learning
    curve) and named in one line to `warn` (default: a warning on stderr).
    """
    from tqdm import tqdm

    if warn is None:
        def warn(text):
            print(f"warning: {text}", file=sys.stderr)

    root = Path(root)
    if not root.exists():
        raise UserError(f"results directory {root} does not exist; run the suite first "
                        f"or pass --results-dir")
    # hidden folders (a --force run's .staging) are not runs of their own
    dirs = sorted(d for d in ({p.parent for p in root.rglob(store.RESULT)} |
                              {p.parent for p in root.rglob(store.CHECKPOINT)})
                  if not any(part.startswith(".") for part in d.relative_to(root).parts))
    rows, hist = [], []
    seen = set()
    for d in tqdm(dirs, desc="reading runs", unit="run", disable=not progress or len(dirs) < 50,
                  file=sys.stderr):
        if run_ids is not None and d.name not in run_ids:
            continue
        seen.add(d.name)
        rd = store.RunDir(d)
        try:
            rec = rd.read()       # completes an interrupted --force swap first
            problem = "" if rec is None else record_problem(rec)
            if problem:
                raise UserError(f"run record {rd.result} {problem}; delete it, or run it again with --force")
        except UserError as exc:
            reason = " ".join(str(exc).splitlines())
            rows.append({"run_id": d.name, "dir": str(d), "status": "unreadable", "reason": reason})
            warn(f"{reason} (listed as unreadable)")
            continue
        if rec is None:
            rows.append({"run_id": d.name, "dir": str(d), "status": "unfinished",
                         "reason": "checkpoint only: interrupted or still running"})
            continue
        row = run_row(d, rec)
        rows.append(row)
        hpath = rd.history
        if hpath.exists():
            try:
                hist += read_history(hpath, {k: row[k] for k in ("run_id", "method", "arch", "dataset",
                                                                   "budget", "seed", "device")})
            except (OSError, ValueError, TypeError, csv.Error, UserError) as exc:
                # recorded, not fatal: the run keeps its row, without a learning curve
                row["history_error"] = f"{hpath} unreadable ({' '.join(str(exc).split())}); no learning curve"
                warn(row["history_error"])
    if run_ids is not None:
        for rid in sorted(run_ids - seen):
            rows.append({"run_id": rid, "status": "missing", "reason": "not run yet"})
    runs = pd.DataFrame(rows)
    history = pd.DataFrame(hist)
    if runs.empty:
        raise UserError(f"no runs found under {root}; run a suite first "
                        f"(python -m harness run --suite FILE) or check --results-dir")
    if "spec_json" in runs:
        runs["cohort"] = [cohort_key(r) if isinstance(r.get("spec_json"), str) else None
                          for r in rows]
        runs["unreliable"] = runs["unreliable"].fillna(False).astype(bool)
        runs["bn_unsettled"] = runs["bn_unsettled"].fillna(False).astype(bool)
        runs["variant"] = variants(runs)
        runs = set_macs_batch(runs, macs_batch(runs))
        if not history.empty:
            history = history.merge(runs[["run_id", "variant", "cohort"]], on="run_id", how="left")
    return runs, history


def describe_missing(runs: pd.DataFrame, expected: dict) -> pd.DataFrame:
    """Rows of runs without a record (missing, unfinished) named from the suite's spec
    (`expected`: run id -> RunSpec): method, arch, dataset, budget and seed, not blanks."""
    if not expected or runs.empty:
        return runs
    runs = runs.copy()
    for col in ("method", "arch", "dataset", "budget"):
        runs[col] = runs[col].astype(object) if col in runs else None
    if "seed" not in runs:
        runs["seed"] = float("nan")
    for i, r in runs.iterrows():
        spec = expected.get(r["run_id"])
        if spec is None or isinstance(r["method"], str):
            continue
        for col in ("method", "arch", "dataset", "seed"):
            runs.at[i, col] = getattr(spec, col)
        runs.at[i, "budget"] = spec.budget or "-"
    return runs


def flatten(spec: dict) -> dict:
    flat = {k: v for k, v in spec.items() if k != "hparams"}
    flat.update(spec.get("hparams") or {})
    return flat


def variants(runs: pd.DataFrame) -> list[str]:
    """Per run, the spec settings that differ between configurations sharing its
    (method, arch, setting), e.g. 'lr=0.01'; '' when there is one configuration."""
    specs = [flatten(json.loads(s)) if isinstance(s, str) else {} for s in runs["spec_json"]]
    key_of = [(r["method"], r["arch"], r["cohort"]) for _, r in runs.iterrows()]
    out = []
    for i, spec in enumerate(specs):
        peers = [specs[j] for j in range(len(specs)) if key_of[j] == key_of[i] and specs[j]]
        keys = sorted({k for p in peers for k in p} - NOT_VARIANT)
        differing = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in peers}) > 1]
        out.append(", ".join(f"{k}={spec.get(k)}" for k in differing))
    return out


@dataclass(frozen=True)
class SeedStats:
    """Over seeds: n, mean, the sorted values, and the clipped interval (NaN if n < 3)."""
    n: int
    mean: float
    values: tuple[float, ...]
    low: float
    high: float


def seed_stats(values, bounds: tuple[float, float] = (0.0, 1.0)) -> SeedStats:
    """Mean, and for n >= 3 the 95% t-interval clipped to `bounds` (a fraction's range)."""
    v = np.sort(np.asarray([x for x in values if x is not None and np.isfinite(x)], float))
    n = len(v)
    if n == 0:
        return SeedStats(0, math.nan, (), math.nan, math.nan)
    mean = float(v.mean())
    if n < MIN_N_INTERVAL:
        return SeedStats(n, mean, tuple(map(float, v)), math.nan, math.nan)
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return SeedStats(n, mean, tuple(map(float, v)), max(bounds[0], mean - half),
                     min(bounds[1], mean + half))


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, arch, variant, setting) over the complete runs."""
    done = runs[runs["status"] == "complete"]
    out = []
    for key, g in done.groupby(GROUP, dropna=False, sort=True):
        st = seed_stats(g["test_error"])
        first = g.iloc[0]
        clean = g[~g["unreliable"]]
        # flagged timings are never mixed into a clean mean; all flagged -> shown, marked
        timed = clean if not clean.empty else g
        flagged = g[g["unreliable"]]
        row = dict(zip(GROUP, key))
        row.update({k: first[k] for k in COHORT})
        row.update(
            subset=int(g["subset"].max()), device=first["device"],
            n=st.n, seeds=",".join(str(int(s)) for s in sorted(g["seed"])),
            test_error_mean=st.mean, test_error_values=st.values,
            test_error_low=st.low, test_error_high=st.high,
            macs_fwd=g["macs_fwd"].median(), macs_bwd=g["macs_bwd"].median(),
            params=g["params"].median(), peak_mb=g["peak_mb"].mean(),
            **{c: timed[c].mean() for c in TIMING_COLS},
            timing_n=len(timed), timing_unreliable=clean.empty and not flagged.empty,
            timing_excluded=len(flagged) if not clean.empty else 0,
            unreliable_note="; ".join(
                f"seed {int(r['seed'])}: {r['unreliable_reasons'] or 'no reason recorded'}"
                for _, r in flagged.sort_values("seed").iterrows()),
            step_mode=", ".join(sorted({str(m) for m in g["step_mode"].dropna()})),
            bn_unsettled=int(g["bn_unsettled"].fillna(False).astype(bool).sum()) if "bn_unsettled" in g else 0,
            bn_unsettled_seeds=", ".join(str(int(x)) for x in sorted(
                g[g["bn_unsettled"].fillna(False).astype(bool)]["seed"])) if "bn_unsettled" in g else "",
            epochs=g["epochs_done"].median(), reconstruction=bool(g["reconstruction"].any()),
            **{f"fwd_{c}": g[f"fwd_{c}"].median() for c in OPS_CATEGORIES},
        )
        out.append(row)
    df = pd.DataFrame(out)
    if df.empty:
        return df
    return df.sort_values(["cohort", "method", "arch", "variant"], kind="stable").reset_index(drop=True)


def paired_vs(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Test-error difference (method − baseline) paired by seed, within one setting.

    `baseline` is a method name (each method is paired with that method's run at the
    SAME architecture; a method with no such run gets a row that says so, never another
    architecture's baseline) or 'method/arch', a baseline declared for every
    architecture, which the table then names as such. Pairing by seed removes the
    seed-to-seed variance both runs share. `diff` is an `inference.Effect` (lower test
    error is better), Holm-adjusted over the rows of one setting.
    """
    base_method, _, base_arch = baseline.partition("/")
    done = runs[runs["status"] == "complete"]
    out = []
    for (method, arch, variant, cohort), g in done.groupby(GROUP, sort=True):
        if method == base_method and (not base_arch or arch == base_arch):
            continue
        arch_b = base_arch or arch
        b = done[(done["method"] == base_method) & (done["arch"] == arch_b) & (done["cohort"] == cohort)]
        row = {"method": method, "arch": arch, "variant": variant, "cohort": cohort,
               "n_pairs": 0, "diff": inference.paired_effect([], better=-1)}
        if b.empty:
            row["baseline"] = (f"no same-arch baseline ({base_method} has no {arch} run in this setting)"
                               if not base_arch else f"none ({baseline} has no run in this setting)")
            out.append(row)
            continue
        # one baseline configuration only: the same variant if it has several, else the only one
        if b["variant"].nunique() > 1:
            b = b[b["variant"] == variant]
            if b.empty:
                row["baseline"] = f"none ({base_method}/{arch_b} has several configurations, none is {variant!r})"
                out.append(row)
                continue
        name = f"{base_method}/{arch_b}" + (f" ({b['variant'].iloc[0]})" if b["variant"].iloc[0] else "")
        if arch_b != arch:
            name += ": declared baseline, other architecture"
        merged = g.merge(b, on="seed", suffixes=("", "_base"), validate="one_to_one")
        diff = inference.paired_effect(merged["test_error"] - merged["test_error_base"], better=-1)
        row.update(baseline=name, n_pairs=diff.n, diff=diff)
        out.append(row)
    return holm_per_setting(pd.DataFrame(out))


def holm_per_setting(table: pd.DataFrame, col: str = "diff") -> pd.DataFrame:
    """Holm-adjust the effects in `col` within each setting (one family per setting)."""
    if table.empty:
        return table
    table = table.copy()
    for _, idx in table.groupby("cohort", sort=False).groups.items():
        table.loc[idx, col] = pd.Series(inference.with_holm(list(table.loc[idx, col])), index=idx)
    return table
