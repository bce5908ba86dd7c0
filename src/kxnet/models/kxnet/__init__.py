"""KXNet (Fu et al., ECCV 2022): the method's package and its :class:`~kxnet.models.architecture.Architecture`.

* :mod:`.network` — the network as the release computes it, its config, factory, loss weights
  and how the authors' state dicts are recognised (docs/kxnet.md);
* :mod:`.fast` — its fused inference path (``optimize``);
* :mod:`.reference` — the paper's formulation, for comparison and tests;
* :mod:`.export` — its static-shape graphs (ONNX, OpenVINO) and :mod:`.engine` what OpenVINO
  needs of them;
* :mod:`.loss` — its training objective (Eq. 12).

``KXNET_ARCH`` is the descriptor that the rest of the package reads; :mod:`kxnet.models.methods`
lists it.
"""

from __future__ import annotations

from ..architecture import Architecture, scale_variants
from .engine import KXNetEngine
from .export import ExportableKXNet, NonBlindExportableKXNet, export_graph
from .fast import optimize
from .loss import KXNET_OBJECTIVE, kxnet_loss, stage_weights
from .network import (
    GAMMA_DIVISOR,
    MODES,
    NORMALISER_EPS,
    PROJECTION_EPS,
    RESIDUAL_SCALE,
    KXNet,
    KXNetConfig,
    KXNetLoss,
    KXNetOutput,
    LRRestorer,
    _infer_kxnet_config,
    _is_kxnet_state,
    grow_stages,
    image_step_gradient,
    kernel_step_gradient,
    kxnet,
    with_estimator,
    with_restorer,
)
from .network import _ImageStage, _KernelStage, _ProxNet  # noqa: F401  (tests and scripts import them from here)

__all__ = ["ExportableKXNet", "GAMMA_DIVISOR", "PAPER_TRAINING", "KXNET_ARCH", "KXNetEngine", "MODES", "NORMALISER_EPS",
           "NonBlindExportableKXNet", "PROJECTION_EPS", "RESIDUAL_SCALE", "KXNet", "KXNetConfig", "KXNetLoss",
           "KXNetOutput", "LRRestorer", "export_graph", "grow_stages", "image_step_gradient", "kernel_step_gradient",
           "kxnet", "kxnet_loss", "optimize", "stage_weights", "with_estimator", "with_restorer"]

# Unused in the release's forward, so freshly initialised values are exact (kernel_map0 is the
# initial bank); eta_stage is also why DDP must look for parameters without a gradient.
_UNUSED = frozenset({"kernel_map0", "eta_stage"})
# What every one of the paper's six recipes trains with (the release's configs; docs/training.md):
# the zoo's notes compare shipped weights with it (kxnet.models.zoo.reduced_note).
PAPER_TRAINING = {"stages": 19, "lr_patch": 64, "batch": 12, "iterations": 1_000_000}

KXNET_ARCH = Architecture(
    name="kxnet", model_class=KXNet, config_class=KXNetConfig,
    detect=_is_kxnet_state, infer_config=_infer_kxnet_config, factories=scale_variants(kxnet),
    optional_keys=_UNUSED,
    summary=lambda c: f"{c.stages} stages, {c.kernel_size}×{c.kernel_size} kernels"
                      + (", K⁰ from a KENet" if c.estimator else "")
                      + (", an LR restorer in front" if c.restorer else ""),
    optimize=optimize, export=export_graph, fast_engine=KXNetEngine, objective=KXNET_OBJECTIVE,
    label="KXNet", regional=True, grow=grow_stages, depth="stages", paper_training=PAPER_TRAINING,
    # its convolutions run in half precision, but not a KENet's K⁰ (softmax kept in float32)
    find_unused_parameters=True, half_precision=lambda c: c.estimator is None,
    tiny=lambda scale: {"scale": scale, "setting": 2, "stages": 2},
)
