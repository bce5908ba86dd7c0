"""USRNet (Zhang, Van Gool & Timofte, CVPR 2020): the deep unfolding network for **non-blind**
SR (docs/kenet_usrnet.md), as released in ``cszn/USRNet`` ``models/network_usrnet_v1.py``.

Half-quadratic splitting of ``min_x ½‖y − (x ⊛ k)↓s‖² + λΦ(x)`` unrolled ``n_iter`` times::

    x⁰ = nearest-neighbour ×s of y;  (α_i, β_i) = HyPaNet(σ, s)
    z_i = argmin_z ‖y − (z ⊛ k)↓s‖² + α_i‖z − x_{i−1}‖²    (closed form, :mod:`kxnet.physics.fft`)
    x_i = ResUNet([z_i, β_i])                              (one prior shared by all iterations)

Module names follow the release (``p.*`` the ResUNet, ``h.*`` HyPaNet; the release's ``d`` has
no parameters), so ``torch.save(model.state_dict())`` is the release's layout and the authors'
``.pth`` files load without renaming. A pure architecture: the loss is in
:mod:`kxnet.models.usrnet.loss`.

**Kernel orientation.** ``forward`` takes the kernel as everything in this project does: in
the orientation of :func:`kxnet.physics.blur` (cross-correlation, centre ``(p−1)/2``). The
data step solves for a *true* convolution, so the kernel is flipped on the way in
(:func:`~kxnet.physics.psf_of_kernel`); the release's own kernels (applied by
``ndimage.convolve``) are therefore passed here flipped. Boundaries stay a mismatch: the data
step assumes circular ones, the project's images are reflect-padded — the same for the blind and
the oracle rows (docs/protocol.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...physics import psf_of_kernel, sfold_solve, sfold_system
from ..output import SROutput
from ..config import MethodConfig

__all__ = ["USRNetConfig", "USRNet", "ResUNet", "HyPaNet", "estimate_noise_level", "usrnet", "usrnet_tiny",
           "TINY_USRNET"]

TINY_USRNET = {"n_iter": 6, "nc": (16, 32, 64, 64), "h_nc": 32}  # KAIR's train_usrnet.json
INIT_GAIN = 0.2  # KAIR trains USRNet from orthogonal weights of gain 0.2, biases 0


@dataclass
class USRNetConfig(MethodConfig):
    """Everything that shapes a USRNet; JSON-serialisable via :meth:`to_dict`.

    Defaults are the released model (8 iterations, ResUNet widths 64/128/256/512, 2 blocks per
    level, HyPaNet width 64). USRNet is scale-agnostic (one set of weights serves every s, which
    only enters HyPaNet and the data step): ``scale`` is the one ``forward`` runs at.
    ``kernel_size`` is the setting's p; the network takes any odd size. ``noise_level`` is σ in
    8-bit units used when ``forward`` is given none; None estimates it from the LR image
    (:func:`estimate_noise_level`).
    """

    n_iter: int = 8
    nc: tuple[int, int, int, int] = (64, 128, 256, 512)
    nb: int = 2
    h_nc: int = 64
    noise_level: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.nc = tuple(self.nc)
        if len(self.nc) != 4 or not all(isinstance(c, int) and c > 0 for c in self.nc):
            raise ValueError(f"nc must be 4 positive integers (the ResUNet's level widths), got {self.nc!r}")
        self.require_positive("n_iter", "nb", "h_nc")
        if self.noise_level is not None and not self.noise_level >= 0:
            raise ValueError(f"noise_level must be ≥ 0 (8-bit units) or null, got {self.noise_level!r}")



# ------------------------------------------------------------------------ the modules

def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class _ResBlock(nn.Module):
    """``x + conv(ReLU(conv(x)))``, bias-free (the release's ``ResBlock(mode='CRC')``)."""

    def __init__(self, nc: int):
        super().__init__()
        self.res = nn.Sequential(_conv3(nc, nc), nn.ReLU(), _conv3(nc, nc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res(x)


class ResUNet(nn.Module):
    """The prior: a 4-level U-Net of residual blocks, stride-2 2×2 convolutions down,
    transposed ones up, **additive** skips, no biases. Inputs are replicate-padded at the
    bottom/right to a multiple of 8 (three halvings) and the output cropped back."""

    def __init__(self, nc: tuple[int, ...], nb: int, in_nc: int = 4, out_nc: int = 3):
        super().__init__()
        blocks = lambda c: [_ResBlock(c) for _ in range(nb)]
        down = lambda a, b: nn.Conv2d(a, b, 2, stride=2, bias=False)
        up = lambda a, b: nn.ConvTranspose2d(a, b, 2, stride=2, bias=False)
        self.m_head = _conv3(in_nc, nc[0])
        self.m_down1 = nn.Sequential(*blocks(nc[0]), down(nc[0], nc[1]))
        self.m_down2 = nn.Sequential(*blocks(nc[1]), down(nc[1], nc[2]))
        self.m_down3 = nn.Sequential(*blocks(nc[2]), down(nc[2], nc[3]))
        self.m_body = nn.Sequential(*blocks(nc[3]))
        self.m_up3 = nn.Sequential(up(nc[3], nc[2]), *blocks(nc[2]))
        self.m_up2 = nn.Sequential(up(nc[2], nc[1]), *blocks(nc[1]))
        self.m_up1 = nn.Sequential(up(nc[1], nc[0]), *blocks(nc[0]))
        self.m_tail = _conv3(nc[0], out_nc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate")
        x1 = self.m_head(x)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)
        x = self.m_up2(x + x3)
        x = self.m_up1(x + x2)
        return self.m_tail(x + x1)[..., :h, :w]


class HyPaNet(nn.Module):
    """(σ, s) → the 2·n_iter positive hyper-parameters α_1…α_n, β_1…β_n (1×1 convs, Softplus + 1e-6)."""

    def __init__(self, n_iter: int, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(2, channels, 1), nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                 nn.Conv2d(channels, 2 * n_iter, 1), nn.Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + 1e-6


def estimate_noise_level(y: torch.Tensor) -> torch.Tensor:
    """σ of additive white noise in each image of ``y`` (B×C×h×w, [0, 1]), in [0, 1] units.

    Immerkær's (1996) mask ``[[1,−2,1],[−2,4,−2],[1,−2,1]]`` cancels locally planar image
    content and turns white noise of std σ into noise of std 6σ; the median absolute response
    (÷ 0.6745 for a Gaussian) makes it robust to the edges it does not cancel. Texture still
    biases it upwards: measured on Set5+Set14 setting-2 ×4 LR images (docs/kenet_usrnet.md)
    it reads 2.8 / 6.6 / 15.5 for true 0 / 5 / 15 (8-bit units).
    """
    b, c, h, w = y.shape
    if h < 3 or w < 3:
        return y.new_zeros(b)
    mask = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], dtype=y.dtype, device=y.device)
    r = F.conv2d(y.detach().reshape(b * c, 1, h, w), mask.reshape(1, 1, 3, 3))
    return r.reshape(b, -1).abs().median(dim=1).values / (0.6745 * 6.0)


class USRNet(nn.Module):
    """USRNet; ``forward(y, kernel, sigma)`` → :class:`~kxnet.models.SROutput` (non-blind)."""

    def __init__(self, config: USRNetConfig):
        super().__init__()
        self.config = c = config
        self.p = ResUNet(c.nc, c.nb)
        self.h = HyPaNet(c.n_iter, c.h_nc)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.orthogonal_(m.weight, INIT_GAIN)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, y: torch.Tensor, kernel: torch.Tensor | None = None,
                sigma: float | torch.Tensor | None = None) -> SROutput:
        """Super-resolve ``y`` (B×3×h×w RGB in [0, 1]) by ``config.scale`` with ``kernel``.

        ``kernel``: B×p×p, B×1×p×p or one p×p for the batch, odd p ≤ the HR size, in the
        project's orientation (see the module docstring). ``sigma``: the noise level in [0, 1]
        units — a number, or one per image; None uses ``config.noise_level`` or an estimate.
        ``stage_images`` are x_1…x_n (``sr`` = x_n); ``kernel``, ``condition`` and every one of
        ``stage_kernels`` the kernel used (each iteration uses it; per-stage pictures need one per stage).
        """
        if kernel is None:
            raise ValueError("USRNet is non-blind: it needs the blur kernel, model(y, kernel=k); "
                             "kenet_usrnet estimates one for blind SR")
        if y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(f"expected a B×3×h×w image batch, got shape {tuple(y.shape)}")
        c, s = self.config, self.config.scale
        k = self._as_kernels(kernel, y)
        sig = self._as_sigma(sigma, y)
        system = sfold_system(y, psf_of_kernel(k)[:, None], s)
        ab = self.h(torch.cat([sig, torch.full_like(sig, float(s))], dim=1))
        x = F.interpolate(y, scale_factor=s, mode="nearest")
        stages = []
        for i in range(c.n_iter):
            z = sfold_solve(system, x, ab[:, i:i + 1]).to(x.dtype)
            beta = ab[:, c.n_iter + i:c.n_iter + i + 1].expand(-1, -1, *z.shape[-2:]).to(z.dtype)
            x = self.p(torch.cat([z, beta], dim=1))
            stages.append(x)
        return SROutput(x, k, stages, [k] * c.n_iter, condition=k)

    def _as_kernels(self, kernel: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = torch.as_tensor(kernel).to(device=y.device, dtype=y.dtype)
        if k.dim() == 4 and k.shape[1] == 1:
            k = k[:, 0]
        if k.dim() == 2:
            k = k[None]
        b, p = y.shape[0], k.shape[-1]
        if k.dim() != 3 or k.shape[-2] != p or p % 2 != 1:
            raise ValueError(f"expected odd p×p kernels (B×p×p, B×1×p×p or p×p), got shape {tuple(k.shape)}")
        if k.shape[0] not in (1, b):
            raise ValueError(f"{k.shape[0]} kernels for a batch of {b} images")
        if p > self.config.scale * min(y.shape[-2:]):
            raise ValueError(f"a {p}×{p} kernel is larger than the {self.config.scale * y.shape[-2]}×"
                             f"{self.config.scale * y.shape[-1]} HR image")
        return k.expand(b, -1, -1)

    def noise_levels(self, y: torch.Tensor, sigma=None) -> torch.Tensor:
        """The σ (B, [0, 1] units) ``forward(y, kernel, sigma)`` uses: the one given, else
        ``config.noise_level``, else :func:`estimate_noise_level` of ``y``."""
        return self._as_sigma(sigma, y).reshape(-1)

    def _as_sigma(self, sigma, y: torch.Tensor) -> torch.Tensor:
        b = y.shape[0]
        if sigma is None:
            if self.config.noise_level is not None:
                sigma = self.config.noise_level / 255.0
            else:
                sigma = estimate_noise_level(y)
        t = torch.as_tensor(sigma).to(device=y.device, dtype=y.dtype).reshape(-1)
        if t.numel() not in (1, b):
            raise ValueError(f"{t.numel()} noise levels for a batch of {b} images")
        return t.expand(b).reshape(b, 1, 1, 1)


def usrnet(scale: int = 4, setting: int = 2, **config) -> USRNet:
    """USRNet, the released size by default; ``config`` takes the other :class:`USRNetConfig` fields."""
    return USRNet(USRNetConfig(scale=scale, setting=setting, **config))


def usrnet_tiny(scale: int = 4, setting: int = 2, **config) -> USRNet:
    """USRNet-tiny (KAIR's ``train_usrnet.json``): 6 iterations, widths 16/32/64/64, HyPaNet 32."""
    return usrnet(scale=scale, setting=setting, **{**TINY_USRNET, **config})


# ------------------------------------------------------------------ the authors' layout

def _is_usrnet_state(state: dict) -> bool:
    return "p.m_head.weight" in state and "h.mlp.0.weight" in state


def _infer_usrnet_config(state: dict) -> USRNetConfig:
    """Widths from the head and the down-convolutions, nb from the block keys, n_iter and h_nc
    from HyPaNet. Not stored: scale and setting (USRNet is scale-agnostic) — ×4 setting 2 is assumed."""
    needed = ["p.m_head.weight", "p.m_tail.weight", "h.mlp.0.weight", "h.mlp.4.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"not a complete USRNet state dict (missing {', '.join(missing)})")
    head, tail = state["p.m_head.weight"], state["p.m_tail.weight"]
    if head.dim() != 4 or head.shape[1] != 4 or tail.shape[0] != 3 or state["h.mlp.0.weight"].shape[1] != 2:
        raise ValueError(f"unsupported USRNet channels (head {tuple(head.shape)}, tail {tuple(tail.shape)}): "
                         "expected RGB + β in, RGB out, (σ, s) into HyPaNet")
    pattern = re.compile(r"p\.m_down1\.(\d+)\.res\.0\.weight")
    nb = 1 + max((int(m.group(1)) for k in state if (m := pattern.fullmatch(k))), default=-1)
    if nb < 1:
        raise ValueError("no residual blocks found under p.m_down1")
    widths = [head.shape[0]]
    for level in (1, 2, 3):
        key = f"p.m_down{level}.{nb}.weight"
        if key not in state:
            raise ValueError(f"missing {key} (the level-{level} down-convolution)")
        widths.append(state[key].shape[0])
    n2 = state["h.mlp.4.weight"].shape[0]
    if n2 % 2:
        raise ValueError(f"HyPaNet has {n2} outputs, not 2·n_iter")
    return USRNetConfig(n_iter=n2 // 2, nc=tuple(int(w) for w in widths), nb=nb,
                        h_nc=state["h.mlp.0.weight"].shape[0])


@dataclass
class USRNetLoss:
    """KAIR's loss: ``image_weight_last``·L1(x_n, X) on the last iteration (docs/kenet_usrnet.md)."""

    image_weight_last: float = 1.0
