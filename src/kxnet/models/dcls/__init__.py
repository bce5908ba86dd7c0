"""DCLS (Luo et al., CVPR 2022): the method's package (docs/dcls.md).

:mod:`.network` holds the network, its config, factory, loss weights and the authors' layout;
:mod:`.parts` its Estimator and Restorer; :mod:`.fourier` the deconvolution and the
reformulated kernel; :mod:`.loss` its objective; ``DCLS_ARCH`` is its descriptor, listed in
:mod:`kxnet.models.methods`.
"""

from __future__ import annotations

from ..architecture import Architecture, scale_variants
from .loss import DCLS_OBJECTIVE, dcls_loss
from .network import FILTER_STRUCTURES, DCLS, DCLSConfig, DCLSLoss, _infer_dcls_config, _is_dcls_state, dcls

__all__ = ["DCLS", "DCLSConfig", "DCLSLoss", "DCLS_ARCH", "FILTER_STRUCTURES", "dcls", "dcls_loss"]

DCLS_ARCH = Architecture(
    name="dcls", model_class=DCLS, config_class=DCLSConfig,
    detect=_is_dcls_state, infer_config=_infer_dcls_config, factories=scale_variants(dcls),
    summary=lambda c: f"{c.kernel_size}×{c.kernel_size} LR-space kernels, {c.ng}×{c.nb} DPAB, nf {c.nf}",
    # its estimate is an LR-space kernel: no HR kernel out, none a user could give in
    kernel_input="condition", estimates_kernel=False,
    oracle_condition=lambda model, hr, kernel: model.oracle_condition(hr, kernel),
    objective=DCLS_OBJECTIVE, label="DCLS",
    tiny=lambda scale: {"scale": scale, "setting": 2, "nf": 16, "nb": 1, "ng": 1, "input_para": 8,
                        "kernel_channels": 4, "cls_eps": 1e-8},
)
