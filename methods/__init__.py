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


def build(spec, input_shape: tuple[int, ...], num_classes: int):
    """Instantiate the model that `spec` describes (uses the global torch RNG)."""
    info = get(spec.method)
    arch = resolve_arch(spec.method, spec.arch, input_shape)
    hp = resolve_hparams(spec.method, arch, spec.hparams)
    return info.builder(arch, tuple(input_shape), num_classes, **hp)
