"""SLURM options: one table (`TABLE`), from which everything else is generated.

A suite's `[slurm]` table and `sweep`'s command line set the same options. From the one
entry per option below come: the `SlurmOptions` dataclass field and its default, the
validation of `[slurm]` values and flags (`slurm_options`), the submitit parameter
(`executor_parameters`), the `--dry-run` sbatch summary (`sbatch_summary`), the flag of
`sweep` with its help text (`add_flags`) and the reading of that flag (`from_args`).
A new option is one more `SlurmOption(...)` line.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.spec import parse_assignments


@dataclass(frozen=True)
class SlurmOption:
    key: str                # the [slurm] key, the dataclass field
    kind: str               # str | int | time | mem | lines (a list) | sbatch (a table)
    default: Any = None     # None: sbatch's own default
    help: str | None = None  # the sweep flag's help text
    flag: str = ""          # default --key-with-dashes
    low: int = 0            # int options: the smallest value
    submitit: str = ""      # the submitit parameter that gets the value ("": see executor_parameters)
    sbatch: bool = False    # shown in the sbatch summary as --flag=value

    @property
    def option(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")

    @property
    def dest(self) -> str:
        return self.key


TABLE: tuple[SlurmOption, ...] = (
    SlurmOption("partition", "str", submitit="slurm_partition", sbatch=True),
    SlurmOption("account", "str", submitit="slurm_account", sbatch=True),
    SlurmOption("qos", "str", submitit="slurm_qos", sbatch=True),
    SlurmOption("constraint", "str", submitit="slurm_constraint", sbatch=True),
    SlurmOption("gpus_per_node", "int", submitit="gpus_per_node", sbatch=True),
    SlurmOption("gres", "str", submitit="slurm_gres", sbatch=True,
                help="e.g. gpu:1, for clusters that want --gres instead of --gpus-per-node"),
    SlurmOption("cpus_per_task", "int", low=1, submitit="cpus_per_task", sbatch=True),
    SlurmOption("mem", "mem", submitit="slurm_mem", sbatch=True, help="memory per node, e.g. 16G"),
    SlurmOption("time", "time", 240, submitit="timeout_min",     # minutes
                help="time limit: minutes or [D-]HH:MM:SS (default 240 minutes)"),
    SlurmOption("array_parallelism", "int", 256, low=1, submitit="slurm_array_parallelism",
                help="at most N tasks of the array at once (default 256)"),   # submitit's default
    SlurmOption("max_array_size", "int", low=1,
                help="split arrays above N tasks (default: MaxArraySize from scontrol)"),
    SlurmOption("max_num_timeout", "int", 3,          # the executor's own argument
                help="requeues after time-outs (default 3)"),
    SlurmOption("signal_delay_s", "int", 120, low=10, flag="--signal-delay",
                submitit="slurm_signal_delay_s",
                help="USR2 this many seconds before the time limit (default 120)"),
    SlurmOption("job_name", "str", help="default: harness-<suite name>"),
    SlurmOption("sbatch", "sbatch", (),
                help="any further sbatch option, e.g. --sbatch exclude=node3; repeatable"),
    SlurmOption("setup", "lines", (),
                help="shell line run before each task (e.g. 'module load cuda'); repeatable"),
)
BY_KEY = {o.key: o for o in TABLE}
REPEATABLE = ("lines", "sbatch")


def _grace_s(self) -> float:
    """How long checkpoint() waits for an epoch boundary after USR2."""
    return float(max(10, self.signal_delay_s - 30))


SlurmOptions = dataclasses.make_dataclass(
    "SlurmOptions", [(o.key, Any, dataclasses.field(default=o.default)) for o in TABLE],
    frozen=True, namespace={"grace_s": property(_grace_s),
                            "__doc__": "Validated SLURM options of one sweep (see TABLE)."})
SlurmOptions.__module__ = __name__


def parse_time(value, where: str) -> int:
    """Minutes from an int or an sbatch time string (M, H:MM:SS, D-HH[:MM[:SS]])."""
    if isinstance(value, bool):
        raise UserError(f"{where}: expected minutes or [D-]HH:MM:SS, got {value!r}")
    if isinstance(value, int):
        minutes = value
    else:
        text = str(value).strip()
        m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if not m:
            raise UserError(f"{where}: expected minutes or [D-]HH:MM:SS, got {value!r}")
        days, a, b, c = m.groups()
        if days is not None:          # D-HH[:MM[:SS]]
            minutes = int(days) * 1440 + int(a) * 60 + int(b or 0) + (1 if c and int(c) else 0)
        elif b is None:               # M
            minutes = int(a)
        elif c is None:               # MM:SS
            minutes = int(a) + (1 if int(b) else 0)
        else:                         # HH:MM:SS
            minutes = int(a) * 60 + int(b) + (1 if int(c) else 0)
    if minutes < 1:
        raise UserError(f"{where}: the time limit must be at least 1 minute, got {value!r}")
    return minutes


def _check_mem(value, where: str) -> str:
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", text, re.IGNORECASE):
        raise UserError(f"{where}: expected memory like 16G or 4000M, got {value!r}")
    return text.upper()


def _check(o: SlurmOption, value, loc: str, merged: dict) -> Any:
    """`value` of option `o` validated (and, for the repeatable ones, merged)."""
    if o.kind == "time":
        return parse_time(value, loc)
    if o.kind == "mem":
        return _check_mem(value, loc)
    if o.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{loc}: expected an integer, got {value!r}")
        if value < o.low:
            raise UserError(f"{loc}: must be >= {o.low}, got {value}")
        return value
    if o.kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{loc}: expected a non-empty string, got {value!r}")
        return value
    if o.kind == "lines":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{loc}: expected a list of shell lines, got {value!r}")
        return tuple(merged.get(o.key, ())) + tuple(value)
    # sbatch: further sbatch options, name = value
    if not isinstance(value, dict):
        raise UserError(f"{loc}: expected a table of sbatch options, got {value!r}")
    extra = dict(merged.get(o.key, ()))
    for k, v in value.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", str(k)) or isinstance(v, (dict, list)):
            raise UserError(f"{loc}: bad sbatch option {k!r} = {v!r}; use name = value")
        extra[str(k).replace("_", "-")] = v
    return tuple(sorted(extra.items()))


def slurm_options(table: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                  where: str = "slurm") -> SlurmOptions:
    """Validate a `[slurm]` table, apply command-line overrides (None = not given)."""
    merged: dict[str, Any] = {}
    for source, prefix in ((table or {}, where), (overrides or {}, "command line")):
        for key, value in source.items():
            if value is None:
                continue
            if key not in BY_KEY:
                raise UserError(f"{prefix}: unknown SLURM option {key!r}; valid: {', '.join(BY_KEY)}")
            o = BY_KEY[key]
            if o.kind in REPEATABLE and not value and prefix != where:
                continue
            loc = f"{prefix}.{key}" if prefix == where else o.option
            merged[key] = _check(o, value, loc, merged)
    return SlurmOptions(**merged)


def executor_parameters(opts: SlurmOptions, name: str, setup: list[str]) -> dict[str, Any]:
    """submitit's `update_parameters` for `opts`; `setup` lines go before the options' own."""
    params: dict[str, Any] = dict(name=opts.job_name or name, stderr_to_stdout=True,
                                  slurm_setup=[*setup, *opts.setup])
    for o in TABLE:
        value = getattr(opts, o.key)
        if o.submitit and value is not None:
            params[o.submitit] = value
    if opts.sbatch:
        params["slurm_additional_parameters"] = dict(opts.sbatch)
    return params


def sbatch_summary(opts: SlurmOptions) -> str:
    parts = [f"--time={opts.time}"]
    parts += [f"{o.option}={getattr(opts, o.key)}" for o in TABLE
              if o.sbatch and getattr(opts, o.key) is not None]
    parts += [f"--{k}={v}" for k, v in opts.sbatch]
    parts.append(f"--signal=USR2@{opts.signal_delay_s}")
    return " ".join(parts)


def parameters_record(opts: SlurmOptions, max_size: int) -> dict:
    """The options as the manifest records them (plain JSON values)."""
    d = {o.key: getattr(opts, o.key) for o in TABLE}
    d["sbatch"] = dict(opts.sbatch)
    d["setup"] = list(opts.setup)
    d["max_array_size_used"] = max_size
    return d


# ----------------------------------------------------------------------------- the command line

def add_flags(group) -> None:
    """The SLURM flags of `sweep`, one per option, in TABLE order."""
    for o in TABLE:
        kwargs: dict[str, Any] = {}
        if o.kind == "int":
            kwargs["type"] = int
        if o.flag:
            kwargs["dest"] = o.dest     # --signal-delay stores signal_delay_s
        if o.kind in REPEATABLE:
            kwargs.update(action="append", default=[],
                          metavar="NAME=VALUE" if o.kind == "sbatch" else "LINE")
        if o.help is not None:
            kwargs["help"] = o.help
        group.add_argument(o.option, **kwargs)


def from_args(args) -> dict[str, Any]:
    """The SLURM overrides given on `sweep`'s command line (None: not given)."""
    out: dict[str, Any] = {}
    for o in TABLE:
        value = getattr(args, o.dest)
        if o.kind == "time" and value is not None and value.isdigit():
            value = int(value)
        elif o.kind == "sbatch":
            value = parse_assignments(value, "--sbatch")
        elif o.kind == "lines":
            value = list(value)
        out[o.key] = value
    return out
