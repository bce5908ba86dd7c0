"""The training objective, paper Eq. 12 as the release computes it (KXNET.md §5).

``L = Σ_t α_t·L1(X^t, X) + β_t·L1(K^t, K)`` over the stages t = 1…T, with mean-reduced L1
(``nn.L1Loss``), α_t = β_t = 0.1 for t < T and 1 for the last stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import LossConfig

__all__ = ["stage_weights", "kxnet_loss"]


def stage_weights(stages: int, weight: float, last_weight: float) -> list[float]:
    """``[weight] * (T−1) + [last_weight]``."""
    if stages < 1:
        raise ValueError(f"stages must be ≥ 1, got {stages}")
    return [float(weight)] * (stages - 1) + [float(last_weight)]


def kxnet_loss(output, hr: torch.Tensor, kernel: torch.Tensor,
               weights: LossConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 12 on a :class:`~kxnet.models.KXNetOutput`; returns ``(total, parts)``.

    ``parts`` holds the (detached) last-stage terms ``image`` and ``kernel`` and the ``total``.
    The terms are computed in float32 even when the forward ran under autocast. A model without
    stage lists (a baseline) is scored on ``sr`` (and ``kernel`` if it estimates one) alone.
    """
    w = weights or LossConfig()
    images = list(output.stage_images) or [output.sr]
    kernels = list(output.stage_kernels) or ([output.kernel] if output.kernel is not None else [])
    hr = hr.float()
    kernel = kernel.float()
    total = hr.new_zeros(())
    image_terms = [F.l1_loss(x.float(), hr) for x in images]
    for a, term in zip(stage_weights(len(images), w.image_weight, w.image_weight_last), image_terms):
        total = total + a * term
    kernel_terms = [F.l1_loss(k.float(), kernel) for k in kernels]
    if kernel_terms:
        for b, term in zip(stage_weights(len(kernels), w.kernel_weight, w.kernel_weight_last), kernel_terms):
            total = total + b * term
    parts = {
        "total": total.detach(),
        "image": image_terms[-1].detach(),
        "kernel": kernel_terms[-1].detach() if kernel_terms else hr.new_zeros(()),
    }
    return total, parts
