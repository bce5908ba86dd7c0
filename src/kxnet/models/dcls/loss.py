"""DCLS's training objective (docs/dcls.md; release ``B_Model.optimize_parameters``).

``L = image_weight_last · L1(SR, HR) + kernel_weight_last · L1(k̂, k_l)``, mean-reduced, 1:1 by
default as the release (:class:`~kxnet.models.DCLSLoss`; DCLS is single-pass, so its output
is its last "stage"). ``k̂`` is the
Estimator's LR-space kernel (the output's ``condition``); the target ``k_l`` is the
reformulated kernel of the batch's clean HR patch under its true HR kernel, recomputed here
from ``hr`` and ``kernel`` (:func:`kxnet.models.dcls.fourier.reformulated_kernel`): it is the
clean, noise-free, unquantised LR the release feeds its ``CorrectionLoss``.

The Restorer sees k̂ detached, so the image term trains the Restorer and the kernel term the
Estimator. The release puts the two in separate Adam parameter groups with the same learning
rate, which is the same optimiser as one group; the trainer uses one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..architecture import Objective
from .fourier import reformulated_kernel
from .network import DCLSLoss

__all__ = ["DCLS_OBJECTIVE", "dcls_loss"]


def dcls_loss(output, hr: torch.Tensor, kernel: torch.Tensor, scale: int,
              weights: DCLSLoss | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss on a DCLS :class:`~kxnet.models.SROutput`; returns ``(total, parts)`` like
    :func:`~kxnet.train.loss.kxnet_loss` (``parts["kernel"]`` is the LR-space kernel term)."""
    w = weights or DCLSLoss()
    estimate = output.condition.float()
    target = reformulated_kernel(hr.float(), kernel.float(), scale, estimate.shape[-1])
    image_term = F.l1_loss(output.sr.float(), hr.float())
    kernel_term = F.l1_loss(estimate, target)
    total = w.image_weight_last * image_term + w.kernel_weight_last * kernel_term
    return total, {"total": total.detach(), "image": image_term.detach(), "kernel": kernel_term.detach()}


def _loss(output, batch, weights):
    scale = batch["hr"].shape[-1] // batch["lr"].shape[-1]
    return dcls_loss(output, batch["hr"], batch["kernel"], scale, weights)


DCLS_OBJECTIVE = Objective(_loss, weights=DCLSLoss)
