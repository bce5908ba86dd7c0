"""KXNet's training objective: paper Eq. 12 as the release computes it (docs/kxnet.md, docs/training.md).

``L = Σ_t α_t·L1(X^t, X) + β_t·L1(K^t, K)`` over the stages t = 1…T, with mean-reduced L1
(``nn.L1Loss``), α_t = β_t = 0.1 for t < T and 1 for the last stage. ``monotone_weight`` μ > 0
adds μ·Σ_{t≥2} mean_b relu(L1_b(X^t, X) − L1_b(X^{t−1}, X)), per sample b, stage t−1's term
detached: a stage is charged for every image it leaves worse than the one before (a batch mean
would let the noisy samples, where later stages gain most, hide the clean ones), and the earlier
stage cannot pay by getting worse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..architecture import Objective
from .network import KXNetLoss

__all__ = ["KXNET_OBJECTIVE", "kxnet_loss", "stage_weights"]


def stage_weights(stages: int, weight: float, last_weight: float) -> list[float]:
    """``[weight] * (T−1) + [last_weight]``."""
    if stages < 1:
        raise ValueError(f"stages must be ≥ 1, got {stages}")
    return [float(weight)] * (stages - 1) + [float(last_weight)]


def kxnet_loss(output, hr: torch.Tensor, kernel: torch.Tensor,
               weights: KXNetLoss | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 12 on a :class:`~kxnet.models.KXNetOutput`; returns ``(total, parts)``.

    ``parts`` holds the (detached) last-stage terms ``image`` and ``kernel`` and the ``total``.
    The terms are computed in float32 even when the forward ran under autocast. A model without
    stage lists (a baseline) is scored on ``sr`` (and ``kernel`` if it estimates one) alone.
    """
    w = weights or KXNetLoss()
    images = list(output.stage_images) or [output.sr]
    kernels = list(output.stage_kernels) or ([output.kernel] if output.kernel is not None else [])
    hr = hr.float()
    kernel = kernel.float()
    total = hr.new_zeros(())
    image_terms = [F.l1_loss(x.float(), hr) for x in images]
    for a, term in zip(stage_weights(len(images), w.image_weight, w.image_weight_last), image_terms):
        total = total + a * term
    if w.monotone_weight > 0:
        per_sample = [(x.float() - hr).abs().flatten(1).mean(dim=1) for x in images]
        for before, after in zip(per_sample, per_sample[1:]):
            total = total + w.monotone_weight * F.relu(after - before.detach()).mean()
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


KXNET_OBJECTIVE = Objective(
    loss=lambda out, batch, w: kxnet_loss(out, batch["hr"], batch["kernel"], w),
    nonblind_forward=lambda model, batch: model(batch["lr"], kernel=batch["kernel"]),
    weights=KXNetLoss,
)
