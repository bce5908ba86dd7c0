"""The one output type every super-resolution method returns, so evaluation, training,
tiled inference and the CLI treat KXNet, the baselines and bicubic alike."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

__all__ = ["SROutput"]


class SROutput(NamedTuple):
    """``sr``: the result (B×3×sh×sw, unclamped); ``kernel``: the estimated HR blur kernel
    (B×p×p) or None for a method that has none; ``stage_images`` / ``stage_kernels``: one entry
    per iteration of an unrolled method (empty for single-pass methods).

    ``condition``: what the method's blind estimate amounts to, in the form its own
    ``forward(y, kernel=condition)`` accepts, so another crop of the same photo can be run
    with the same estimate (tiled inference). None means ``stage_kernels`` serves (KXNet).
    """

    sr: torch.Tensor
    kernel: torch.Tensor | None
    stage_images: list[torch.Tensor]
    stage_kernels: list[torch.Tensor]
    condition: Any = None
