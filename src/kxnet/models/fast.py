"""Where :mod:`kxnet.models.kxnet.fast` (KXNet's fused inference path) used to be; its names
stay importable from here."""

from .kxnet.fast import *  # noqa: F401,F403
from .kxnet.fast import __all__  # noqa: F401
