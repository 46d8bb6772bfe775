"""Comparison reports over a results tree, and the analyses of finished runs.

    python -m harness report SUITE|RESULTS_DIR --out DIR                 (render.write_report)
      aggregate.load_runs    every run folder -> one row per run (harness.store.RunRecord),
                             one row per epoch; the *setting* (cohort) of each run
      aggregate.summarize    per (method, arch, variant, setting): seed statistics
      aggregate.paired_vs    test-error differences paired by seed against a baseline
      inference              equivalence tests, paired effects, Holm, power (scipy.stats)
      published              published.toml: the papers' numbers, margins, recipes, caps
      reproduction           verdicts against published.toml, ablation effects, cost
      formats                how numbers read in the cells
      figures                learning curves, accuracy vs MACs / time, ops breakdown
      measured               the standalone measurements found under <results>/_measure
      render                 blocks -> report.md, report.html (figures embedded), runs.csv
      markup                 the formats (Markdown, HTML, CSV cells), record text made inert

Analyses of finished runs, run as modules:

    python -m reports.speedup               Rippel §5.2 speed-up from two runs' histories
    python -m reports.dct_subset_from_gate  static DCT subsets from gate runs
"""
