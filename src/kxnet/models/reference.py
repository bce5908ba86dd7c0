"""Where :mod:`kxnet.models.kxnet.reference` (KXNet computed the paper's way, for comparison and
tests) used to be; its names stay importable from here."""

from .kxnet.reference import *  # noqa: F401,F403
from .kxnet.reference import __all__  # noqa: F401
