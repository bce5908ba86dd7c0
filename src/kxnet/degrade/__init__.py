"""Synthesising LR observations from HR images (docs/protocol.md, "Degradation"): the one place that does it.

Test sets (``kxnet synth``), training batches and tests all call :func:`degrade`.
"""

from __future__ import annotations

import torch

from ..physics import blur_downsample

__all__ = ["modcrop", "quantise", "degrade"]


def modcrop(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop to a multiple of ``scale``, keeping the top-left corner (docs/protocol.md, "Test sets")."""
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8 bits (round half to even, as NumPy and PNG writing do)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def degrade(hr: torch.Tensor, kernel: torch.Tensor, scale: int, noise_sigma: float | torch.Tensor = 0.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """``Y = quantise((modcrop(X) ⊗ K)↓s + N)``.

    ``hr`` is B×C×H×W (or C×H×W) in [0, 1]; ``kernel`` is B×p×p (or p×p, shared);
    ``noise_sigma`` is in 8-bit units, a float or one value per image; the noise is i.i.d. per
    pixel and channel, drawn from ``generator`` (which must live on ``hr``'s device). The blur
    runs in float32 like the release's; the result is float32 on the 8-bit grid.
    """
    squeeze = hr.dim() == 3
    if squeeze:
        hr = hr.unsqueeze(0)
    b = hr.shape[0]
    if kernel.dim() == 2:
        kernel = kernel.unsqueeze(0).expand(b, -1, -1)
    hr = modcrop(hr, scale).to(torch.float32)
    lr = blur_downsample(hr, kernel.to(device=hr.device, dtype=torch.float32), scale)
    sigma = torch.as_tensor(noise_sigma, dtype=torch.float32, device=hr.device).reshape(-1)
    if bool((sigma < 0).any()):
        raise ValueError(f"noise level must be ≥ 0, got {noise_sigma}")
    if bool((sigma > 0).any()):
        noise = torch.randn(lr.shape, generator=generator, dtype=torch.float32, device=hr.device)
        lr = lr + noise * (sigma.reshape(-1, 1, 1, 1) / 255.0)
    lr = quantise(lr)
    return lr[0] if squeeze else lr
