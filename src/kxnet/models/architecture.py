"""What a method is: its :class:`Architecture` descriptor, and the :class:`Objective` it trains with.

A method's package (``kxnet/models/<method>/``) builds one :class:`Architecture` from its network,
its config, its factories, how its state dicts are recognised and its hooks; the descriptors are
listed in one place, :mod:`kxnet.models.methods`, and looked up through
:mod:`kxnet.models.registry`. Every caller — the loader, the trainer, evaluation, the benchmark,
the engines, export, the zoo, spandrel — reads them here; nothing probes a model's class.

This module imports no method, so every method can import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

__all__ = ["Architecture", "Batch", "KERNEL_INPUTS", "Objective", "bare_model", "blind_forward", "count_indexed",
           "scale_variants", "widen"]

KERNEL_INPUTS = ("hr", "condition", None)

Batch = dict[str, torch.Tensor]   # "lr", "hr", "kernel" (B×p×p), "noise" (σn, 8-bit units), on the device


# ---------------------------------------------------------------------------- the objective

def widen(t: torch.Tensor) -> torch.Tensor:
    """At least float32: autocast (bf16/fp16) outputs are scored in float32, float64 stays float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def bare_model(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def blind_forward(model: nn.Module, batch: Batch):
    return model(batch["lr"])


@dataclass(frozen=True)
class Objective:
    """How a method is trained: ``forward(model, batch)`` runs it on a training batch (default:
    ``model(batch["lr"])``), ``loss(result, batch, weights) → (total, parts)`` scores the result;
    ``parts`` holds detached scalars ``total``, ``image`` and ``kernel`` (zero where a method has
    no such term) for the logs. ``weights`` is the dataclass of the loss weights a recipe's
    ``train.loss`` section fills (None: the loss has none)."""

    loss: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
    forward: Callable[[nn.Module, Batch], object] = blind_forward
    # ``train.nonblind``: the forward given the true kernels, for methods where that trains the
    # restoration part usefully (None: the recipe option is refused for the method)
    nonblind_forward: Callable[[nn.Module, Batch], object] | None = None
    weights: type | None = None


# ---------------------------------------------------------------------------- the descriptor

@dataclass(frozen=True, eq=False)
class Architecture:
    """One method: how it is built, saved and recognised, what it can do, and its hooks.

    ``model_class(config)`` builds it; ``config_class`` is a dataclass with ``to_dict`` /
    ``from_dict`` and at least ``scale`` and ``setting``. ``factories`` are the functions
    :func:`~kxnet.models.create_model` and a recipe's ``model.name`` know it by (each under its
    ``__name__``; the first is named like the architecture; :func:`scale_variants` adds
    ``<name>_x2``/``_x3``/``_x4``). ``detect(state)`` says whether a state dict in the authors'
    layout is this method's (cheap, by key names), tried in descending ``detect_priority`` (a
    pair's state holds its parts' keys, so the pair goes first); then ``infer_config(state)``
    reads every hyper-parameter from tensor shapes and raises ``ValueError`` with the reason when
    it cannot. ``optional_keys`` may be missing from a file (unused tensors the release saves).
    ``summary(config)`` is a short human label; ``label`` its name in the paper's tables.

    What the method can do (the loader, trainer, evaluation, benchmark, upscaler, CLI and demo
    read these; nothing probes a model for them):

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
    * ``scales``: the scales it is built at.

    Hooks (None where the method has none):

    * ``optimize(model)``: an inference module with the same outputs, faster (PyTorch);
    * ``export(model, size, blind=True, kernel_size=None)``: a module of static shapes for one
      LR ``size`` (h, w) and batch 1, to trace (:func:`kxnet.export.export_onnx`, OpenVINO).
      Blind, ``forward(lr)`` returns ``sr`` or ``(sr, kernel, …)``; not blind (for the
      engine's tiles), ``forward(lr, condition)`` returns ``sr``;
    * ``fast_engine(model)``: what a compiled engine (:class:`kxnet.inference.openvino.OpenVINORunner`)
      needs to run the model — its graphs and how the model's arguments map onto them (KXNet:
      :class:`kxnet.models.kxnet.engine.KXNetEngine`); ``inference.backends`` offers OpenVINO
      exactly where it is set;
    * ``objective``: how it is trained (:class:`Objective`; None: not trainable here);
    * ``grow(model, depth)``: the model made deeper, to ``depth`` iterations (the config field
      ``depth`` names: KXNet's ``stages``), its trained iterations kept (``train.grow_stages``,
      ``kxnet convert --stages``);
    * ``half_precision(config)``: whether the network runs cast to float16 / bfloat16 (spandrel);
    * ``tiny(scale)``: the factory arguments of a small model at ``scale``, for tests (the
      contract test, ``tests/test_contract.py``, builds, trains and exports every method with it).

    What training and shipping need: ``find_unused_parameters`` (some parameter gets no gradient
    in the training forward: DDP must look for it); ``paper_training`` (the paper's training
    recipe — ``depth``'s value, ``lr_patch``, ``batch``, ``iterations`` — that the zoo's notes
    compare shipped weights with); ``not_upscaler`` (why the method is no image upscaler on its
    own, e.g. a kernel estimator: spandrel leaves it out).
    """

    name: str
    model_class: type
    config_class: type
    detect: Callable[[dict[str, torch.Tensor]], bool]
    infer_config: Callable[[dict[str, torch.Tensor]], Any]
    factories: tuple[Callable[..., nn.Module], ...] = ()
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
    scales: tuple[int, ...] = (2, 3, 4)
    optimize: Callable[[nn.Module], nn.Module] | None = None
    export: Callable[..., nn.Module] | None = None
    fast_engine: Callable[[nn.Module], Any] | None = None
    objective: Objective | None = None
    grow: Callable[[nn.Module, int], nn.Module] | None = None
    depth: str | None = None
    half_precision: Callable[[Any], bool] = lambda config: False
    tiny: Callable[[int], dict] | None = None
    find_unused_parameters: bool = False
    paper_training: Mapping[str, int] | None = None
    not_upscaler: str = ""
    label: str = ""

    def __post_init__(self):
        if self.kernel_input not in KERNEL_INPUTS:
            raise ValueError(f"{self.name}: kernel_input must be one of {KERNEL_INPUTS}, got {self.kernel_input!r}")
        if not self.blind and self.kernel_input != "hr":
            raise ValueError(f"{self.name}: a method that is not blind must take an HR kernel")
        if (self.grow is None) != (self.depth is None):
            raise ValueError(f"{self.name}: grow and depth go together")

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


# ---------------------------------------------------------------------------- helpers

def scale_variants(factory: Callable[..., nn.Module], scales=(2, 3, 4)) -> tuple[Callable[..., nn.Module], ...]:
    """``factory`` and one fixed-scale variant ``{name}_x{s}`` per scale (``kxnet_x4``), for an
    :class:`Architecture`'s ``factories``."""
    return (factory, *(_fixed_scale(factory, s) for s in scales))


def _fixed_scale(factory: Callable[..., nn.Module], scale: int) -> Callable[..., nn.Module]:
    def fixed(**overrides) -> nn.Module:
        return factory(scale=scale, **overrides)   # a scale override is a TypeError, as it should be

    fixed.__name__ = fixed.__qualname__ = f"{factory.__name__}_x{scale}"
    fixed.__doc__ = f"{factory.__name__} at ×{scale}; other arguments as :func:`{factory.__name__}`."
    return fixed


def count_indexed(state: dict[str, torch.Tensor], prefix: str) -> int:
    """``1 +`` the highest ``i`` of the keys ``{prefix}.{i}.…`` (0 if none): the number of blocks
    of a ModuleList. A gap in the indices then shows as missing tensors, not a smaller model."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return 1 + max((int(m.group(1)) for k in state if (m := pattern.match(k))), default=-1)
