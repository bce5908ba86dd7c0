"""Model architectures by name (:func:`create_model`) and their weights (:func:`load_model`).

Importing this package registers every method: each module registers its factories and its
:class:`Architecture` when imported, so a new method is one new module listed below.
"""

from .registry import (
    Architecture,
    architecture,
    architecture_of,
    architectures,
    create_model,
    detect_architecture,
    is_model,
    list_models,
    register_architecture,
    register_model,
)
from .output import SROutput
from .kxnet import KXNet, KXNetConfig, KXNetOutput, grow_stages, with_estimator
from .bicubic import Bicubic
from .dan import DAN, DANConfig
from .dcls import DCLS, DCLSConfig
from .usrnet import USRNet, USRNetConfig
from .kenet import KENet, KENetConfig
from .kenet_usrnet import KENetUSRNet, KENetUSRNetConfig
from .loading import ModelLoadError, convert_checkpoint, load_model, resolve_method, resolve_weights, save_model

__all__ = [
    "Architecture",
    "Bicubic",
    "DAN",
    "DANConfig",
    "DCLS",
    "DCLSConfig",
    "KENet",
    "KENetConfig",
    "KENetUSRNet",
    "KENetUSRNetConfig",
    "KXNet",
    "KXNetConfig",
    "KXNetOutput",
    "ModelLoadError",
    "SROutput",
    "USRNet",
    "USRNetConfig",
    "architecture",
    "architecture_of",
    "architectures",
    "convert_checkpoint",
    "create_model",
    "detect_architecture",
    "grow_stages",
    "is_model",
    "list_models",
    "load_model",
    "register_architecture",
    "register_model",
    "resolve_method",
    "resolve_weights",
    "save_model",
    "with_estimator",
]
