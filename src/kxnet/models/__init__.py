"""Model architectures by name (:func:`create_model`), their weights (:func:`load_model`) and
the one front door from a user's model argument to a ready model (:func:`resolve`).

Importing this package registers every method: each module registers its factories and its
:class:`Architecture` (what the method is and what it can do) when imported, so a new method
is one new module listed below.
"""

from .registry import (
    Architecture,
    architecture,
    architecture_of,
    architectures,
    create_model,
    detect_architecture,
    factory_architecture,
    is_model,
    list_models,
    register_architecture,
    register_model,
)
from .output import SROutput
from .kxnet import KXNet, KXNetConfig, KXNetLoss, KXNetOutput, grow_stages, with_estimator
from . import kxnet_arch  # noqa: F401  (KXNet's descriptor: beside the network and its fused path)
from .bicubic import Bicubic, BicubicConfig
from .dan import DAN, DANConfig, DANLoss
from .dcls import DCLS, DCLSConfig, DCLSLoss
from .usrnet import USRNet, USRNetConfig, USRNetLoss
from .kenet import KENet, KENetConfig, KENetLoss
from .kenet_usrnet import KENetUSRNet, KENetUSRNetConfig
from .loading import ModelLoadError, convert_checkpoint, load_model, load_weights_into, resolve_weights, save_model
from .resolve import ResolvedModel, ScaleMismatchError, resolve

__all__ = [
    "Architecture",
    "Bicubic",
    "BicubicConfig",
    "DAN",
    "DANConfig",
    "DANLoss",
    "DCLS",
    "DCLSConfig",
    "DCLSLoss",
    "KENet",
    "KENetConfig",
    "KENetLoss",
    "KENetUSRNet",
    "KENetUSRNetConfig",
    "KXNet",
    "KXNetConfig",
    "KXNetLoss",
    "KXNetOutput",
    "ModelLoadError",
    "ResolvedModel",
    "SROutput",
    "ScaleMismatchError",
    "USRNet",
    "USRNetConfig",
    "USRNetLoss",
    "architecture",
    "architecture_of",
    "architectures",
    "convert_checkpoint",
    "create_model",
    "detect_architecture",
    "factory_architecture",
    "grow_stages",
    "is_model",
    "list_models",
    "load_model",
    "load_weights_into",
    "register_architecture",
    "register_model",
    "resolve",
    "resolve_weights",
    "save_model",
    "with_estimator",
]
