"""User input -> RunSpec: command-line values, `--set` text and suite files.

Everything a user types becomes a `RunSpec` here, and nowhere else:

    make_spec(method, arch, dataset, {"wf": "projected"}, epochs=5)
      1. the method, the dataset and its input shape (harness.data), the architecture
         (the method's default for that shape unless given: methods.resolve_arch);
      2. `--set` text: training keys (TRAIN_KEYS) are typed by RunSpec's defaults, method
         options by their declared defaults (resolve_hparams);
      3. RunSpec validates the training fields;
      4. the method's declared options are checked (methods.Option: choices, intervals),
         and its builder runs on PyTorch's meta device, so that rules tying options
         together, or an option to the input size, fire now: a bad value is refused
         before data is read, a directory is made or a job is submitted.

    load_suite("mnist-table1", "short") -> Suite(name, budgets, budget, specs, slurm)
      reads the TOML file once ([suite], [budgets.NAME], [[runs]] and the raw [slurm]
      table for `sweep`), and calls make_spec for every point of each run's grid.

A suite is named by a path (relative to the working directory) or by its name: the
suites installed with the package (`benchmarks/*.toml`, package data) are found from
any directory, e.g. `--suite mnist-table1` or `sweep smoke`.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import methods
from harness import data as datasets
from harness import files
from harness.errors import UserError
from harness.spec import TRAIN_KEYS, RunSpec, parse_value

RUN_KEYS = ("method", "arch", "dataset", "seeds", "hparams", "epochs", "batch_size", "lr", "subset",
            "threads") + TRAIN_KEYS
SUITE_KEYS = ("name", "description", "dataset", "seeds", "default_budget", "max_runs")
MAX_RUNS = 10_000        # runs a suite may expand to unless its [suite] max_runs says more
MAX_PARAMS = 10**9       # a model's parameters: 4 GB of float32 weights, 16x the largest here
MAX_SUITE_BYTES = 4 * 2**20   # the suites of benchmarks/ are a few KB
TOP_KEYS = ("suite", "budgets", "runs", "slurm")
SUITES_PACKAGE = "benchmarks"      # the installed suite files (package data)


# --------------------------------------------------------------------------- specs

def resolve_hparams(method: str, arch: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Method defaults for `arch`, updated by `overrides` (text is parsed by the type of
    the option's declared default)."""
    hp = methods.get(method).hparam_defaults(arch)
    for key, value in overrides.items():
        if key not in hp:
            valid = ", ".join(sorted(hp)) or "none"
            raise UserError(f"method {method!r} has no option {key!r}; valid options: {valid}")
        if isinstance(value, str):
            try:
                value = parse_value(value, hp[key])
            except ValueError as exc:
                raise UserError(f"bad value for --set {key}: {exc}") from None
        hp[key] = value
    return hp


def check_buildable(method: str, arch: str, hparams: dict[str, Any], input_shape,
                    num_classes: int) -> None:
    """Refuse bad option values at spec time, with the error the build would give.

    The declared options are checked by the registry; then the builder itself runs on
    PyTorch's meta device (shapes only, no memory, no parameter values), so its own
    checks (options that must fit together or fit the input) fire here instead of after
    the data is loaded or in a queued job. Options whose intervals are open above (a
    kernel size, a filter count) are bounded here by the model they make: more than
    MAX_PARAMS parameters is refused, before the real build tries to allocate them.
    """
    import torch

    info = methods.get(method)
    info.check(arch, hparams)
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = info.builder(arch, tuple(input_shape), num_classes, **hparams)
            params = sum(p.numel() for p in model.parameters())
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a builder that needs real tensors: its checks run at build
        return
    if params > MAX_PARAMS:
        raise UserError(f"{method}/{arch} with these options has {params:,} parameters, more than "
                        f"{MAX_PARAMS:,} (the largest registered model has about 62 million); "
                        f"use smaller option values (--set ...)")


def make_spec(method: str, arch: str | None, dataset: str, overrides: dict[str, str] | None = None,
              **train_args) -> RunSpec:
    """Resolve defaults (architecture, method options) into a complete, checked RunSpec.

    `overrides` are `--set key=value` strings: training keys (TRAIN_KEYS) go to the
    spec, everything else to the method's options. Training arguments that are None
    take RunSpec's defaults.
    """
    methods.get(method)
    datasets.check_name(dataset)
    if datasets.is_npz(dataset):  # the same file gives the same run id from any directory
        dataset = str(Path(dataset).expanduser().resolve())
    shape, num_classes = datasets.dataset_shape(dataset)
    arch = methods.resolve_arch(method, arch, shape)
    overrides = dict(overrides or {})
    defaults = RunSpec(method=method, arch=arch, dataset=dataset)
    for key in [k for k in overrides if k in TRAIN_KEYS]:
        try:
            train_args[key] = parse_value(overrides.pop(key), getattr(defaults, key))
        except ValueError as exc:
            raise UserError(f"bad value for --set {key}: {exc}") from None
    hparams = resolve_hparams(method, arch, overrides)
    train_args = {k: v for k, v in train_args.items() if v is not None}
    spec = RunSpec(method=method, arch=arch, dataset=dataset, hparams=hparams, **train_args)
    check_buildable(method, arch, hparams, shape, num_classes)
    return spec


# --------------------------------------------------------------------------- suites

@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    budgets: dict[str, dict[str, Any]]
    budget: str
    specs: tuple[RunSpec, ...]
    slurm: Any = None        # the raw [slurm] table ({} when absent), for `sweep`


def installed_suites() -> dict[str, Path]:
    """name -> file of the suites installed with the package (benchmarks/*.toml)."""
    import importlib.resources

    try:
        folder = importlib.resources.files(SUITES_PACKAGE)
    except ModuleNotFoundError:
        return {}
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir()
            if f.name.endswith(".toml") and f.is_file()}


def suite_file(name_or_path: str) -> Path:
    """The suite file a user named: an existing path, else an installed suite of that name
    ('mnist-table1', 'mnist-table1.toml' or 'benchmarks/mnist-table1.toml')."""
    p = Path(name_or_path)
    if p.is_file() or (p.exists() and not p.is_dir()):   # not a regular file: read_suite says so
        return p
    known = installed_suites()
    if len(p.parts) <= 2 and (len(p.parts) == 1 or p.parts[0] == SUITES_PACKAGE) \
            and p.suffix in ("", ".toml") and p.stem in known:
        return known[p.stem]
    names = f" (installed: {', '.join(sorted(known))})" if known else ""
    raise UserError(f"suite file {p} does not exist; see benchmarks/ for the suites{names}")


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _check_table(value, where: str, keys) -> dict:
    """`value` must be a TOML table whose keys are among `keys`; values scalars or lists of them."""
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
    bad = set(value) - set(keys)
    if bad:
        raise UserError(f"{where}: unknown keys {sorted(bad)}; valid: {', '.join(keys)}")
    for key, v in value.items():
        if key == "hparams":
            _check_table(v, f"{where}.hparams", list(v) if isinstance(v, dict) else ())
            continue
        for item in _as_list(v):
            if isinstance(item, (dict, list)):
                raise UserError(f"{where}.{key}: expected a value or a list of values, got {v!r}")
    return value


def read_suite(p: Path) -> dict:
    """The parsed TOML document of suite file `p`; one line when it cannot be read."""
    try:
        data = files.read_bounded(p, "suite file", "pass a suite .toml file", MAX_SUITE_BYTES,
                                  follow_links=True)
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: invalid TOML ({exc})") from None
    except RecursionError:    # tomllib parses nested arrays and tables recursively
        raise UserError(f"{p}: invalid TOML (nested too deeply); a suite nests a few levels") from None
    except OSError as exc:
        raise UserError(f"cannot read suite file {p}: {exc.strerror or exc}") from None


def load_suite(path: str, budget: str | None = None) -> Suite:
    """Parse a suite TOML file (a path or an installed suite's name) into RunSpecs for one
    budget.

    Format: a `[suite]` table (name, description, dataset, seeds, default_budget, max_runs),
    `[budgets.<name>]` tables of training keys, and `[[runs]]` tables whose list
    values expand as a product (method, arch, dataset, seeds and training keys;
    `hparams` holds method options, also expanded when lists). A run with
    `budgets = [...]` belongs to those budgets only. A `[slurm]` table is kept as it is
    for `sweep` (harness.schedule.options checks it). The runs are counted before they are
    expanded: more than MAX_RUNS (or the suite's `max_runs`) is refused in one line.
    """
    p = suite_file(path)
    doc = read_suite(p)
    bad = set(doc) - set(TOP_KEYS)
    if bad:
        raise UserError(f"{p}: unknown top-level keys {sorted(bad)}; valid: {', '.join(TOP_KEYS)}")
    head = _check_table(doc.get("suite", {}), f"{p}: suite", SUITE_KEYS)
    for key in ("name", "description", "dataset", "default_budget"):
        if key in head and not isinstance(head[key], str):
            raise UserError(f"{p}: suite.{key}: expected a string, got {head[key]!r}")
    budgets = doc.get("budgets", {})
    if not isinstance(budgets, dict):
        raise UserError(f"{p}: budgets must be tables ([budgets.NAME]), got {budgets!r}")
    for name, table in budgets.items():
        _check_table(table, f"{p}: budgets.{name}", RUN_KEYS + ("description",))
    if budget is None:
        budget = head.get("default_budget") or next(iter(budgets), "")
        if budgets and budget not in budgets:
            raise UserError(f"{p}: suite.default_budget {budget!r} is not a budget; "
                            f"budgets: {', '.join(budgets)}")
    elif budget not in budgets:
        raise UserError(f"{p}: no budget {budget!r}; budgets: {', '.join(budgets) or 'none'}")
    runs = doc.get("runs")
    if not runs:
        raise UserError(f"{p}: no [[runs]] tables; a suite needs at least one")
    if not isinstance(runs, list):
        raise UserError(f"{p}: runs must be [[runs]] tables, got {type(runs).__name__}")
    base = {k: v for k, v in budgets.get(budget, {}).items() if k != "description"}
    grids = _grids(p, head, base, runs, budget, budgets)
    specs: list[RunSpec] = []
    for where, merged in grids:
        hp = merged.pop("hparams", {})
        hp_keys = list(hp)
        keys = list(merged)
        grid = itertools.product(*[_as_list(merged[k]) for k in keys],
                                 *[_as_list(hp[k]) for k in hp_keys])
        for values in grid:
            row = dict(zip(keys, values[:len(keys)]))
            overrides = {k: str(v) if not isinstance(v, str) else v
                         for k, v in zip(hp_keys, values[len(keys):])}
            seed = row.pop("seeds")
            method, arch, dataset = row.pop("method"), row.pop("arch", None), row.pop("dataset")
            try:
                specs.append(make_spec(method, arch, dataset, overrides, seed=seed, budget=budget, **row))
            except UserError as exc:
                raise UserError(f"{where}: {exc}") from None
            except TypeError as exc:
                raise UserError(f"{where}: bad value ({exc})") from None
    if not specs:
        raise UserError(f"{p}: budget {budget!r} has no runs: every [[runs]] table names other "
                        f"budgets; add {budget!r} to a run's budgets list")
    return Suite(name=head.get("name", p.stem), description=head.get("description", ""),
                 path=str(p), budgets=budgets, budget=budget, specs=tuple(specs),
                 slurm=doc.get("slurm", {}))


def _grids(p: Path, head: dict, base: dict, runs: list, budget: str, budgets: dict) -> list[tuple[str, dict]]:
    """(where, merged values) of each [[runs]] table of `budget`, checked, and their runs
    counted before any is expanded: a grid of a million runs is refused at once."""
    out, total = [], 0
    for i, run in enumerate(runs):
        where = f"{p}: runs[{i}]"
        _check_table(run, where, RUN_KEYS + ("budgets",))
        if "method" not in run:
            raise UserError(f"{where}: missing 'method'")
        only = run.get("budgets")   # a run that belongs to some budgets only (e.g. not the CPU one)
        if only is not None:
            if not isinstance(only, list) or not all(isinstance(b, str) and b in budgets for b in only):
                raise UserError(f"{where}: budgets must be a list of this suite's budgets "
                                f"({', '.join(budgets)}), got {only!r}")
            if budget not in only:
                continue
        run = {k: v for k, v in run.items() if k != "budgets"}
        merged = {"dataset": head.get("dataset"), "seeds": head.get("seeds", [0]), **base, **run}
        if merged["dataset"] is None:
            raise UserError(f"{where}: no dataset; set it in [suite] or in the run")
        for key in ("method", "arch", "dataset", "optimizer", "schedule"):
            if key in merged and not all(isinstance(v, str) for v in _as_list(merged[key])):
                raise UserError(f"{where}: {key} must be a string (or a list of them), got {merged[key]!r}")
        total += math.prod(len(_as_list(v)) for k, v in merged.items() if k != "hparams") * \
            math.prod(len(_as_list(v)) for v in merged.get("hparams", {}).values())
        out.append((where, merged))
    limit = head.get("max_runs", MAX_RUNS)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise UserError(f"{p}: suite.max_runs must be a whole number >= 1, got {limit!r}")
    if total > limit:
        raise UserError(f"{p}: the suite expands to {total:,} runs (budget {budget or '-'}), more than "
                        f"the limit of {limit:,}; shorten its lists, or set max_runs = {total} in "
                        f"[suite] if you mean it")
    return out
