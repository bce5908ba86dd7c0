"""USRNet's training objective (docs/kenet_usrnet.md; KAIR ``train_usrnet.json``): non-blind, L1.

``L = image_weight_last · L1(x_n, X)`` with mean-reduced L1 on the last iteration only (KAIR
scores ``netG``'s output, nothing per iteration). The forward feeds the batch's true kernel
(the project's orientation; USRNet flips it itself) and true σ: batches carry ``noise`` in 8-bit
units (:class:`kxnet.train.TrainingSamples`), USRNet takes [0, 1] units, hence the ÷255.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..architecture import Batch, Objective, widen
from .network import USRNetLoss

__all__ = ["USRNET_OBJECTIVE", "usrnet_forward", "usrnet_loss"]


def usrnet_forward(model: nn.Module, batch: Batch):
    return model(batch["lr"], kernel=batch["kernel"], sigma=batch["noise"].float() / 255.0)


def usrnet_loss(output, hr: torch.Tensor, weights: USRNetLoss | None = None):
    """``(total, parts)`` for a USRNet :class:`~kxnet.models.SROutput`; no kernel term."""
    w = weights or USRNetLoss()
    sr = widen(output.sr)
    image = F.l1_loss(sr, hr.to(sr.dtype))
    total = w.image_weight_last * image
    return total, {"total": total.detach(), "image": image.detach(), "kernel": image.new_zeros(()).detach()}


USRNET_OBJECTIVE = Objective(loss=lambda out, batch, w: usrnet_loss(out, batch["hr"], w),
                             forward=usrnet_forward, weights=USRNetLoss)
