"""The suites: one TOML file per comparison, installed with the package as data.

A suite names its runs (`[[runs]]`: method, arch, dataset, seeds, options; lists expand
as a product), its budgets (`[budgets.NAME]`: epochs and other training keys) and,
for `sweep`, SLURM defaults (`[slurm]`). `harness.suite.load_suite` reads them; name one
by its path or, from any directory, by its name:

    python -m harness run --suite mnist-table1 --budget short
    python -m harness sweep smoke --dry-run

This folder holds suite files only: the standalone measurements are `measure/`, the
analyses of finished runs `reports/`.
"""
