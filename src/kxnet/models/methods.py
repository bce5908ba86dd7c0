"""Every method kxnet knows, in one place: the descriptors, in the order they are listed
(``architectures()``, ``kxnet models``, spandrel's install). Adding a method is adding its
package under ``kxnet/models/`` and its descriptor here (docs/adding-a-method.md); the
registry (:mod:`kxnet.models.registry`) reads this tuple, nothing registers itself on import.
"""

from __future__ import annotations

from .bicubic import BICUBIC_ARCH
from .dan import DAN_ARCH
from .dcls import DCLS_ARCH
from .kenet import KENET_ARCH
from .kenet_usrnet import KENET_USRNET_ARCH
from .kxnet import KXNET_ARCH
from .usrnet import USRNET_ARCH

__all__ = ["METHODS"]

METHODS = (KXNET_ARCH, BICUBIC_ARCH, DAN_ARCH, DCLS_ARCH, USRNET_ARCH, KENET_ARCH, KENET_USRNET_ARCH)
