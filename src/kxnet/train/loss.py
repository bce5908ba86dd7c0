"""Training objectives: how each architecture is run on a training batch and scored.

Each method's :class:`~kxnet.models.Objective` is on its descriptor (``Architecture.objective``,
in the method's package: ``kxnet/models/<method>/loss.py``): a forward (``model(batch["lr"])``
for blind methods; a non-blind method may read the true kernel and noise level from the batch)
and a loss on the :class:`~kxnet.models.SROutput`. The trainer asks :func:`objective_for` for
the model's, so it holds no method-specific code. The names below stay importable from here.
"""

from __future__ import annotations

import torch.nn as nn

from ..models import architecture_of
from ..models.architecture import Batch, Objective, bare_model, blind_forward, widen
from ..models.kxnet.loss import kxnet_loss, stage_weights

__all__ = ["Batch", "Objective", "bare_model", "blind_forward", "kxnet_loss", "objective_for", "stage_weights",
           "widen"]


def objective_for(model: nn.Module) -> Objective:
    """The objective of ``model``'s registered architecture."""
    arch = architecture_of(model)
    if arch.objective is None:
        raise ValueError(f"no training objective is registered for {arch.name!r}")
    return arch.objective
