"""Bicubic interpolation behind the model interface, so evaluation treats it like any model
(it is the "Bicubic" row of the paper's tables, KXNET.md §6.4)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..kernels import SCALES
from ..physics import bicubic_upsample
from .output import SROutput
from .registry import register_model

__all__ = ["Bicubic", "bicubic"]


class Bicubic(nn.Module):
    """Parameter-free; estimates no kernel, so ``kernel`` is None and the stage lists empty."""

    def __init__(self, scale: int = 4):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.scale = scale

    def forward(self, y: torch.Tensor, kernel: torch.Tensor | None = None) -> SROutput:
        """``kernel`` is accepted for interface compatibility and ignored."""
        return SROutput(bicubic_upsample(y, self.scale), None, [], [])


@register_model
def bicubic(scale: int = 4, setting: int | None = None) -> Bicubic:
    """``setting`` is accepted (and ignored) so callers can build any model from the same arguments."""
    return Bicubic(scale)
