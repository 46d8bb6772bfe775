"""The method registry: a leaf module (it imports only the standard library and
`harness.errors`), in the style of timm's `_registry.py`.

A method is one module in this package that registers a model builder:

    @register("mymethod", archs=("lenet5",), options={"width": Option(8, interval="[1, inf)")})
    def build(arch, input_shape, num_classes, *, width): ...

and one line in `_METHOD_MODULES` below. Every option a method accepts is declared as
data (`Option`: default, choices, numeric interval, per-architecture defaults, the
architectures that have it), so that

- `--set key=value` is typed by the declared default and checked when a spec is made
  (`harness.suite.make_spec`): `run`, `run --suite`, `sweep --dry-run` and SLURM
  submission all refuse a bad value before anything runs;
- `python -m harness list` prints each method's options, choices and defaults;
- the run record holds the complete, resolved set;
- `tests/test_registry_contract.py` tests every method without new test code.

Rules that tie several options together (or an option to the input size) stay in the
builder, which raises `UserError`; `harness.suite` runs the builder on PyTorch's meta
device when a spec is made, so those fire early too.

Models may define two optional hooks that the training loop calls:
- ``after_optimizer_step()``: e.g. a projection that keeps weights on a constraint set;
- ``auxiliary_loss()``: a tensor added to the loss (e.g. a gate sparsity penalty);
and an optional ``describe() -> dict`` whose content is stored in the run record.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.errors import UserError

# Modules that register methods; imported on first use of the registry (a new method is
# one file in this package and one line here).
_METHOD_MODULES = (
    "methods.cnn",
    "methods.cemnet",
    "methods.spectral",
    "methods.fcnn",
    "methods.dct",
    "methods.twosrelu",
    "methods.fno",
    "methods.gfnet",
    "methods.ffc",
    "methods.realnode",
    "methods.hartley",
)

_REGISTRY: dict[str, "MethodInfo"] = {}
_loaded = False
_INTERVAL = re.compile(r"([\[(])\s*(-inf|-?\d+(?:\.\d*)?)\s*,\s*(inf|-?\d+(?:\.\d*)?)\s*([\])])")


@dataclass(frozen=True)
class Option:
    """One method option, declared as data.

    `default` also fixes the type (bool, int, float or str; a float option accepts
    whole numbers). `choices` lists the allowed values; `interval` the allowed numbers,
    written as in mathematics with open or closed ends, e.g. "[0, 1)", "(0, inf)".
    `per_arch` maps an architecture to its own default; `archs` limits the option to
    those architectures (empty: every architecture of the method). `rule` is a further
    single-value test, with `use` saying what to use instead; `use` also replaces the
    generated advice of the error message.
    """

    default: Any
    choices: tuple = ()
    interval: str = ""
    per_arch: dict[str, Any] = field(default_factory=dict)
    archs: tuple[str, ...] = ()
    rule: Callable[[Any], bool] | None = None
    use: str = ""

    def __post_init__(self):
        if self.interval and not _INTERVAL.fullmatch(self.interval):
            raise ValueError(f"bad interval {self.interval!r}; write e.g. '[0, 1)' or '(0, inf)'")
        if self.rule is not None and not self.use:
            raise ValueError("an Option with a rule needs `use`, the advice shown when it fails")

    @property
    def kind(self) -> type:
        return type(self.default)

    def default_for(self, arch: str) -> Any:
        return self.per_arch.get(arch, self.default)

    def replace(self, **changes) -> "Option":
        return dataclasses.replace(self, **changes)

    def describe(self, arch: str | None = None) -> str:
        """e.g. 'spatial {spatial|projected|none}', '0.1 in [0, 1)', 'true': the default (for
        `arch`, or with the per-architecture ones) and the values allowed."""
        def show(v):
            return str(v).lower() if isinstance(v, bool) else str(v)
        text = show(self.default if arch is None else self.default_for(arch))
        if self.per_arch and arch is None:
            text += " (" + ", ".join(f"{a}: {show(v)}" for a, v in self.per_arch.items()) + ")"
        if self.choices:
            text += " {" + "|".join(map(show, self.choices)) + "}"
        elif self.interval:
            text += f" in {self.interval}"
        return text

    def _in_interval(self, value) -> bool:
        lo_end, lo, hi, hi_end = _INTERVAL.fullmatch(self.interval).groups()
        lo, hi = float(lo), float(hi)
        return (lo <= value if lo_end == "[" else lo < value) and \
            (value <= hi if hi_end == "]" else value < hi)

    def check(self, key: str, value: Any) -> None:
        """Raise a one-line UserError naming `key`, `value` and what to use instead."""
        kind = self.kind
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"bad value {key}={value!r}: use a finite number")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is bool:
            ok = isinstance(value, bool)
            advice = f"true or false (e.g. --set {key}={str(not self.default).lower()})"
        elif kind in (int, float):
            ok = number and (kind is float or isinstance(value, int))
            advice = ("a whole number" if kind is int else "a number") + \
                (f" in {self.interval}" if self.interval else "")
        else:
            ok = True
            advice = ""
        if ok and self.choices:
            ok = value in self.choices
            advice = f"one of {', '.join(map(str, self.choices))} (e.g. --set {key}={self.choices[0]})"
        if ok and self.interval:
            ok = number and self._in_interval(value)
            advice = ("a whole number" if kind is int else "a number") + f" in {self.interval}"
        if ok and self.rule is not None:
            ok = bool(self.rule(value))
        if not ok:
            raise UserError(f"bad value {key}={value!r}: use {self.use or advice}")


def with_defaults(options: dict[str, Option], **defaults) -> dict[str, Option]:
    """`options` with other defaults (e.g. an ablation that turns dropout off)."""
    return {k: o.replace(default=defaults[k]) if k in defaults else o for k, o in options.items()}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    build_fn: Callable[..., Any]   # builder(arch, input_shape, num_classes, **options), unchecked
    archs: tuple[str, ...]
    options: dict[str, Option] = field(default_factory=dict)
    description: str = ""
    reconstruction: bool = False   # formulas not public: our documented reconstruction
    default_arch: Callable[[tuple[int, ...]], str] | None = None

    def options_for(self, arch: str) -> dict[str, Option]:
        return {k: o for k, o in self.options.items() if not o.archs or arch in o.archs}

    def hparam_defaults(self, arch: str) -> dict[str, Any]:
        return {k: o.default_for(arch) for k, o in self.options_for(arch).items()}

    def check(self, arch: str, hparams: dict[str, Any]) -> None:
        """Refuse an unknown architecture, an unknown option or a declared option's bad value."""
        if arch not in self.archs:
            raise UserError(f"method {self.name!r} has no architecture {arch!r}; "
                            f"valid architectures: {', '.join(self.archs)}")
        options = self.options_for(arch)
        for key, value in hparams.items():
            if key not in options:
                raise UserError(f"method {self.name!r} has no option {key!r}; "
                                f"valid options: {', '.join(sorted(options)) or 'none'}")
            options[key].check(key, value)

    def builder(self, arch: str, input_shape, num_classes: int, **hparams):
        """The registered builder, after `check`: a bad option never reaches it."""
        self.check(arch, hparams)
        return self.build_fn(arch, input_shape, num_classes, **hparams)


def register(name: str, *, archs, options: dict[str, Option] | None = None, description: str = "",
             reconstruction: bool = False, default_arch=None):
    """Register a model builder under `name` (decorator)."""

    def deco(builder):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = MethodInfo(
            name=name, build_fn=builder, archs=tuple(archs), options=dict(options or {}),
            description=description, reconstruction=reconstruction, default_arch=default_arch)
        return builder

    return deco


def _load():
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _METHOD_MODULES:
            importlib.import_module(mod)


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> MethodInfo:
    _load()
    if name not in _REGISTRY:
        raise UserError(f"unknown method {name!r}; valid methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def resolve_arch(method: str, arch: str | None, input_shape: tuple[int, ...]) -> str:
    """The architecture to use: the one asked for (validated) or the method's default."""
    info = get(method)
    if arch is None:
        if info.default_arch is not None:
            return info.default_arch(tuple(input_shape))
        return info.archs[0]
    if arch not in info.archs:
        raise UserError(f"method {method!r} has no architecture {arch!r}; "
                        f"valid architectures: {', '.join(info.archs)}")
    return arch


def build(spec, input_shape: tuple[int, ...], num_classes: int):
    """Instantiate the model that `spec` describes (uses the global torch RNG).

    `spec.hparams` are typed values (`harness.suite.make_spec` parsed any text); options
    it leaves out take the method's defaults for the architecture.
    """
    info = get(spec.method)
    arch = resolve_arch(spec.method, spec.arch, input_shape)
    hp = {**info.hparam_defaults(arch), **spec.hparams}
    return info.builder(arch, tuple(input_shape), num_classes, **hp)
