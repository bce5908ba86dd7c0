"""DAN's training objective (docs/dan.md), as the release's ``optimize_parameters`` sums it.

``L = image_weight_last · L1(SRᵀ, X) + code_weight · L1(cᵀ, c_gt)`` with mean-reduced L1 and
weights 1 : 1 by default. Only the **last** iteration is scored: the release computes the terms
of every iteration in a loop but adds only the last ones (the additions sit after the loop), so
the earlier iterations are trained through the shared weights alone. ``c_gt`` is the true
kernel's code in the model's own PCA basis (``vec(k)ᵀ P``, the release's ``PCAEncoder``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..architecture import Batch, Objective, bare_model, widen
from .network import DANLoss

__all__ = ["DAN_OBJECTIVE", "dan_loss"]


def dan_loss(output, hr: torch.Tensor, code_target: torch.Tensor,
             weights: DANLoss | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The last-iteration loss on a DAN's blind :class:`~kxnet.models.SROutput` (whose
    ``condition`` is the final code cᵀ); returns ``(total, parts)``, ``parts["kernel"]`` being
    the code term."""
    w = weights or DANLoss()
    image = F.l1_loss(widen(output.sr), widen(hr))
    code = F.l1_loss(widen(output.condition), widen(code_target))
    total = w.image_weight_last * image + w.code_weight * code
    return total, {"total": total.detach(), "image": image.detach(), "kernel": code.detach()}


def _forward(model: nn.Module, batch: Batch):
    """The blind forward, and the target code: the true kernel encoded with this model's basis,
    in float32 even under autocast (it is a target, not a prediction)."""
    out = model(batch["lr"])
    kernel = batch["kernel"]
    with torch.autocast(kernel.device.type, enabled=False):
        target = bare_model(model).encode(kernel.float())
    return out, target


DAN_OBJECTIVE = Objective(
    loss=lambda result, batch, weights: dan_loss(result[0], batch["hr"], result[1], weights),
    forward=_forward, weights=DANLoss,
)
