"""spectral-bench harness: one protocol for training and comparing spectral CNNs.

Data flow of one run (each step has one owner):

    CLI flags / --set text / suite TOML
      └─> RunSpec (frozen, hashed: run id)          harness.suite -> harness.spec
            ├─> dataset splits (normalized)          harness.data
            ├─> model = methods.build(spec)          methods (registry, options as data)
            ├─> ops = count_ops(model)               harness.ops (convention, handles, count)
            └─> train(model, data, spec)             harness.train (+ step, graph, device,
                  └─> history, timings, checkpoints                 contention)
                        └─> RunDir.write(record)     harness.store (run folder, RunRecord)
    harness.runner.execute ties the steps together; every executor calls it.
    A sweep is many RunSpecs: harness.schedule (plan, SLURM arrays or a local pool,
    manifest, status). Finished runs -> reports (aggregate -> figures -> render).
    Standalone measurements (layer and step timings, approximation errors): measure/.

Import rules (tests/test_imports.py): no import cycle, module- or function-level;
`methods/__init__.py` (the registry) imports only `harness.errors`; this package's
`__init__` imports nothing, and gives the public API below on first use.

    from harness import make_spec, execute
    record = execute(make_spec("cnn", "lenet5", "synthetic", epochs=1))

A results tree as pandas DataFrames: `reports.aggregate.load_runs(root)` (docs/api.md).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the module that owns it (imported on first use: no import cycle, fast `--help`)
_API = {
    "UserError": "harness.errors",
    "RunSpec": "harness.spec",
    "make_spec": "harness.suite", "load_suite": "harness.suite", "Suite": "harness.suite",
    "execute": "harness.runner",
    "RunDir": "harness.store", "RunRecord": "harness.store", "results_root": "harness.store",
    "count_ops": "harness.ops",
    "sweep": "harness.schedule", "suite_status": "harness.schedule",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
