"""KENet + USRNet: the paper's blind pipeline (docs/kenet_usrnet.md) as one SR model.

``forward(y)``: k̂ = KENet(y), then USRNet(y, k̂, σ̂) — one pass each, no test-time loop.
``forward(y, kernel=k)``: USRNet with the given kernel (the paper's "GT+USRNet" oracle row, and
how tiled inference shares one estimate: ``condition`` is k̂).

σ: KENet estimates no noise. The pair gives USRNet the ``usrnet.noise_level`` of its config (8-bit
units) if set, else :func:`~kxnet.models.usrnet.estimate_noise_level` of each LR image (the
default; a fixed σ would be wrong for one of the setting-2 test levels 0, 5, 15 whatever it
is). The oracle row of evaluation passes the true σ (``takes_noise_level``).

The two are trained separately, as in the paper (KENet with L_att against the true kernel,
USRNet non-blind with the true kernel and σ); :func:`combine` joins two trained models, and the
state dict is theirs under the prefixes ``kenet.`` and ``usrnet.``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..architecture import Architecture, scale_variants
from ..config import MethodConfig
from ..kenet.network import KENet, KENetConfig, infer_kenet_config
from ..output import SROutput
from ..usrnet.network import USRNet, USRNetConfig, _infer_usrnet_config

__all__ = ["KENET_USRNET_ARCH", "KENetUSRNetConfig", "KENetUSRNet", "combine", "kenet_usrnet"]

_SHARED = ("scale", "setting", "kernel_size")


@dataclass
class KENetUSRNetConfig(MethodConfig):
    """Shared ``scale``/``setting``/``kernel_size``, and the other fields of each part:
    ``kenet`` (:class:`KENetConfig`: channels, fc) and ``usrnet`` (:class:`USRNetConfig`:
    n_iter, nc, nb, h_nc, noise_level). Defaults: the paper's KENet and the released USRNet."""

    kenet: dict = field(default_factory=dict)
    usrnet: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("kenet", "usrnet"):
            part = getattr(self, name)
            if not isinstance(part, dict) or set(part) & set(_SHARED):
                raise ValueError(f"{name} must be a mapping of its own fields (scale, setting and kernel_size "
                                 f"are shared), got {part!r}")
        # resolve both parts now (their own checks run) and keep their full field values
        self.kenet = {k: v for k, v in self.kenet_config().to_dict().items() if k not in _SHARED}
        self.usrnet = {k: v for k, v in self.usrnet_config().to_dict().items() if k not in _SHARED}

    def _shared(self) -> dict:
        return {k: getattr(self, k) for k in _SHARED}

    def kenet_config(self) -> KENetConfig:
        return KENetConfig(**self._shared(), **self.kenet)

    def usrnet_config(self) -> USRNetConfig:
        return USRNetConfig(**self._shared(), **self.usrnet)

    def to_dict(self) -> dict:
        return {**self._shared(), "kenet": dict(self.kenet), "usrnet": dict(self.usrnet)}


class KENetUSRNet(nn.Module):
    """Blind SR: KENet's kernel estimate fed to USRNet (see the module docstring)."""

    def __init__(self, config: KENetUSRNetConfig):
        super().__init__()
        self.config = config
        self.kenet = KENet(config.kenet_config())
        self.usrnet = USRNet(config.usrnet_config())

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, y: torch.Tensor, kernel=None, sigma: float | torch.Tensor | None = None) -> SROutput:
        """Blind with ``kernel=None``: KENet's estimate, and σ as USRNet resolves it (given,
        configured or estimated from ``y``). Else USRNet with ``kernel`` (project orientation).

        ``condition`` is ``(kernel, σ)`` — the whole estimate: ``forward(crop, kernel=condition)``
        restores another crop of the photo exactly as this one (tiled inference), instead of
        re-estimating σ on every tile.
        """
        if isinstance(kernel, tuple):
            kernel, sigma = kernel
        if kernel is None:
            kernel = self.kenet.estimate(y)
        sigma = self.usrnet.noise_levels(y, sigma)
        out = self.usrnet(y, kernel, sigma)
        return out._replace(condition=(out.kernel, sigma))


def _pair_config(kc: KENetConfig, uc: USRNetConfig) -> KENetUSRNetConfig:
    """The pair's config from its parts' (shared fields from KENet's)."""
    own = lambda c: {k: v for k, v in c.to_dict().items() if k not in _SHARED}
    return KENetUSRNetConfig(scale=kc.scale, setting=kc.setting, kernel_size=kc.kernel_size,
                             kenet=own(kc), usrnet=own(uc))


def combine(kenet: KENet, usrnet: USRNet) -> KENetUSRNet:
    """The pair of two separately trained models (same scale and setting; the pair's kernel
    size is KENet's, USRNet takes any)."""
    kc, uc = kenet.config, usrnet.config
    if (kc.scale, kc.setting) != (uc.scale, uc.setting):
        raise ValueError(f"KENet is ×{kc.scale} setting {kc.setting}, USRNet ×{uc.scale} setting {uc.setting}")
    pair = KENetUSRNet(_pair_config(kc, uc))
    pair.kenet.load_state_dict(kenet.state_dict())
    pair.usrnet.load_state_dict(usrnet.state_dict())
    return pair.to(next(kenet.parameters()).device)


def kenet_usrnet(scale: int = 4, setting: int = 2, kenet: dict | None = None, usrnet: dict | None = None,
                 **config) -> KENetUSRNet:
    """The pair; ``kenet`` / ``usrnet`` hold the parts' own fields (e.g. ``usrnet=TINY_USRNET``)."""
    return KENetUSRNet(KENetUSRNetConfig(scale=scale, setting=setting, kenet=dict(kenet or {}),
                                         usrnet=dict(usrnet or {}), **config))


# ------------------------------------------------------------------ recognising files

def _is_pair_state(state: dict) -> bool:
    return "kenet.kernel_head.4.weight" in state and "usrnet.p.m_head.weight" in state


def _infer_pair_config(state: dict) -> KENetUSRNetConfig:
    """Each part's shapes as for the part alone; scale and setting from KENet's l (×4 setting 2
    when l = 21)."""
    kc = infer_kenet_config(state, prefix="kenet.")
    uc = _infer_usrnet_config({k[len("usrnet."):]: v for k, v in state.items() if k.startswith("usrnet.")})
    return _pair_config(kc, uc)


KENET_USRNET_ARCH = Architecture(
    name="kenet_usrnet", model_class=KENetUSRNet, config_class=KENetUSRNetConfig,
    detect=_is_pair_state, infer_config=_infer_pair_config, factories=scale_variants(kenet_usrnet),
    summary=lambda c: f"KENet {'/'.join(map(str, c.kenet['channels']))} + USRNet {c.usrnet['n_iter']} iterations, "
                      f"{c.kernel_size}×{c.kernel_size} kernels",
    detect_priority=10,   # its state holds a KENet's and a USRNet's keys: recognise the pair first
    noise_input=True, label="KENet+USRNet",   # trained as two models (no objective of its own)
    tiny=lambda scale: {"scale": scale, "setting": 2, "kenet": {"channels": [8, 8, 8, 8], "fc": 16},
                        "usrnet": {"n_iter": 2, "nc": [8, 8, 8, 8], "nb": 1, "h_nc": 8}},
)
