"""KENet (Cao et al.), the kernel estimator: the method's package (docs/kenet_usrnet.md).

:mod:`.network` holds the network, its config, factory, loss weights and the authors' layout;
:mod:`.loss` its objective (the adaptive attention loss); ``KENET_ARCH`` is its descriptor,
listed in :mod:`kxnet.models.methods`.
"""

from __future__ import annotations

from ..architecture import Architecture
from .loss import KENET_OBJECTIVE, attention_loss
from .network import (DOUBLING_CHANNELS, PAPER_CHANNELS, KENet, KENetConfig, KENetLoss, _is_kenet_state,
                      infer_kenet_config, kenet)

__all__ = ["DOUBLING_CHANNELS", "KENET_ARCH", "KENet", "KENetConfig", "KENetLoss", "PAPER_CHANNELS",
           "attention_loss", "infer_kenet_config", "kenet"]

KENET_ARCH = Architecture(
    name="kenet", model_class=KENet, config_class=KENetConfig,
    detect=_is_kenet_state, infer_config=infer_kenet_config, factories=(kenet,),
    summary=lambda c: f"kernel estimator, widths {'/'.join(map(str, c.channels))}, "
                      f"{c.kernel_size}×{c.kernel_size} kernels",
    objective=KENET_OBJECTIVE, label="KENet", not_upscaler="a kernel estimator: its image is bicubic",
    tiny=lambda scale: {"scale": scale, "setting": 2, "channels": [8, 8, 8, 8], "fc": 16},
)
