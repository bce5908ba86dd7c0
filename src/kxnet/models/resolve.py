"""The one front door from "a model, as a user names it" to a ready model.

``resolve(spec, scale, device)`` takes a shipped name (``kxnet_x4.setting2``), a weights file
(ours or an authors' ``.pth``), a registered method without weights (``bicubic``), a module,
or None (the default for the scale), and returns a :class:`ResolvedModel`: the model in eval
mode on its device, its architecture's descriptor, where it came from, and its inference
runner built once and kept. Every failure — unknown name, missing or broken file, wrong
scale, an architecture without trained weights — is one :class:`ModelLoadError`.
``kxnet.super_resolve``, ``kxnet sr | eval | benchmark | export`` and the demo all come here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .loading import ModelLoadError, load_model, locate_weights
from .registry import Architecture, architecture_of, create_model, factory_architecture, is_model

__all__ = ["ResolvedModel", "ScaleMismatchError", "resolve"]


class ScaleMismatchError(ModelLoadError):
    """The model's scale is not the one asked for."""

    def __init__(self, source: str, model_scale: int, asked: int):
        self.source, self.model_scale, self.asked = source, model_scale, asked
        super().__init__(f"{source}: a ×{model_scale} model, but ×{asked} was asked for")


@dataclass
class ResolvedModel:
    """A model ready to run, and what is known about it.

    ``name`` is the shipped name, the file's stem or the method's name; ``file`` and
    ``sha256`` are None for a module given directly or a method without weights; ``entry``
    is the shipped :class:`~kxnet.models.zoo.WeightsEntry` when there is one.
    """

    model: nn.Module
    arch: Architecture
    name: str | None = None
    file: Path | None = None
    sha256: str | None = None
    entry: object | None = None
    _runner: nn.Module | None = field(default=None, repr=False)

    @property
    def config(self):
        return self.model.config

    @property
    def scale(self) -> int:
        return self.model.config.scale

    @property
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def runner(self) -> nn.Module:
        """The module inference calls (the architecture's optimised path where it has one),
        built on first use and kept: repeated calls do not rebuild it."""
        if self._runner is None:
            self._runner = self.arch.runner(self.model)
        return self._runner

    def meta(self) -> dict:
        """Name, file, SHA-256 and config, for reports and sidecars."""
        return {"name": self.name, "file": str(self.file) if self.file else None, "sha256": self.sha256,
                "arch": self.arch.name, **self.model.config.to_dict()}


def _untrained(spec: str) -> ModelLoadError:
    return ModelLoadError(f"{spec!r} is an architecture without trained weights; give a weights file or a "
                          "shipped model name (kxnet models lists them)")


def resolve(spec=None, scale: int | None = None, device: str | torch.device = "cpu",
            photos: bool = True) -> ResolvedModel:
    """A :class:`ResolvedModel` for ``spec``; ``scale`` (when given) must be the model's.

    ``spec`` None is the shipped default for ``scale`` (×4 if not given): the photo model
    where one ships and ``photos`` (``kxnet sr``), the setting-2 model otherwise (the paper's
    protocol: ``photos=False``). A registered method without parameters (``bicubic``) is built
    at ``scale``; one with parameters would run untrained, so it is refused.
    """
    from ..io import file_sha256
    from .zoo import default_model, read_manifest

    if isinstance(spec, ResolvedModel):
        resolved = spec
    elif isinstance(spec, nn.Module):
        try:
            arch = architecture_of(spec)
        except TypeError as e:
            raise ModelLoadError(str(e)) from None
        resolved = ResolvedModel(spec.to(device).eval(), arch, name=arch.name)
    elif spec is None or isinstance(spec, (str, os.PathLike)):
        name = default_model(scale or 4, photos=photos) if spec is None else spec
        if isinstance(name, str) and is_model(name):
            resolved = _registered(name, scale, device)
        else:
            path, shipped = locate_weights(name)
            model = load_model(path, device=device)
            entry = read_manifest().get(shipped) if shipped else None
            resolved = ResolvedModel(model, architecture_of(model), name=shipped or path.stem, file=path,
                                     sha256=entry.sha256 if entry else file_sha256(path), entry=entry)
    else:
        raise ModelLoadError(f"expected a model name, a weights file or a module, got {type(spec).__name__}")
    if scale is not None and resolved.scale != scale:
        raise ScaleMismatchError(str(resolved.file or resolved.name), resolved.scale, scale)
    return resolved


def _registered(name: str, scale: int | None, device) -> ResolvedModel:
    arch = factory_architecture(name)
    try:
        model = create_model(name, scale=scale or 4)
    except TypeError:  # fixed-scale variants (kxnet_x4) take no scale: trainable anyway
        raise _untrained(name) from None
    if any(True for _ in model.parameters()):
        raise _untrained(name)
    return ResolvedModel(model.to(device).eval(), arch, name=name)
