"""KENet's training objective: the adaptive attention loss (paper Eq. 7–8; docs/kenet_usrnet.md).

``k*_λ(i,j) = k*(i,j)`` where ``k_gt(i,j) > λ·max(k_gt)``, else ``k_gt(i,j)``; then
``L_att = ρ₀‖k* − k_gt‖₁ + ρ₁‖k*_λ₁ − k_gt‖₁ + ρ₂‖k*_λ₂ − k_gt‖₁`` with (λ₁, λ₂) = (0.01, 0.1) and
(ρ₀, ρ₁, ρ₂) = (0.01, 0.1, 1) (``KENetLoss.att_lambda`` / ``att_rho``). The paper does not say
how ‖·‖₁ is normalised; every term here is the mean over all l² taps and the batch, so a masked
term is its kept taps' absolute errors summed and divided by l² (not by the number kept), and
its gradient reaches the kept taps only (the others hold the constant k_gt).
"""

from __future__ import annotations

import torch

from ..architecture import Objective, widen
from .network import KENetLoss

__all__ = ["KENET_OBJECTIVE", "attention_loss"]


def attention_loss(estimate: torch.Tensor, target: torch.Tensor, weights: KENetLoss | None = None):
    """``(L_att, parts)`` for B×l×l kernels; ``parts["kernel"]`` is the plain mean L1 (ρ₀'s term)."""
    w = weights or KENetLoss()
    k = widen(estimate)
    gt = target.to(k.dtype)
    peak = gt.flatten(1).max(dim=1).values.reshape(-1, 1, 1)
    error = (k - gt).abs()
    plain = error.mean()
    total = w.att_rho[0] * plain
    for lam, rho in zip(w.att_lambda, w.att_rho[1:]):
        total = total + rho * torch.where(gt > lam * peak, error, torch.zeros_like(error)).mean()
    return total, {"total": total.detach(), "image": plain.new_zeros(()).detach(), "kernel": plain.detach()}


KENET_OBJECTIVE = Objective(loss=lambda out, batch, w: attention_loss(out.kernel, batch["kernel"], w),
                            weights=KENetLoss)
