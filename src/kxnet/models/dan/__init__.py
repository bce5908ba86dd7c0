"""DAN (Luo et al., NeurIPS 2020, DANv1): the method's package (docs/dan.md).

:mod:`.network` holds the network, its config, factory, loss weights and the authors' layout;
:mod:`.loss` its objective; ``DAN_ARCH`` is its descriptor, listed in :mod:`kxnet.models.methods`.
"""

from __future__ import annotations

from ..architecture import Architecture, scale_variants
from .loss import DAN_OBJECTIVE, dan_loss
from .network import DAN, DANConfig, DANLoss, Estimator, Restorer, _infer_dan_config, _is_dan_state, dan

__all__ = ["DAN", "DANConfig", "DANLoss", "DAN_ARCH", "Estimator", "Restorer", "dan", "dan_loss"]

DAN_ARCH = Architecture(
    name="dan", model_class=DAN, config_class=DANConfig,
    detect=_is_dan_state, infer_config=_infer_dan_config, factories=scale_variants(dan),
    summary=lambda c: f"{c.nb} blocks, {c.kernel_size}×{c.kernel_size} kernels, {c.code_length}-long codes",
    # forward(kernel=) takes a code (the condition) or an HR kernel it encodes
    objective=DAN_OBJECTIVE, label="DAN", half_precision=lambda c: True,
    tiny=lambda scale: {"scale": scale, "setting": 2, "nf": 16, "nb": 2, "estimator_nf": 16,
                        "estimator_blocks": 1, "loops": 2},
)
