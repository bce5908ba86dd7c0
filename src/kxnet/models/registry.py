"""Two small registries in the style of timm's.

* **models**: each variant is a factory function decorated with :func:`register_model`;
  callers build models by name with :func:`create_model`.
* **architectures**: each trainable method (KXNet, DAN, …) registers one
  :class:`Architecture` — its module class, its config dataclass and how to recognise its
  state dicts (spandrel's detect/infer). Saving, loading, training and the CLI go through this
  table, so a new method plugs in by registering, not by editing them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

__all__ = [
    "Architecture",
    "architecture",
    "architecture_of",
    "architectures",
    "count_indexed",
    "create_model",
    "detect_architecture",
    "is_model",
    "list_models",
    "register_architecture",
    "register_model",
    "register_scale_variants",
]

_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_architectures: dict[str, "Architecture"] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its own name; a second factory with the same name is a bug."""
    name = fn.__name__
    if name in _entrypoints:
        raise ValueError(f"model {name!r} is already registered")
    _entrypoints[name] = fn
    return fn


def register_scale_variants(factory: Callable[..., nn.Module], scales=(2, 3, 4)) -> Callable[..., nn.Module]:
    """Register ``factory`` and one fixed-scale variant ``{name}_x{s}`` per scale (``kxnet_x4``)."""
    register_model(factory)
    for s in scales:
        register_model(_fixed_scale(factory, s))
    return factory


def _fixed_scale(factory: Callable[..., nn.Module], scale: int) -> Callable[..., nn.Module]:
    def fixed(**overrides) -> nn.Module:
        return factory(scale=scale, **overrides)   # a scale override is a TypeError, as it should be

    fixed.__name__ = fixed.__qualname__ = f"{factory.__name__}_x{scale}"
    fixed.__doc__ = f"{factory.__name__} at ×{scale}; other arguments as :func:`{factory.__name__}`."
    return fixed


def is_model(name: str) -> bool:
    return name in _entrypoints


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"kxnet*"``), sorted."""
    return sorted(fnmatch.filter(_entrypoints, pattern))


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` go to its factory (e.g. ``scale=2, stages=3``)."""
    if name not in _entrypoints:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _entrypoints[name](**overrides)


@dataclass(frozen=True)
class Architecture:
    """How one trainable method is built, saved and recognised.

    ``model_class(config)`` builds it; ``config_class`` is a dataclass with ``to_dict`` /
    ``from_dict`` and at least ``scale`` and ``setting``. ``detect(state)`` says whether a
    state dict in the authors' layout is this method's (cheap, by key names); then
    ``infer_config(state)`` reads every hyper-parameter from tensor shapes and raises
    ``ValueError`` with the reason when it cannot. ``optional_keys`` may be missing from a
    file (unused tensors the release saves). ``summary(config)`` is a short human label.
    """

    name: str
    model_class: type
    config_class: type
    detect: Callable[[dict[str, torch.Tensor]], bool]
    infer_config: Callable[[dict[str, torch.Tensor]], Any]
    optional_keys: frozenset[str] = field(default_factory=frozenset)
    summary: Callable[[Any], str] = lambda config: ""


def register_architecture(arch: Architecture) -> Architecture:
    if arch.name in _architectures:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    _architectures[arch.name] = arch
    return arch


def architectures() -> list[Architecture]:
    return list(_architectures.values())


def architecture(name: str) -> Architecture:
    if name not in _architectures:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(_architectures)}")
    return _architectures[name]


def architecture_of(model: nn.Module) -> Architecture:
    """The registered architecture ``model`` is an instance of (exact class first, then subclass)."""
    for arch in _architectures.values():
        if type(model) is arch.model_class:
            return arch
    for arch in _architectures.values():
        if isinstance(model, arch.model_class):
            return arch
    raise TypeError(f"{type(model).__name__} is not a registered architecture "
                    f"(known: {', '.join(_architectures)})")


def count_indexed(state: dict[str, torch.Tensor], prefix: str) -> int:
    """``1 +`` the highest ``i`` of the keys ``{prefix}.{i}.…`` (0 if none): the number of blocks
    of a ModuleList. A gap in the indices then shows as missing tensors, not a smaller model."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return 1 + max((int(m.group(1)) for k in state if (m := pattern.match(k))), default=-1)


def detect_architecture(state: dict[str, torch.Tensor]) -> Architecture | None:
    """The architecture whose ``detect`` accepts ``state``, or None."""
    return next((a for a in _architectures.values() if a.detect(state)), None)
