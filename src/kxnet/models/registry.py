"""The methods by name, in the style of timm's and spandrel's registries.

* **architectures**: one :class:`~kxnet.models.architecture.Architecture` per method, listed
  in :mod:`kxnet.models.methods` — the one place a method is added. Saving, loading, training,
  the engines and the CLI look them up here, so a new method plugs in by being listed, not by
  editing them.
* **models**: each architecture's ``factories`` (``kxnet``, ``kxnet_x4``, ``usrnet_tiny``, …);
  callers build models by name with :func:`create_model`.

:func:`register_architecture` adds a method from outside the package (a plugin, a test's toy
method) and :func:`unregister_architecture` takes it out again; :func:`register_model` adds a
factory of a listed architecture.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

import torch
import torch.nn as nn

from .architecture import Architecture, count_indexed, scale_variants
from .methods import METHODS

__all__ = [
    "Architecture",
    "architecture",
    "architecture_of",
    "architectures",
    "count_indexed",
    "create_model",
    "detect_architecture",
    "factory_architecture",
    "is_model",
    "list_models",
    "register_architecture",
    "register_model",
    "register_scale_variants",
    "unregister_architecture",
]

_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_factory_arch: dict[str, str] = {}
_architectures: dict[str, Architecture] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, arch: str | None = None):
    """Register ``fn`` under its own name as a factory of architecture ``arch`` (default: the
    same name); use as ``@register_model`` or ``@register_model(arch="usrnet")``. A second
    factory with the same name is a bug."""
    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _entrypoints:
            raise ValueError(f"model {name!r} is already registered")
        _entrypoints[name] = f
        _factory_arch[name] = arch or name
        return f

    return add(fn) if fn is not None else add


def register_scale_variants(factory: Callable[..., nn.Module], scales=(2, 3, 4)) -> Callable[..., nn.Module]:
    """Register ``factory`` and one fixed-scale variant ``{name}_x{s}`` per scale (``kxnet_x4``),
    all of the architecture named like the factory."""
    for f in scale_variants(factory, scales):
        register_model(f, arch=factory.__name__)
    return factory


def factory_architecture(name: str) -> Architecture:
    """The architecture a registered factory builds (``usrnet_tiny`` → ``usrnet``)."""
    if name not in _entrypoints:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return architecture(_factory_arch[name])


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


def register_architecture(arch: Architecture) -> Architecture:
    """Add ``arch`` and its ``factories``; a name already taken (architecture or factory) is an
    error and changes nothing."""
    if arch.name in _architectures:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    taken = [f.__name__ for f in arch.factories if f.__name__ in _entrypoints]
    if taken:
        raise ValueError(f"model {taken[0]!r} is already registered")
    _architectures[arch.name] = arch
    for f in arch.factories:
        register_model(f, arch=arch.name)
    return arch


def unregister_architecture(name: str) -> Architecture:
    """Take architecture ``name`` out again, with every factory of it; returns it."""
    arch = architecture(name)
    del _architectures[name]
    for factory in [f for f, a in _factory_arch.items() if a == name]:
        del _entrypoints[factory], _factory_arch[factory]
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


def detect_architecture(state: dict[str, torch.Tensor]) -> Architecture | None:
    """The architecture whose ``detect`` accepts ``state`` (highest ``detect_priority`` first,
    then by name, so the answer does not depend on the order they are listed in), or None."""
    ordered = sorted(_architectures.values(), key=lambda a: (-a.detect_priority, a.name))
    return next((a for a in ordered if a.detect(state)), None)


for _arch in METHODS:
    register_architecture(_arch)
