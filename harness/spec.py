"""RunSpec: the complete, hashable description of one training run.

The run id is derived from the canonical spec without the seed, plus the seed, so
that re-running an identical spec finds its finished result (DESIGN.md, "Run identity").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from harness.device import PRECISIONS
from harness.graph import GRAPH_MODES
from harness.errors import UserError

# Training options that `--set key=value` may override besides the method's own.
TRAIN_KEYS = (
    "optimizer", "momentum", "weight_decay", "schedule", "lr_min",
    "warmup_epochs", "clip_norm", "val_size", "precision", "graph",
)
OPTIMIZERS = ("rmsprop", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
MAX_SEED = 2**63 - 1          # torch seeds are 64-bit; larger or negative values would alias

# Training keys that must be >= 0 (all floats must also be finite).
NON_NEGATIVE = ("momentum", "weight_decay", "lr_min", "warmup_epochs", "clip_norm")


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's numbers (device and paths do not)."""

    method: str
    arch: str
    dataset: str
    epochs: int = 5
    batch_size: int = 100
    lr: float = 0.004
    # Paper recipe (CEMNet §4): RMSprop, cosine decay of the lr to 1e-7, per step.
    optimizer: str = "rmsprop"
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "cosine"
    lr_min: float = 1e-7
    warmup_epochs: float = 0.0   # linear warm-up from 0, as in the CEMNet code
    clip_norm: float = 0.0       # per-tensor gradient norm clip; 0 = off
    val_size: int = 5000
    precision: str = "fp32"      # fp32 (strict, TF32 off) or tf32: see harness/device.py
    graph: str = "auto"          # CUDA-graph training step: auto, on, off (harness/graph.py)
    subset: int = 0              # >0: train on the first N training images (quick checks)
    threads: int = 0             # CPU threads; 0 = auto (recorded, not part of the id): see harness/contention.py
    seed: int = 0
    budget: str = ""             # suite budget label ("paper", "short"); "" for ad-hoc runs
    hparams: dict[str, Any] = field(default_factory=dict)  # method options (--set)

    def __post_init__(self):
        # Canonical types, so that lr=1 and lr=1.0 give the same run id
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise UserError(f"{f.name} must be a number, got {value!r}")
                if not math.isfinite(value):
                    raise UserError(f"{f.name} must be a finite number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
            elif f.type == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    if isinstance(value, float) and value.is_integer():
                        object.__setattr__(self, f.name, int(value))
                    else:
                        raise UserError(f"{f.name} must be a whole number, got {value!r}")
            elif f.type == "str" and not isinstance(value, str):
                raise UserError(f"{f.name} must be a string, got {value!r}")
        if not isinstance(self.hparams, dict):
            raise UserError(f"hparams must be a table of method options, got {self.hparams!r}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed must be in 0..2^63-1, got {self.seed}")
        for key in NON_NEGATIVE:
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be >= 0, got {getattr(self, key)} (--set {key}=...)")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)} "
                            f"(e.g. --set precision=tf32)")
        if self.graph not in GRAPH_MODES:
            raise UserError(f"unknown graph mode {self.graph!r}; use one of {', '.join(GRAPH_MODES)} "
                            f"(e.g. --set graph=off)")
        if self.threads < 0:
            raise UserError(f"--threads must be >= 1 (or 0 for auto), got {self.threads}")
        if self.subset < 0 or self.subset == 1:
            raise UserError(f"--subset must be 0 (all images) or >= 2 (BatchNorm needs 2 per batch), "
                            f"got {self.subset}")
        if self.val_size < 0:
            raise UserError(f"val_size must be >= 0, got {self.val_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"unknown run-spec keys {sorted(unknown)}; valid keys: {sorted(names)}")
        return cls(**d)

    def config_hash(self) -> str:
        """Hash of the canonical spec without the seed (12 hex digits)."""
        d = self.to_dict()
        d.pop("seed")
        canon = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    @property
    def run_id(self) -> str:
        return f"{self.config_hash()}-s{self.seed}"

    def replace(self, **changes) -> "RunSpec":
        return dataclasses.replace(self, **changes)


def parse_value(text: str, like: Any = None) -> Any:
    """Parse a `--set` value, using the type of the default `like` when there is one."""
    if isinstance(like, bool):
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean (true/false), got {text!r}")
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    if isinstance(like, str):
        return text
    # No default to go by: try JSON-ish literals, then keep the string.
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def split_assignments(items: list[str]) -> dict[str, str]:
    """Turn ["a=1", "b=x"] into {"a": "1", "b": "x"} with a clear error on bad items."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}; e.g. --set wf=projected")
        out[key.strip()] = value.strip()
    return out


# --------------------------------------------------------------------------- suites

RUN_KEYS = ("method", "arch", "dataset", "seeds", "hparams", "epochs", "batch_size", "lr", "subset",
            "threads") + TRAIN_KEYS
SUITE_KEYS = ("name", "description", "dataset", "seeds", "default_budget")
TOP_KEYS = ("suite", "budgets", "runs", "slurm")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    budgets: dict[str, dict[str, Any]]
    budget: str
    specs: tuple[RunSpec, ...]


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


def load_suite(path: str, budget: str | None = None) -> Suite:
    """Parse a suite TOML file into RunSpecs for one budget.

    Format: a `[suite]` table (name, description, dataset, seeds, default_budget),
    `[budgets.<name>]` tables of training keys, and `[[runs]]` tables whose list
    values expand as a product (method, arch, dataset, seeds and training keys;
    `hparams` holds method options, also expanded when lists). A run with
    `budgets = [...]` belongs to those budgets only.
    """
    import itertools
    import tomllib
    from pathlib import Path

    from harness.runner import make_spec

    p = Path(path)
    if not p.is_file():
        raise UserError(f"suite file {p} does not exist; see benchmarks/ for the suites")
    try:
        doc = tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: invalid TOML ({exc})") from None
    except OSError as exc:
        raise UserError(f"cannot read suite file {p}: {exc.strerror or exc}") from None
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
    specs: list[RunSpec] = []
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
                 path=str(p), budgets=budgets, budget=budget, specs=tuple(specs))
