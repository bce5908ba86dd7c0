"""KENet (Cao et al.): a feed-forward kernel estimator, k̂ = KENet(y) (docs/kenet_usrnet.md).

There is no public code; this is our reading of the paper (the KENet paper, Sect. 2.2, Eq. 4–6)::

    f₀ = RB(ReLU(Conv(y)));  f_i = RB(ReLU(Conv(MaxPool₂(f_{i−1})))), i = 1, 2, 3
    k̂  = reshape_l×l(Softmax(FC(ReLU(FC(ReLU(FC(AvgPool(f₃))))))))

"All convolutional layers … are of size 3×3 with 64s output channels, where s represents the
s-th Conv operation": the s-th *stage* convolution has 64·s channels, so the stages are 64,
128, 192, 256 wide — our default (4,717,561 parameters at l = 21). Reading "64s" as doubling
(64, 128, 256, 512; 9,846,713) needs "s-th" to mean an exponent the sentence does not write; it
is ``channels=(64, 128, 256, 512)``. Unstated, chosen here: biases in every layer, "same"
padding, 2×2 max-pooling of stride 2 (floor), each residual block ``x + conv(ReLU(conv(x)))`` at
its stage's width, FC widths 1024, 1024, l².

KENet estimates only the kernel, in the project's orientation (it is trained against the
kernels :func:`kxnet.physics.blur` applies). :meth:`KENet.estimate` is the estimator; ``forward``
wraps it in the shared SR contract with the bicubic image as ``sr``, so that training,
validation and ``kxnet eval`` can score the estimate (kernel PSNR) like any other method. The SR
model is the pair :mod:`kxnet.models.kenet_usrnet`. The loss is :mod:`kxnet.models.kenet.loss`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn

from ...physics import bicubic_upsample
from ..output import SROutput
from ..config import MethodConfig

__all__ = ["KENetConfig", "KENet", "kenet", "PAPER_CHANNELS", "DOUBLING_CHANNELS"]

PAPER_CHANNELS = (64, 128, 192, 256)     # 64·s for the s-th convolution (our reading, the default)
DOUBLING_CHANNELS = (64, 128, 256, 512)  # the alternative reading


@dataclass
class KENetConfig(MethodConfig):
    """Everything that shapes a KENet. ``kernel_size`` (the paper's l) is the setting's p by
    default — it must be, to be trained against that setting's kernels."""

    channels: tuple[int, ...] = PAPER_CHANNELS
    fc: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        self.channels = tuple(self.channels)
        if len(self.channels) != 4 or not all(isinstance(c, int) and c > 0 for c in self.channels):
            raise ValueError(f"channels must be 4 positive integers (one per stage), got {self.channels!r}")
        self.require_positive("fc")



class _ResBlock(nn.Module):
    def __init__(self, nc: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nc, nc, 3, padding=1), nn.ReLU(), nn.Conv2d(nc, nc, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Stage(nn.Module):
    """(MaxPool₂ →) Conv 3×3 → ReLU → RB: one f_i of Eq. 4–5."""

    def __init__(self, cin: int, cout: int, pool: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.res = _ResBlock(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(torch.relu(self.conv(self.pool(x))))


class KENet(nn.Module):
    """The estimator; :meth:`estimate` gives B×l×l kernels, ``forward`` the SR contract."""

    MIN_SIDE = 8  # three 2× poolings must leave at least one pixel

    def __init__(self, config: KENetConfig):
        super().__init__()
        self.config = c = config
        widths = (3, *c.channels)
        self.features = nn.ModuleList(_Stage(widths[i], widths[i + 1], pool=i > 0) for i in range(4))
        self.kernel_head = nn.Sequential(nn.Linear(c.channels[-1], c.fc), nn.ReLU(), nn.Linear(c.fc, c.fc), nn.ReLU(),
                                         nn.Linear(c.fc, c.kernel_size ** 2))

    @property
    def scale(self) -> int:
        return self.config.scale

    def check_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` for an LR size the KENet cannot take (either side below ``MIN_SIDE``)."""
        if min(h, w) < self.MIN_SIDE:
            raise ValueError(f"KENet needs LR images of at least {self.MIN_SIDE}×{self.MIN_SIDE}, got {h}×{w}")

    def estimate(self, y: torch.Tensor) -> torch.Tensor:
        """B×3×h×w LR images (h, w ≥ 8) → B×l×l kernels (non-negative, each summing to 1)."""
        if y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(f"expected a B×3×h×w image batch, got shape {tuple(y.shape)}")
        self.check_size(*y.shape[-2:])
        f = y
        for stage in self.features:
            f = stage(f)
        logits = self.kernel_head(f.mean(dim=(-2, -1)))
        l = self.config.kernel_size
        # at least float32 (autocast): 441 taps of ~1/441 each need the mantissa, and so does the loss
        wide = torch.promote_types(logits.dtype, torch.float32)
        return torch.softmax(logits.to(wide), dim=-1).reshape(-1, l, l)

    def forward(self, y: torch.Tensor, kernel: torch.Tensor | None = None) -> SROutput:
        """``sr`` = bicubic ×s of ``y`` (KENet restores nothing), ``kernel`` = the estimate (or
        the given kernel, which makes the oracle row the bicubic one)."""
        k = self.estimate(y) if kernel is None else torch.as_tensor(kernel).to(y).expand(y.shape[0], -1, -1)
        return SROutput(bicubic_upsample(y, self.config.scale), k, [], [], condition=k)


def kenet(scale: int = 4, setting: int = 2, **config) -> KENet:
    """KENet (our reading of the paper); ``config`` takes the other :class:`KENetConfig` fields."""
    return KENet(KENetConfig(scale=scale, setting=setting, **config))


# ------------------------------------------------------------------ recognising files

def _is_kenet_state(state: dict) -> bool:
    return "features.0.conv.weight" in state and "kernel_head.4.weight" in state


def infer_kenet_config(state: dict, prefix: str = "") -> KENetConfig:
    """Widths from the stage convolutions, l from the last layer (l² outputs). Not stored: the
    scale and setting; l decides them where it can (11 ⇒ ×2 and 15 ⇒ ×3 setting 2), else ×4
    setting 2 is assumed (21 is setting 1's size at every scale)."""
    keys = [f"{prefix}features.{i}.conv.weight" for i in range(4)] + [f"{prefix}kernel_head.{i}.weight"
                                                                      for i in (0, 4)]
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"not a complete KENet state dict (missing {', '.join(missing)})")
    extra = [k for k in state if (m := re.match(re.escape(prefix) + r"features\.(\d+)\.", k)) and int(m.group(1)) > 3]
    if extra:
        raise ValueError(f"KENet has 4 stages; found {extra[0]}")
    channels = tuple(int(state[keys[i]].shape[0]) for i in range(4))
    taps = state[keys[5]].shape[0]
    l = math.isqrt(taps)
    if l * l != taps or l % 2 != 1:
        raise ValueError(f"the last layer has {taps} outputs, not the taps of an odd l×l kernel")
    scale = {11: 2, 15: 3}.get(l, 4)
    return KENetConfig(scale=scale, setting=2, kernel_size=l, channels=channels,
                       fc=int(state[keys[4]].shape[0]))


@dataclass
class KENetLoss:
    """The adaptive attention loss (docs/kenet_usrnet.md): thresholds λ₁, λ₂ as fractions of
    the true kernel's peak, weights ρ₀ (all taps), ρ₁ (> λ₁·peak), ρ₂ (> λ₂·peak)."""

    att_lambda: tuple[float, float] = (0.01, 0.1)
    att_rho: tuple[float, float, float] = (0.01, 0.1, 1.0)
