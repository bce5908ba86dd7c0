"""Where :mod:`kxnet.models.dcls.fourier` (DCLS's deconvolution and reformulated kernel) used to
be; its names stay importable from here."""

from .dcls.fourier import *  # noqa: F401,F403
from .dcls.fourier import __all__  # noqa: F401
