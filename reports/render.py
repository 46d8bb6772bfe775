"""Build the comparison report: tables and figures -> report.md + single-file report.html.

    python -m harness report benchmarks/mnist-table1.toml --out reports/out/mnist
    python -m harness report results/ --out reports/out/all

The report is a list of blocks (heading, text, table, figure) rendered twice: Markdown
with relative image links, and one HTML file with the images embedded as base64.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from harness import files, store
from harness.text import plural
from harness.errors import UserError
from reports import aggregate, figures, measured, reproduction
from reports.formats import fmt_effect_tests, fmt_fixed, fmt_num, fmt_size, fmt_stat, row_stats
from reports.markup import csv_cell, to_html, to_markdown
from reports.published import PUBLISHED, load, load_published  # noqa: F401  (their names here too)


# --------------------------------------------------------------------------- formatting

def setting_title(r) -> str:
    """One line that names everything two compared runs share."""
    threads = ("threads unrecorded" if int(r["threads"]) < 0
               else f"{int(r['threads'])} thread{'' if int(r['threads']) == 1 else 's'}")
    sub = (f" (--subset {int(r['subset'])}: val and test cut to N/5)" if r["subset"] else "")
    return (f"{r['dataset']} · {fmt_size(r['n_train'], False)} train / {fmt_size(r['n_test'], False)} "
            f"test{sub} · budget {r['budget']} · precision {r['precision']} · ops "
            f"{r['ops_convention']} · {r['device_class']} · {threads}")


# One symbol per meaning, the same in every table of every report, explained once (header).
RECONSTRUCTION = "†"   # the method is a reconstruction: its formulas are not public
UNRELIABLE = "‡"       # the timing includes runs flagged 'timing unreliable'
EXCLUDED = "§"         # flagged runs were left out of the row's timing
UNSETTLED = "¶"        # evaluated with BatchNorm running statistics that had not settled
SYMBOLS = {
    RECONSTRUCTION: "a reconstruction of a method whose formulas are not public (docs/methods.md)",
    UNRELIABLE: "a timing that includes runs flagged 'timing unreliable' (machine load above its "
                "cores, threads waiting for a core, or epoch times varying more than 2×)",
    EXCLUDED: "runs flagged 'timing unreliable' were left out of this row's timing columns",
    UNSETTLED: "some runs were evaluated with BatchNorm running statistics that had not settled "
               "(too few training steps for the layer's momentum), so their test error overstates "
               "the model's (harness/batchnorm.py)",
}


def symbols_text() -> str:
    return "Symbols: " + "; ".join(f"{k} {v}" for k, v in SYMBOLS.items()) + "."


def comparison_table(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of one setting, and the footnotes for timing marks."""
    rows, notes, unsettled = [], [], []
    show_step = summary["step_mode"].astype(bool).any() if "step_mode" in summary else False
    for _, r in summary.iterrows():
        name = r["method"] + (f" {RECONSTRUCTION}" if r["reconstruction"] else "")
        mark = ""
        who = f"{r['method']}/{r['arch']}" + (f" ({r['variant']})" if r["variant"] else "")
        if r["timing_unreliable"]:
            mark = f" {UNRELIABLE}"
            notes.append(f"{UNRELIABLE} timing unreliable, {who}: every run was flagged "
                         f"({r['unreliable_note']}).")
        elif r["timing_excluded"]:
            mark = f" {EXCLUDED}"
            notes.append(f"{EXCLUDED} {who}: {plural(int(r['timing_excluded']), 'run')} left out, the "
                         f"timing columns average the other {int(r['timing_n'])} "
                         f"({r['unreliable_note']}).")
        if r.get("bn_unsettled"):
            unsettled.append(f"{who} (seed{'' if int(r['bn_unsettled']) == 1 else 's'} "
                             f"{r['bn_unsettled_seeds']} of {int(r['n'])})")
        row = {
            "method": name, "arch": r["arch"], "variant": r["variant"] or "–",
            "epochs": fmt_num(r["epochs"]),
            "train": fmt_size(r["n_train"], r["subset"]), "test": fmt_size(r["n_test"], r["subset"]),
            "n": int(r["n"]),
            "test error": fmt_stat(row_stats(r)) + (f" {UNSETTLED}" if r.get("bn_unsettled") else ""),
            "fwd MACs/image": fmt_num(r["macs_fwd"]), "bwd MACs/image": fmt_num(r["macs_bwd"]),
            "params": fmt_num(r["params"]),
            "s/epoch": fmt_fixed(r["train_s_per_epoch"], 2) + mark,
            "s to final epoch": fmt_fixed(r["train_s"], 1) + mark,
            "img/s": fmt_fixed(r["throughput_img_s"], 0) + mark,
            "peak MB": fmt_fixed(r["peak_mb"], 0),
        }
        if show_step:
            row["step"] = r["step_mode"] or "–"
        rows.append(row)
    if unsettled:
        notes.append(f"{UNSETTLED} evaluated with BatchNorm statistics that had not settled: "
                     f"{'; '.join(unsettled)}. Their test error says little about the method; "
                     f"train for more steps (the run's warning says how many).")
    return pd.DataFrame(rows), notes


def paired_table(paired: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "method": p["method"], "arch": p["arch"], "variant": p["variant"] or "–",
        "baseline": p["baseline"], "n pairs": int(p["n_pairs"]),
        "Δ test error (method − baseline)": fmt_stat(p["diff"], signed=True),
        **fmt_effect_tests(p["diff"]), "verdict": paired_verdict(p["diff"]),
    } for _, p in paired.iterrows()])


def paired_verdict(e) -> str:
    if e.n < aggregate.MIN_N_INTERVAL:
        return f"no test: {plural(e.n, 'pair')} (needs {aggregate.MIN_N_INTERVAL})" if e.n else "–"
    if e.p_holm < 0.05:
        return "lower error than the baseline" if e.mean < 0 else "higher error than the baseline"
    return "no detectable difference"


def footer(runs: pd.DataFrame) -> pd.DataFrame:
    done = runs[runs["status"].isin(["complete", "diverged", "failed"])]
    flagged = done[done["unreliable"]] if "unreliable" in done else done.iloc[:0]
    items = {
        "machines (CPU or GPU model)": sorted(done["device_class"].dropna().unique())
        if "device_class" in done else ["unrecorded"],
        "devices": sorted(done["device"].dropna().unique()),
        "threads": sorted({int(t) for t in done["threads"].dropna() if t >= 0}) or ["unrecorded"],
        "precision policies": sorted(done["precision"].dropna().unique()),
        "precision flags (as recorded)": sorted(done["precision_flags"].dropna().unique())
        if "precision_flags" in done else ["unrecorded"],
        "torch": sorted(done["torch"].dropna().unique()),
        "python": sorted(done["python"].dropna().unique()),
        "git SHAs": sorted({f"{s[:10]}{' (dirty)' if d else ''}"
                            for s, d in zip(done["git_sha"].fillna(""), done["git_dirty"]) if s}),
        "op-count conventions": sorted(done["ops_convention"].dropna().unique()),
        "seeds": sorted(int(s) for s in done["seed"].dropna().unique()),
        "intervals": [aggregate.CI_METHOD],
        "MACs per image at batch": [int(runs["macs_batch"].iloc[0])] if "macs_batch" in runs else ["–"],
        "code provenance": [f"{n} {k}" for k, n in done["code_state"].value_counts().sort_index().items()]
        if "code_state" in done else ["unrecorded"],
        "runs flagged timing unreliable": [f"{len(flagged)} of {len(done)}"],
        "runs evaluated with unsettled BatchNorm statistics":
            [f"{int(done['bn_unsettled'].sum()) if 'bn_unsettled' in done else 0} of {len(done)}"],
    }
    return pd.DataFrame([{"item": k, "value": ", ".join(map(str, v)) or "–"} for k, v in items.items()])


def header_text(runs: pd.DataFrame) -> str:
    done = runs[runs["status"] == "complete"]
    machines = ", ".join(sorted(done["device_class"].dropna().unique())) or "unrecorded"
    batch = int(runs["macs_batch"].iloc[0]) if "macs_batch" in runs and len(runs) else 1
    return (f"Made on: {machines}. Test error is the final-epoch test error (no selection on "
            f"the test set). Statistics over seeds: {aggregate.CI_METHOD}. Learning-curve "
            f"bands: the same 95% t-interval over seeds, epoch by epoch, clipped to [0, 1] "
            f"(n < 3: each seed's curve, no band). Runs are only compared within one setting "
            f"(same dataset, train/test sizes, budget, precision policy, op-count convention, "
            f"device class and thread count); each setting has its own tables and figures. "
            f"Every MAC figure in this report is per image at batch {batch} (work done once "
            f"per batch, such as weight FFTs, is shared by the batch; {batch} is the training "
            f"batch size of most runs). " + symbols_text())


VERDICTS = (
    "Verdicts (reports/reproduction.py). Test error: each published row declares its "
    "equivalence margin in published.toml; the published number counts as one run from our "
    "distribution (SE = s·√(1/n + 1), df = n − 1) unless the paper states its own n and "
    "spread (then Welch). 'reproduced': two one-sided tests at 5% (the 90% interval of ours "
    "− paper inside [−margin, +margin]); 'different': the difference is significant at 5% and larger "
    "than the margin; 'inconclusive': neither, with the seeds that would decide it at 80% "
    "power; 'inconclusive (n < 3)': no interval. A different recipe, dataset size, "
    "architecture or a longer or unstated budget caps the verdict at 'not comparable'; a "
    "shorter run of the paper's recipe at 'consistent at a reduced budget'. Verdicts are "
    "made within one setting, so on one CPU or GPU model: another model moves a run as "
    "another seed does, and hardware never caps a verdict. Op counts: 'reproduced' under "
    "the convention's one rule (conv + every FC layer), 'fitted' when only another reading "
    "of the layers matches. The flag column names runs made by code that has changed since "
    "(stale) or has no fingerprint.")


def provenance_blocks(runs: pd.DataFrame, setting_no: dict) -> list:
    """Which rows were made by code that has changed since (harness.fingerprint)."""
    done = runs[runs["status"].isin(["complete", "diverged"])]
    if done.empty or "code_state" not in done:
        return []
    counts = done["code_state"].value_counts()
    text = (f"Code provenance of the {len(done)} finished runs: {counts.get('current', 0)} made by "
            f"the code of this checkout, {counts.get('stale', 0)} by code that has changed since "
            f"(stale), {counts.get('unknown', 0)} without a comparable fingerprint (provenance "
            f"unknown). `sweep SUITE --rerun-stale` reruns the stale and unknown ones.")
    odd = done[done["code_state"] != "current"]
    rows = [{"setting": setting_no.get(k[4], "–"), "method": k[0], "arch": k[1], "variant": k[2] or "–",
             "code": k[3], "seeds": ", ".join(str(int(x)) for x in sorted(g["seed"])),
             "changed files / why": g["code_changed"].iloc[0] or g["code_why"].iloc[0]}
            for k, g in odd.groupby(["method", "arch", "variant", "code_state", "cohort",
                                     "code_changed", "code_why"], sort=True)]
    return [("h2", "Code provenance"), ("p", text)] + ([("table", pd.DataFrame(rows))] if rows else [])


def write_report(source: str, out: str, results_dir=None, budget: str | None = None,
                 baseline: str = "cnn", progress: bool = True,
                 all_budgets: bool = False) -> tuple[Path, Path]:
    """Write report.md, report.html, figures/, runs.csv (one row per run) and
    environment.json for a suite (a file, or an installed suite's name) or a results directory.

    A suite's report covers one budget, as `sweep` and `status` do: `budget`, else the
    suite's default_budget; `all_budgets` covers every budget of the suite."""
    out_dir = Path(out)
    src = Path(source)
    expected: dict = {}        # run id -> spec of every run the suite asks for
    from harness.suite import installed_suites, load_suite

    if src.suffix == ".toml" or (not src.exists() and src.name in installed_suites()):
        if all_budgets and budget:
            raise UserError("--budget and --all-budgets exclude each other; pass one of them")
        suite = load_suite(str(src), budget)
        budgets = (list(suite.budgets) or [suite.budget]) if all_budgets else [suite.budget]
        expected = {s.run_id: s for b in budgets
                    for s in (suite.specs if b == suite.budget else load_suite(str(src), b).specs)}
        root = store.results_root(results_dir)
        which = "every budget" if all_budgets else f"budget {suite.budget or '-'}"
        title = f"spectral-bench report: {suite.name} ({which})"
    elif src.is_dir():
        if budget or all_budgets:
            raise UserError(f"--budget and --all-budgets select a suite's runs; {src} is a results "
                            f"directory, whose report covers every run in it")
        root, title = src, f"spectral-bench report: {src}"
    elif not src.exists():
        raise UserError(f"{src} does not exist; pass a suite .toml file or a results directory")
    else:
        raise UserError(f"{src} is neither a suite .toml file nor a results directory")
    notes: list[str] = []      # unreadable records and histories: one warning line each
    runs, history = aggregate.load_runs(root, set(expected) if expected else None,
                                        progress=progress, warn=notes.append)
    if "method" not in runs or not runs["status"].isin(["complete", "diverged", "failed"]).any():
        raise UserError(f"no finished runs for {src} under {root}: "
                        f"{plural(len(runs), 'run')} {'is' if len(runs) == 1 else 'are'} "
                        f"{', '.join(sorted(runs['status'].unique()))}"
                        + (f" ({notes[0]}{f'; {len(notes) - 1} more' if len(notes) > 1 else ''})"
                           if notes else "")
                        + (f"; run it first: python -m harness sweep {source}"
                           + ("" if all_budgets else f" --budget {suite.budget}") if expected else ""))
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    runs = aggregate.describe_missing(runs, expected)
    summary = aggregate.summarize(runs)
    paired = aggregate.paired_vs(runs, baseline)
    entries, recipes = load()
    figdir = out_dir / "figures"
    cohorts = list(dict.fromkeys(summary["cohort"])) if not summary.empty else []
    setting_no = {c: i + 1 for i, c in enumerate(cohorts)}
    blocks = [("h1", title),
              ("p", f"{plural(len(runs), 'run')}: " + ", ".join(f"{n} {s}" for s, n in
                                                       runs["status"].value_counts().sort_index().items())
               + ". " + header_text(runs))]
    if cohorts:
        blocks += [("h2", "Settings"),
                   ("p", "Numbers in different settings are not comparable with each other."),
                   ("table", pd.DataFrame([{
                       "setting": setting_no[c], "description": setting_title(g.iloc[0]),
                       "rows": len(g), "runs": int(g["n"].sum())}
                       for c, g in ((c, summary[summary["cohort"] == c]) for c in cohorts)]))]
    blocks.append(("h2", "Comparison"))
    if summary.empty:
        blocks.append(("table", pd.DataFrame()))
    for c in cohorts:
        s = summary[summary["cohort"] == c]
        table, notes = comparison_table(s)
        blocks += [("h3", f"Setting {setting_no[c]}: {setting_title(s.iloc[0])}"), ("table", table)]
        blocks += [("p", n) for n in notes]
        pc = paired[paired["cohort"] == c] if not paired.empty else paired
        if not pc.empty:
            blocks += [("p", f"Setting {setting_no[c]}, paired by seed against {baseline}: difference "
                             f"in test error (method − baseline) over the seeds both ran; a method "
                             f"is paired with the baseline of its own architecture"
                             + (" unless the baseline names one." if "/" in baseline else
                                ", never another.")
                             + " p (Holm): the paired t-test, and in brackets Holm-adjusted over "
                               "this table; P(improvement): the share of seeds on which the method's "
                               "error is below the baseline's (ties count half), with its 95% "
                               "bootstrap interval; MDD: the difference a paired test at 5% finds "
                               "with 80% power at the observed spread."),
                       ("table", paired_table(pc))]
    pvm = (reproduction.paper_vs_measured(entries, recipes, summary, runs, setting_no)
           if not summary.empty else pd.DataFrame())
    blocks += [("h2", "Paper vs measured"),
               ("p", "Published numbers (reports/published.toml) beside ours, one row per setting "
                     "and configuration of ours; 'difference (90%)' is ours − paper with the "
                     "interval of the equivalence test. " + VERDICTS),
               ("table", pvm)]
    blocks += ablation_blocks(runs, setting_no)
    blocks += provenance_blocks(runs, setting_no)
    blocks += cost_blocks(runs, summary, setting_no, root)
    blocks.append(("h2", "Figures"))
    batch = int(runs["macs_batch"].iloc[0]) if "macs_batch" in runs else 1
    per_dataset = summary.groupby("dataset")["cohort"].nunique() if not summary.empty else {}
    for c in cohorts:
        s = summary[summary["cohort"] == c]
        first = s.iloc[0]
        ds = first["dataset"]
        tag = store.slug(ds) if per_dataset[ds] == 1 else f"{store.slug(ds)}-s{setting_no[c]}"
        name = f"Setting {setting_no[c]}"
        h = history[history["cohort"] == c] if not history.empty else history
        blocks.append(("h3", f"{name}: {setting_title(first)}"))
        for path, cap in (
            (figures.learning_curves(h, f"{name}: {ds}", figdir / f"learning_{tag}.png",
                                     archs=figures.arch_order(s, "macs_fwd")),
             f"{name}: validation accuracy per epoch"),
            (figures.accuracy_vs(s, "macs_fwd", f"forward MACs per image at batch {batch}",
                                 f"{name}: {ds}, test accuracy vs forward MACs (batch {batch})",
                                 figdir / f"acc_macs_{tag}.png"),
             f"{name}: accuracy vs forward MACs per image at batch {batch}, one panel per architecture"),
            (figures.accuracy_vs(s, "train_s", "training time to final epoch (s)",
                                 f"{name}: {ds}, test accuracy vs training time on {first['device']}",
                                 figdir / f"acc_time_{tag}.png", mark_unreliable=True),
             f"{name}: accuracy vs training time on {first['device']}"),
            (figures.ops_breakdown(s, f"{name}: {ds}", figdir / f"ops_{tag}.png", batch=batch),
             f"{name}: forward MACs per image at batch {batch}, by category"),
        ):
            if path is not None:
                blocks.append(("img", path, cap))
    blocks += measured.blocks(root, figdir)
    problems = runs[runs["status"] != "complete"]
    if "history_error" in runs:   # complete, but its learning curve is missing
        bad = runs[runs["history_error"].notna() & (runs["status"] == "complete")]
        problems = pd.concat([problems, bad.assign(status=bad["status"] + " (no history)",
                                                   reason=bad["history_error"])])
    problems = problems.reindex(columns=["method", "arch", "dataset", "budget", "seed", "status",
                                         "reason", "run_id"]).astype(object)
    problems["seed"] = [v if pd.isna(v) else str(int(v)) for v in problems["seed"]]
    blocks += [("h2", "Failed, diverged and unfinished runs"), ("table", problems.fillna("–"))]
    blocks += [("h2", "Environment"), ("table", footer(runs))]
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    htm = out_dir / "report.html"
    files.atomic_write(md, lambda f: f.write(to_markdown(blocks, out_dir).encode()))
    files.atomic_write(htm, lambda f: f.write(to_html(blocks, title).encode()))
    if "method" in runs:
        write_run_table(runs, out_dir)
    env = {r["item"]: r["value"] for _, r in footer(runs).iterrows()}
    files.write_json(out_dir / "environment.json", env)
    return md, htm


def ablation_blocks(runs: pd.DataFrame, setting_no: dict) -> list:
    """Does removing each component hurt? Paired by seed, per setting (reproduction.py)."""
    effects = reproduction.ablation_effects(runs, reproduction.load_ablations(PUBLISHED))
    effects = effects[effects["cohort"].isin(setting_no)] if not effects.empty else effects
    if effects.empty:
        return []
    table = pd.DataFrame([{
        "setting": setting_no[e["cohort"]], "ablation": e["ablation"],
        "with → without": f"{e['with']} → {e['without']}", "arch": e["arch"],
        "n pairs": e["n_pairs"], "Δ test error (without − with)": fmt_stat(e["diff"], signed=True),
        **fmt_effect_tests(e["diff"]), "paper Δ": f"{100 * e['paper_diff']:+.2f} pp",
        "verdict": e["verdict"], "source": e["source"]} for _, e in effects.iterrows()])
    return [("h2", "Ablations"),
            ("p", "The change in test error when one component is removed, paired by seed within "
                  "a setting (without − with), with the 95% t-interval of the paired differences "
                  "(n ≥ 3). The paired t-test's p-value is Holm-adjusted over the ablations of the "
                  "setting (in brackets); 'hurts' means the adjusted p < 0.05 with a positive "
                  "difference. P(improvement): the share of seeds on which the component helps "
                  "(removing it raises the error; ties count half), with its 95% bootstrap "
                  "interval. MDD: the difference a paired test at 5% finds with 80% power at the "
                  "observed spread. The paper's own difference (800 epochs) is shown beside it."),
            ("table", table)]


def cost_blocks(runs: pd.DataFrame, summary: pd.DataFrame, setting_no: dict, root: Path) -> list:
    """Minutes per run and per setting, from the records, and the paper's budget projected."""
    cost = reproduction.cost_table(runs, summary)
    if cost.empty:
        return []
    blocks = [("h2", "Cost"),
              ("p", "Wall-clock minutes per run on its device (warm-up, training, evaluation, "
                    "checkpoints and data loading, from the records), the total of the setting, "
                    "and one run projected to the papers' 800 epochs: the measured minutes per "
                    "epoch (training, validation and checkpoint) times 800, plus the fixed costs "
                    "once (warm-up and graph capture of one session, data load, test evaluation).")]
    for c in [c for c in setting_no if c in set(cost["cohort"])]:
        part = cost[cost["cohort"] == c]
        blocks += [("h3", f"Setting {setting_no[c]}: {part['device'].iloc[0]}"),
                   ("table", pd.DataFrame([{
                       "method": r["method"], "arch": r["arch"], "variant": r["variant"] or "–",
                       "runs": int(r["runs"]), "min/run": fmt_fixed(r["min_per_run"], 1)
                       + (f" {UNRELIABLE}" if r["unreliable"] else ""),
                       "min/epoch": fmt_fixed(r["min_per_epoch"], 2),
                       "h per run at 800 epochs": fmt_fixed(r["hours_at_paper_budget"], 1)}
                       for _, r in part.iterrows()])),
                   ("p", f"Setting {setting_no[c]} in all: {part['min_total'].sum():.0f} min "
                         f"for {plural(int(part['runs'].sum()), 'run')}; at 800 epochs "
                         f"{(part['hours_at_paper_budget'] * part['runs']).sum():.0f} h.")]
    steps = store.measurement_csv(root, measured.STEP_CSV)   # projected from the step benchmark
    if (df := measured.read_measurement(steps)) is not None:
        proj = reproduction.step_projection(df, 45000, 5000, 800)
        if not proj.empty:
            blocks += [("p", f"CIFAR-10 Table 2 at the paper's budget (800 epochs, 45,000 training "
                             f"images), projected from the step benchmark ({steps.name}): "
                             f"training steps plus one validation pass per epoch."),
                       ("table", pd.DataFrame([{
                           "method": r["method"], "arch": r["arch"], "device": r["device"],
                           "step": r["step"], "ms/step": fmt_fixed(r["ms_per_step"], 1),
                           "h per run": fmt_fixed(r["hours_per_run"], 1)}
                           for _, r in proj.iterrows()]))]
    return blocks


RUN_COLUMNS = ("run_id", "method", "arch", "variant", "dataset", "budget", "seed", "status",
               "epochs_done", "test_error", "val_acc", "n_train", "n_test", "subset", "params",
               "macs_batch", "macs_fwd", "macs_bwd", "ops_convention", "train_s", "train_s_per_epoch",
               "throughput_img_s", "wall_s", "warmup_s", "data_load_s", "test_eval_s", "peak_mb",
               "device", "threads", "precision", "step_mode", "unreliable", "unreliable_reasons",
               "bn_unsettled",
               "git_sha", "git_dirty", "code_state", "code_changed", "torch")


def write_run_table(runs: pd.DataFrame, out_dir: Path) -> Path:
    """runs.csv: one row per run, the numbers behind every table (no paths); text from the
    records is neutralized for spreadsheets (`csv_cell`)."""
    cols = [c for c in RUN_COLUMNS if c in runs.columns]
    path = out_dir / "runs.csv"
    table = runs[cols].sort_values([c for c in ("method", "arch", "budget", "seed") if c in cols])
    table = table.apply(lambda col: col if pd.api.types.is_numeric_dtype(col) else col.map(csv_cell))
    files.atomic_write(path, lambda f: f.write(table.to_csv(index=False).encode()))
    return path
