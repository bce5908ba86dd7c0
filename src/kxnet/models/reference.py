"""KXNet computed the paper's way, for comparison and tests only (never used for inference).

:class:`KXNetReference` is a :class:`~kxnet.models.KXNet` whose stages compute the data
gradients with the reference operators of :mod:`kxnet.physics.reference`: the kernel
gradient through the explicit p²×hw patch matrix (``F.unfold``), ``D_K`` / ``Dᵀ_K`` as one
grouped convolution with ``groups = B·C`` (as the release does, for every batch size) and
the normaliser ``Dᵀ_K(1)`` rebuilt from an all-ones B×3×h×w map. The prox nets, parameters,
state-dict keys and :meth:`KXNet.forward` are the model's own, so the two paths differ only
in how the physics is computed and must agree to float tolerance.

Build one from a model with :meth:`KXNetReference.from_model` (shares its parameters: no
copy, and later changes to the model's weights are seen) or from a config like a KXNet.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..physics.reference import image_step_gradient_reference, kernel_step_gradient_reference
from .kxnet import KXNet, KXNetConfig

__all__ = ["KXNetReference", "reference_model"]

# The release's constants (KXNET.md §3.3); the same values as in kxnet.py.
_PROJECTION_EPS = 1e-5
_GAMMA_DIVISOR = 10


class _ReferenceKernelStage(nn.Module):
    """K-net of one stage (§3.3) with the patch-matrix kernel gradient; shares ``K_ProNet``."""

    def __init__(self, stage: nn.Module):
        super().__init__()
        self.scale = stage.scale
        self.K_ProNet = stage.K_ProNet

    def forward(self, x, y, kernel, aux, gamma):
        k = kernel - gamma / _GAMMA_DIVISOR * kernel_step_gradient_reference(x, y, kernel, self.scale)
        z = self.K_ProNet(torch.cat([k.unsqueeze(1).expand(-1, 3, -1, -1), aux], dim=1))
        k = F.relu(z[:, :3].mean(dim=1) + _PROJECTION_EPS)
        return k / k.sum(dim=(-2, -1), keepdim=True), z[:, 3:]


class _ReferenceImageStage(nn.Module):
    """X-net of one stage (§3.3) with grouped-convolution ``D_K``/``Dᵀ_K``; shares ``X_ProNet``."""

    def __init__(self, stage: nn.Module):
        super().__init__()
        self.scale = stage.scale
        self.mode = stage.mode
        self.X_ProNet = stage.X_ProNet

    def forward(self, x, y, kernel, aux):
        s = self.scale
        g = image_step_gradient_reference(x, y, kernel, s, self.mode)
        v = self.X_ProNet(torch.cat([F.pixel_unshuffle(x, s), F.pixel_unshuffle(g, s), y, aux], dim=1))
        return F.pixel_shuffle(v[:, : 3 * s * s], s), v[:, 6 * s * s + 3:]


class KXNetReference(KXNet):
    """A KXNet whose stages use the reference (paper / release) operators; same weights."""

    def __init__(self, config: KXNetConfig):
        super().__init__(config)
        self._use_reference_stages()

    def _use_reference_stages(self) -> None:
        self.X_stage = nn.ModuleList(_ReferenceImageStage(s) for s in self.X_stage)
        self.K_stage = nn.ModuleList(_ReferenceKernelStage(s) for s in self.K_stage)

    @classmethod
    def from_model(cls, model: KXNet) -> "KXNetReference":
        """The reference twin of ``model``: the same parameter and buffer objects, so it sees
        the model's weights (and their later updates); ``model`` itself is left unchanged."""
        if not isinstance(model, KXNet):
            raise TypeError(f"expected a KXNet, got {type(model).__name__}")
        ref = copy.copy(model)  # shallow: parameters, buffers and submodules are shared...
        # ...but the registries are this object's own, so replacing stages leaves ``model`` alone.
        for name in ("_parameters", "_buffers", "_modules"):
            object.__setattr__(ref, name, OrderedDict(getattr(model, name)))
        object.__setattr__(ref, "_non_persistent_buffers_set", set(model._non_persistent_buffers_set))
        ref.__class__ = cls
        ref._use_reference_stages()
        return ref


def reference_model(model: KXNet) -> KXNetReference:
    """Shorthand for :meth:`KXNetReference.from_model`."""
    return KXNetReference.from_model(model)
