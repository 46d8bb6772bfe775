"""RunSpec: the complete, hashable description of one training run.

The run id is derived from the canonical spec without the seed, plus the seed, so
that re-running an identical spec finds its finished result (DESIGN.md, "Run identity").
The hash is taken over `to_dict()` as canonical JSON: a field added to RunSpec changes
every run id unless it is left out of the hash, so new fields need care: those in
LATE_FIELDS are left out of `to_dict()` (the hash, the record's spec, checkpoints) while
they have their default, so existing run ids and checkpoints stay valid.

This module only validates and hashes a spec; turning user input (flags, `--set`
text, suite files) into one is `harness.suite`.
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
    "warmup_epochs", "clip_norm", "val_size", "precision", "graph", "cudnn_benchmark",
    "compile",
)
OPTIMIZERS = ("rmsprop", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
MAX_SEED = 2**63 - 1          # torch seeds are 64-bit; larger or negative values would alias
MAX_EPOCHS = 1_000_000        # the papers train 800 epochs; 1e6 is a typo, not a budget
# The largest x86 servers have 2 x 192 cores x 2 SMT = 768 hardware threads. A larger
# count is a typo that libgomp would try to honour (it aborts the process when its
# per-thread allocations fail, leaving a run folder behind), so it is refused up front.
# Not relative to this machine: a spec made on a login node runs on the compute node.
MAX_THREADS = 1024
MAX_COUNT = 2**31 - 1         # images in a batch, subset or validation split (tensor sizes)

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
    precision: str = "fp32"      # fp32 (strict, TF32 off), tf32, bf16, fp16: harness/device.py
    graph: str = "auto"          # CUDA-graph training step: auto, on, off (harness/graph.py)
    cudnn_benchmark: bool = False  # cuDNN algorithm search (harness/device.py); off: heuristics
    compile: bool = False        # torch.compile the training step (harness/step.py `compiled`)
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
            elif f.type == "bool" and not isinstance(value, bool):
                try:
                    object.__setattr__(self, f.name, parse_value(str(value), False))
                except ValueError:
                    raise UserError(f"{f.name} must be on or off, got {value!r} "
                                    f"(e.g. --set {f.name}=on)") from None
        if not isinstance(self.hparams, dict):
            raise UserError(f"hparams must be a table of method options, got {self.hparams!r}")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise UserError(f"--epochs must be >= 1 and at most {MAX_EPOCHS:,}, got {self.epochs}")
        if not 1 <= self.batch_size <= MAX_COUNT:
            raise UserError(f"--batch-size must be >= 1 and below 2^31, got {self.batch_size}")
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
        if self.graph == "on" and (self.compile or self.precision == "fp16"):
            what = "compile=on" if self.compile else "precision=fp16"
            raise UserError(f"graph=on cannot capture a step with {what} (harness/graph.py); "
                            f"use --set graph=auto or graph=off with {what}")
        if not 0 <= self.threads <= MAX_THREADS:
            raise UserError(f"--threads must be in 1..{MAX_THREADS} (or 0 for auto), got {self.threads}")
        if self.subset < 0 or self.subset == 1 or self.subset > MAX_COUNT:
            raise UserError(f"--subset must be 0 (all images) or in 2..2^31-1 (BatchNorm needs 2 per "
                            f"batch), got {self.subset}")
        if not 0 <= self.val_size <= MAX_COUNT:
            raise UserError(f"val_size must be in 0..2^31-1, got {self.val_size}")
        if self.warmup_epochs > MAX_EPOCHS:
            raise UserError(f"warmup_epochs must be <= {MAX_EPOCHS:,}, got {self.warmup_epochs}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in LATE_FIELDS:
            if d[name] == _DEFAULTS[name]:
                del d[name]
        return d

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


# Fields added after run ids were fixed: written only when not at their default.
LATE_FIELDS = ("cudnn_benchmark", "compile")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunSpec)}


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


# The repeatable KEY=VALUE flags of the CLI: the form an error names, an example, and
# whether a key may be written like an option (`--sbatch --exclude=node1`).
ASSIGNMENT_FLAGS = {"--set": ("key=value", "wf=projected", False),
                    "--sbatch": ("NAME=VALUE", "exclude=node1", True)}


def parse_assignments(items, flag: str = "--set") -> dict[str, str]:
    """["a=1", "b=x"] -> {"a": "1", "b": "x"}: the items of a repeatable KEY=VALUE flag
    (ASSIGNMENT_FLAGS), with a one-line error naming the flag and an example."""
    form, example, option_names = ASSIGNMENT_FLAGS[flag]
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-") if option_names else key.strip()
        if not sep or not key:
            raise UserError(f"{flag} expects {form}, got {item!r}; e.g. {flag} {example}")
        out[key] = value.strip()
    return out
