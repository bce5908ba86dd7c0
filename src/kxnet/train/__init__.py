"""Training: typed recipes, on-the-fly degraded batches, Eq. 12 loss, resumable checkpoints, DDP.

Knows losses and loops for any registered model with the shared output contract (each
architecture's objective is on its descriptor, in its package under :mod:`kxnet.models`;
:mod:`.loss` finds it); the networks themselves stay pure ``nn.Module``s.
"""

from .checkpoint import export_weights, latest_checkpoint, load_state
from .config import (
    CheckpointConfig,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    TrainConfig,
    ValConfig,
    apply_overrides,
    build_model,
    config_from_dict,
    load_config,
    save_config,
)
from .data import HRImagePool, StepBatchSampler, TrainingSamples, build_loader, sample_seed
from .ema import ModelEMA
from ..models.dan.loss import dan_loss
from ..models.dcls.loss import dcls_loss
from ..models.kenet.loss import attention_loss
from ..models.usrnet.loss import usrnet_loss
from .loss import kxnet_loss, stage_weights
from .optim import build_optimizer, lr_factor
from .trainer import Trainer, read_metrics, train

__all__ = [
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "HRImagePool",
    "ModelConfig",
    "ModelEMA",
    "StepBatchSampler",
    "TrainConfig",
    "Trainer",
    "TrainingSamples",
    "ValConfig",
    "apply_overrides",
    "attention_loss",
    "build_loader",
    "build_model",
    "build_optimizer",
    "config_from_dict",
    "dan_loss",
    "dcls_loss",
    "export_weights",
    "kxnet_loss",
    "latest_checkpoint",
    "load_config",
    "load_state",
    "read_metrics",
    "lr_factor",
    "sample_seed",
    "save_config",
    "stage_weights",
    "train",
    "usrnet_loss",
]
