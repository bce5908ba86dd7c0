"""USRNet (Zhang et al., CVPR 2020), non-blind: the method's package (docs/kenet_usrnet.md).

:mod:`.network` holds the network, its config, factories, loss weights and the authors'
layout; :mod:`.loss` its objective; ``USRNET_ARCH`` is its descriptor, listed in
:mod:`kxnet.models.methods`.
"""

from __future__ import annotations

from ..architecture import Architecture
from .loss import USRNET_OBJECTIVE, usrnet_forward, usrnet_loss
from .network import (TINY_USRNET, HyPaNet, ResUNet, USRNet, USRNetConfig, USRNetLoss, _infer_usrnet_config,
                      _is_usrnet_state, estimate_noise_level, usrnet, usrnet_tiny)

__all__ = ["HyPaNet", "ResUNet", "TINY_USRNET", "USRNET_ARCH", "USRNet", "USRNetConfig", "USRNetLoss",
           "estimate_noise_level", "usrnet", "usrnet_forward", "usrnet_loss", "usrnet_tiny"]

USRNET_ARCH = Architecture(
    name="usrnet", model_class=USRNet, config_class=USRNetConfig,
    detect=_is_usrnet_state, infer_config=_infer_usrnet_config, factories=(usrnet, usrnet_tiny),
    summary=lambda c: f"{c.n_iter} iterations, widths {'/'.join(map(str, c.nc))}, non-blind",
    blind=False, noise_input=True, objective=USRNET_OBJECTIVE, label="USRNet",
    tiny=lambda scale: {"scale": scale, "setting": 2, "n_iter": 2, "nc": [8, 8, 8, 8], "nb": 1, "h_nc": 8},
)
