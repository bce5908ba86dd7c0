"""KXNet's :class:`~kxnet.models.registry.Architecture`: what the registry, the loader, training
and the engines know of the method — its network and how its state dicts are recognised
(:mod:`kxnet.models.kxnet`), its fused inference path (:mod:`kxnet.models.fast`), its objective.

A module of its own because the descriptor needs the fused path, which is built on the
network's classes: registered in ``kxnet.py``, it made ``kxnet.py`` and ``fast.py`` import
each other. :mod:`kxnet.models` imports it right after the network, so KXNet stays the first
architecture registered.
"""

from __future__ import annotations

from .fast import optimize
from .kxnet import KXNet, KXNetConfig, KXNetLoss, _infer_kxnet_config, _is_kxnet_state
from .registry import Architecture, register_architecture

__all__ = ["KXNET"]

KXNET = register_architecture(Architecture(
    name="kxnet", model_class=KXNet, config_class=KXNetConfig,
    detect=_is_kxnet_state, infer_config=_infer_kxnet_config,
    # unused in forward, so freshly initialised values are exact (kernel_map0 is the initial bank)
    optional_keys=frozenset({"kernel_map0", "eta_stage"}),
    summary=lambda c: f"{c.stages} stages, {c.kernel_size}×{c.kernel_size} kernels"
                      + (", K⁰ from a KENet" if c.estimator else ""),
    optimize=optimize, loss=KXNetLoss, label="KXNet", regional=True, exportable=True,
))
