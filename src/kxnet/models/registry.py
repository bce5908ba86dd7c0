"""A name → factory registry in the style of timm's: each architecture variant is a small
factory function decorated with :func:`register_model`, and callers build models by name."""

from __future__ import annotations

import fnmatch
from typing import Callable

import torch.nn as nn

__all__ = ["register_model", "create_model", "list_models", "is_model"]

_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its own name; a second factory with the same name is a bug."""
    name = fn.__name__
    if name in _entrypoints:
        raise ValueError(f"model {name!r} is already registered")
    _entrypoints[name] = fn
    return fn


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
