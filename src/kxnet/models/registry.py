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
    "factory_architecture",
    "is_model",
    "list_models",
    "register_architecture",
    "register_model",
    "register_scale_variants",
]

_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_factory_arch: dict[str, str] = {}
_architectures: dict[str, "Architecture"] = {}


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
    register_model(factory)
    for s in scales:
        register_model(_fixed_scale(factory, s), arch=factory.__name__)
    return factory


def _fixed_scale(factory: Callable[..., nn.Module], scale: int) -> Callable[..., nn.Module]:
    def fixed(**overrides) -> nn.Module:
        return factory(scale=scale, **overrides)   # a scale override is a TypeError, as it should be

    fixed.__name__ = fixed.__qualname__ = f"{factory.__name__}_x{scale}"
    fixed.__doc__ = f"{factory.__name__} at ×{scale}; other arguments as :func:`{factory.__name__}`."
    return fixed


def factory_architecture(name: str) -> "Architecture":
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


@dataclass(frozen=True)
class Architecture:
    """One method: how it is built, saved and recognised, and what it can do.

    ``model_class(config)`` builds it; ``config_class`` is a dataclass with ``to_dict`` /
    ``from_dict`` and at least ``scale`` and ``setting``. ``detect(state)`` says whether a
    state dict in the authors' layout is this method's (cheap, by key names), tried in
    descending ``detect_priority`` (a pair's state holds its parts' keys, so the pair goes
    first); then ``infer_config(state)`` reads every hyper-parameter from tensor shapes and
    raises ``ValueError`` with the reason when it cannot. ``optional_keys`` may be missing from
    a file (unused tensors the release saves). ``summary(config)`` is a short human label.

    The rest describes what the method can do. The loader, trainer, evaluation, benchmark,
    upscaler, CLI and demo read these fields here; nothing probes a model for them:

    * ``blind``: runs from the LR image alone (False: needs a kernel, e.g. USRNet alone);
    * ``kernel_input``: what ``forward(y, kernel=…)`` takes — ``"hr"`` an HR blur kernel (a
      user's known kernel, the oracle's true one), ``"condition"`` only the method's own
      estimate (``SROutput.condition``: DCLS's LR-space kernel), None nothing;
    * ``estimates_kernel``: ``SROutput.kernel`` is an HR blur-kernel estimate;
    * ``noise_input``: ``forward(…, sigma=σ/255)`` takes the noise level (the oracle passes it);
    * ``oracle_condition(model, hr, k)``: what ``forward(kernel=…)`` takes for the true HR
      kernel ``k``, where that is not ``k`` itself (DCLS);
    * ``min_input_side``: LR sides below it are padded before the network;
    * ``regional``: its blind estimate is per-stage HR kernels that tiles can take one by one,
      so a photo can be given a kernel per region (``kxnet.inference.regions``);
    * ``optimize(model)``: an inference module with the same outputs, faster (None: the model);
    * ``exportable``: a static-shape export exists (``kxnet.export``: ONNX, the OpenVINO backend);
    * ``loss``: the dataclass of its training loss weights (``train.loss`` in a recipe);
    * ``label``: its name in the paper's tables.
    """

    name: str
    model_class: type
    config_class: type
    detect: Callable[[dict[str, torch.Tensor]], bool]
    infer_config: Callable[[dict[str, torch.Tensor]], Any]
    optional_keys: frozenset[str] = field(default_factory=frozenset)
    summary: Callable[[Any], str] = lambda config: ""
    detect_priority: int = 0
    blind: bool = True
    kernel_input: str | None = "hr"
    estimates_kernel: bool = True
    noise_input: bool = False
    oracle_condition: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any] | None = None
    min_input_side: int = 8
    regional: bool = False
    exportable: bool = False
    optimize: Callable[[nn.Module], nn.Module] | None = None
    loss: type | None = None
    label: str = ""

    def __post_init__(self):
        if self.kernel_input not in KERNEL_INPUTS:
            raise ValueError(f"{self.name}: kernel_input must be one of {KERNEL_INPUTS}, got {self.kernel_input!r}")
        if not self.blind and self.kernel_input != "hr":
            raise ValueError(f"{self.name}: a method that is not blind must take an HR kernel")

    def oracle_kernel(self, model: nn.Module, hr: torch.Tensor, kernel: torch.Tensor):
        """What ``model(lr, kernel=…)`` takes to run with the true HR kernel ``kernel``."""
        return kernel if self.oracle_condition is None else self.oracle_condition(model, hr, kernel)

    def runner(self, model: nn.Module) -> nn.Module:
        """The module inference calls: ``optimize(model)`` where the method has one, on a CPU
        float32 model (the fused path is built for oneDNN; elsewhere the model is as fast)."""
        param = next(model.parameters(), None)
        if self.optimize is None or param is None or param.device.type != "cpu" or param.dtype != torch.float32:
            return model
        return self.optimize(model)


KERNEL_INPUTS = ("hr", "condition", None)


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
    """The architecture whose ``detect`` accepts ``state`` (highest ``detect_priority`` first,
    then by name, so the answer does not depend on import order), or None."""
    ordered = sorted(_architectures.values(), key=lambda a: (-a.detect_priority, a.name))
    return next((a for a in ordered if a.detect(state)), None)
