"""Model architectures by name (:func:`create_model`), their weights (:func:`load_model`) and
the one front door from a user's model argument to a ready model (:func:`resolve`).

Each method is a package (``kxnet/models/<method>/``: its network, its objective, its
:class:`Architecture` descriptor); :mod:`.methods` lists them, and :mod:`.registry` looks them
up. :func:`register_architecture` / :func:`unregister_architecture` add and remove a method from
outside (docs/adding-a-method.md).
"""

from .architecture import Objective
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
    unregister_architecture,
)
from .output import SROutput
from .kxnet import KXNet, KXNetConfig, KXNetLoss, KXNetOutput, grow_stages, with_estimator
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
    "Objective",
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
    "unregister_architecture",
    "with_estimator",
]
