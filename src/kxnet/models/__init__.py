"""Model architectures by name (:func:`create_model`) and their weights (:func:`load_model`)."""

from .registry import create_model, is_model, list_models, register_model
from .kxnet import KXNet, KXNetConfig, KXNetOutput
from .bicubic import Bicubic
from .loading import ModelLoadError, convert_checkpoint, load_model, resolve_method, resolve_weights, save_model

__all__ = [
    "Bicubic",
    "KXNet",
    "KXNetConfig",
    "KXNetOutput",
    "ModelLoadError",
    "convert_checkpoint",
    "create_model",
    "is_model",
    "list_models",
    "load_model",
    "register_model",
    "resolve_method",
    "resolve_weights",
    "save_model",
]
