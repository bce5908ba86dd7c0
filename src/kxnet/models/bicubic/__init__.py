"""Bicubic interpolation behind the model interface, so evaluation treats it like any model
(it is the "Bicubic" row of the paper's tables, docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ...physics import bicubic_upsample
from ..config import MethodConfig
from ..output import SROutput
from ..architecture import Architecture

__all__ = ["BICUBIC_ARCH", "Bicubic", "BicubicConfig", "bicubic"]


@dataclass
class BicubicConfig(MethodConfig):
    """Only the scale matters; the setting is kept so every method's config has one."""


class Bicubic(nn.Module):
    """Parameter-free; estimates no kernel, so ``kernel`` is None and the stage lists empty."""

    def __init__(self, config: BicubicConfig):
        super().__init__()
        self.config = config

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, y: torch.Tensor, kernel: torch.Tensor | None = None) -> SROutput:
        """``kernel`` is accepted for interface compatibility and ignored."""
        return SROutput(bicubic_upsample(y, self.scale), None, [], [])


def bicubic(scale: int = 4, setting: int = 2) -> Bicubic:
    """``setting`` is accepted (and ignored) so callers can build any model from the same arguments."""
    return Bicubic(BicubicConfig(scale=scale, setting=setting))


def _no_weights(state: dict) -> BicubicConfig:
    raise ValueError("bicubic has no weights to read")


BICUBIC_ARCH = Architecture(
    name="bicubic", model_class=Bicubic, config_class=BicubicConfig,
    detect=lambda state: False, infer_config=_no_weights, factories=(bicubic,), summary=lambda c: "interpolation",
    kernel_input=None, estimates_kernel=False, min_input_side=1, label="Bicubic",
    not_upscaler="no weights",
    tiny=lambda scale: {"scale": scale},
)
