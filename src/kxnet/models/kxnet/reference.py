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

import torch.nn as nn

from ...physics.reference import image_step_gradient_reference, kernel_step_gradient_reference
from .network import KXNet, KXNetConfig, _ImageStage, _KernelStage

__all__ = ["KXNetReference", "reference_model"]


class _ReferenceKernelStage(_KernelStage):
    """K-net of one stage (docs/kxnet.md) with the patch-matrix kernel gradient."""

    step_gradient = staticmethod(kernel_step_gradient_reference)


class _ReferenceImageStage(_ImageStage):
    """X-net of one stage (docs/kxnet.md) with grouped-convolution ``D_K``/``Dᵀ_K``."""

    step_gradient = staticmethod(image_step_gradient_reference)


class KXNetReference(KXNet):
    """A KXNet whose stages use the reference (paper / release) operators; same weights."""

    def __init__(self, config: KXNetConfig):
        super().__init__(config)
        self._use_reference_stages()

    def _use_reference_stages(self) -> None:
        # the new stages share the model's prox nets: only the physics differs
        self.X_stage = nn.ModuleList(_ReferenceImageStage(s.scale, s.mode, s.X_ProNet) for s in self.X_stage)
        self.K_stage = nn.ModuleList(_ReferenceKernelStage(s.scale, s.K_ProNet) for s in self.K_stage)

    @classmethod
    def from_model(cls, model: KXNet) -> "KXNetReference":
        """The reference twin of ``model``: the same parameter, buffer and submodule objects,
        so it sees the model's weights (and their later updates); ``model`` itself is left
        unchanged (the twin has registries of its own, so replacing its stages touches only it)."""
        if not isinstance(model, KXNet):
            raise TypeError(f"expected a KXNet, got {type(model).__name__}")
        ref = cls.__new__(cls)
        nn.Module.__init__(ref)
        for name, value in vars(model).items():   # config, an absent estimator (None), training
            if not name.startswith("_"):
                object.__setattr__(ref, name, value)
        for name, param in model._parameters.items():
            ref.register_parameter(name, param)
        for name, buf in model._buffers.items():
            ref.register_buffer(name, buf, persistent=name not in model._non_persistent_buffers_set)
        for name, module in model._modules.items():
            ref.add_module(name, module)
        ref._use_reference_stages()
        return ref


def reference_model(model: KXNet) -> KXNetReference:
    """Shorthand for :meth:`KXNetReference.from_model`."""
    return KXNetReference.from_model(model)
