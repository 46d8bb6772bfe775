"""Method registry: `@register(name, ...)` on a model builder, `build(spec, ...)`, listing.

A builder is a function ``builder(arch, input_shape, num_classes, **hparams) -> nn.Module``.
Every hyperparameter a method accepts is declared with its default, so `--set key=value`
is validated and typed, and the run record holds the complete, resolved set.

Models may define two optional hooks that the training loop calls:
- ``after_optimizer_step()``: e.g. a projection that keeps weights on a constraint set;
- ``auxiliary_loss()``: a tensor added to the loss (e.g. a gate sparsity penalty).
and an optional ``describe() -> dict`` whose content is stored in the run record.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.errors import UserError

# Modules that register methods; imported on first use of the registry.
_METHOD_MODULES = ("methods.cnn", "methods.cemnet", "methods.spectral", "methods.fcnn",
                   "methods.dct", "methods.twosrelu",
                   "methods.fno",
                   "methods.gfnet",
                   "methods.ffc",
                   "methods.realnode",
                   "methods.hartley")

_REGISTRY: dict[str, "MethodInfo"] = {}
_loaded = False


@dataclass(frozen=True)
class MethodInfo:
    name: str
    builder: Callable[..., Any]
    archs: tuple[str, ...]
    defaults: dict[str, Any] | Callable[[str], dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    reconstruction: bool = False   # formulas not public: our documented reconstruction
    default_arch: Callable[[tuple[int, ...]], str] | None = None

    def hparam_defaults(self, arch: str) -> dict[str, Any]:
        return dict(self.defaults(arch) if callable(self.defaults) else self.defaults)


def register(name: str, *, archs, defaults=None, description: str = "",
             reconstruction: bool = False, default_arch=None):
    """Register a model builder under `name` (decorator)."""

    def deco(builder):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = MethodInfo(
            name=name, builder=builder, archs=tuple(archs), defaults=defaults or {},
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


def resolve_hparams(method: str, arch: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Method defaults for `arch`, updated by `overrides` (strings are parsed by type)."""
    from harness.spec import parse_value

    info = get(method)
    hp = info.hparam_defaults(arch)
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


# Numeric ranges of method options, checked at spec time (before any data is read or any
# job submitted) for every method that has the option: (low, high, high included).
# Float options must also be finite. Kept as data so it can move into the registration.
OPTION_RANGES: dict[str, tuple[float, float, bool]] = {
    "dropout_conv": (0.0, 1.0, False),
    "dropout_fc": (0.0, 1.0, False),
    "dropout": (0.0, 1.0, False),
}
# Methods (name prefixes) whose builder checks its own range for an option above: the
# CEMNet family's approximated dropout N(1, p/2) is defined for p in [0, 1].
OWN_RANGE = {"dropout_conv": ("cemnet",), "dropout_fc": ("cemnet",)}


def check_options(method: str, arch: str, hparams: dict[str, Any], input_shape, num_classes: int) -> None:
    """Refuse bad option values at spec time, with the error the build would give.

    Besides OPTION_RANGES, the builder itself runs on PyTorch's meta device (shapes
    only, no memory, no parameter values), so its own checks (choices, sizes that do not
    fit the input) fire here instead of after the data is loaded or in a queued job.
    """
    import math

    import torch

    for key, value in hparams.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"bad value {key}={value!r}: use a finite number")
        if key in OPTION_RANGES and not method.startswith(OWN_RANGE.get(key, ())):
            lo, hi, hi_in = OPTION_RANGES[key]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
                lo <= value and (value <= hi if hi_in else value < hi)
            if not ok:
                raise UserError(f"bad value {key}={value!r}: use a number in [{lo:g}, {hi:g}"
                                f"{']' if hi_in else ')'}")
    info = get(method)
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            info.builder(arch, tuple(input_shape), num_classes, **hparams)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a builder that needs real tensors: its checks run at build
        pass


def build(spec, input_shape: tuple[int, ...], num_classes: int):
    """Instantiate the model that `spec` describes (uses the global torch RNG)."""
    info = get(spec.method)
    arch = resolve_arch(spec.method, spec.arch, input_shape)
    hp = resolve_hparams(spec.method, arch, spec.hparams)
    return info.builder(arch, tuple(input_shape), num_classes, **hp)
