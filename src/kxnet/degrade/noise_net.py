"""The noise a photo had *before* its JPEG compression, from its decoded pixels and the quality.

Compression quantises most of the noise away, so what the pixels show (the patch estimate of
:mod:`.estimate`) is the noise left, far below what the camera or the synthesis put there. No
closed form recovers it from the quantised coefficients of a photo (the flattest blocks carry
signal too: docs/photo.md, "The degradation estimate"), so a small network learns it from the
project's own degradations: seven 3×3 convolutions on the pixels less their 3×3 mean, told the
quality, giving a σ map and a map of where to read it (a softmax over the pixels), so flat
regions, where noise is not confused with texture, can carry the estimate. It was trained on
crops of the training photos only (benchmarks/noise_learned.py) and its accuracy is in
docs/photo.md.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io import file_sha256

__all__ = ["NoiseBeforeJPEG", "WEIGHTS", "noise_before_jpeg"]

WEIGHTS = Path(__file__).with_name("noise_before_jpeg.safetensors")
_SHA256 = "ee2bd44551af7cc8700e7c3585b27d0ddc4cfd760876e1cb0fa6dd958762216f"
_ANALYSIS_SIDE = 160     # LR pixels analysed at most per side (a centre crop): bounds the cost


class NoiseBeforeJPEG(nn.Module):
    """``forward(rgb, quality)`` → σ before compression in 8-bit units, one per image
    (``rgb`` B×3×H×W in [0, 1], ``quality`` B JPEG qualities). ``pooling="mean"`` reads σ as the
    mean of one output map instead (the first design, kept for comparison)."""

    def __init__(self, width: int = 32, depth: int = 7, pooling: str = "weighted"):
        super().__init__()
        if pooling not in ("mean", "weighted"):
            raise ValueError(f"pooling must be mean or weighted, got {pooling!r}")
        self.pooling = pooling
        layers = [nn.Conv2d(4, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 1 if pooling == "mean" else 2, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, rgb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        # the pixels less their 3×3 mean, in units of 10 grey levels: noise of σ 1–15 is a
        # 0.004–0.06 ripple on [0, 1] pixels, too small for a freshly initialised network to find
        smooth = F.avg_pool2d(F.pad(rgb, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        q = (quality.to(rgb.dtype) / 100).view(-1, 1, 1, 1).expand(-1, 1, *rgb.shape[-2:])
        out = self.body(torch.cat([(rgb - smooth) * 25.5, q], 1))
        if self.pooling == "mean":
            return 10 * F.softplus(out.mean(dim=(1, 2, 3)))
        where = torch.softmax(out[:, 1].flatten(1), dim=1)
        return 10 * F.softplus((out[:, 0].flatten(1) * where).sum(dim=1))


@lru_cache(maxsize=1)
def _shipped() -> NoiseBeforeJPEG:
    from safetensors.torch import load_file

    if file_sha256(WEIGHTS) != _SHA256:
        raise RuntimeError(f"{WEIGHTS}: SHA-256 differs from the one kxnet shipped (a damaged install?)")
    net = NoiseBeforeJPEG()
    net.load_state_dict(load_file(WEIGHTS))
    return net.eval()


def noise_before_jpeg(rgb: np.ndarray, quality: int, net: NoiseBeforeJPEG | None = None) -> float:
    """σ (8-bit units) of the noise a photo (H×W×3 float in [0, 1]) had before it was
    compressed at ``quality``, from a centre crop of at most 160×160 pixels; ``net`` another
    network than the shipped one (benchmarks/noise_learned.py scores what it trained)."""
    h, w = rgb.shape[:2]
    top, left = max(0, (h - _ANALYSIS_SIDE) // 2), max(0, (w - _ANALYSIS_SIDE) // 2)
    crop = np.ascontiguousarray(rgb[top:top + _ANALYSIS_SIDE, left:left + _ANALYSIS_SIDE, :3], dtype=np.float32)
    if min(crop.shape[:2]) < 2:
        return 0.0
    with torch.inference_mode():
        x = torch.from_numpy(crop).permute(2, 0, 1)[None]
        return float((net or _shipped())(x, torch.tensor([int(quality)])))
