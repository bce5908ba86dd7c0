"""Gaussian blur kernels exactly as docs/protocol.md ("Kernels") defines them.

Kernels are computed in float64 and cast at the end (float32 by default), which is how the
release made its test kernels and auxiliary banks; the bytes of the benchmark sets depend on it.
Arrays are indexed ``[row, col] = [y, x]`` on the integer grid ``-p//2 … p//2``.
"""

from __future__ import annotations

import math

import torch

Number = float | torch.Tensor


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if size < 1 or size % 2 != 1:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    a = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(a, a, indexing="ij")
    return xx, yy


def _as_batch(v: Number) -> torch.Tensor:
    return torch.as_tensor(v, dtype=torch.float64).reshape(-1, 1, 1)


def _normalise(k: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (k / k.sum(dim=(-2, -1), keepdim=True)).to(dtype)


def isotropic_gaussian(size: int, sigma: Number, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``exp(−(x²+y²)/(2σ²))`` normalised to sum 1; σ in HR pixels.

    ``sigma`` may be a float (→ p×p) or a 1-D tensor of B widths (→ B×p×p).
    """
    xx, yy = _grid(size)
    s = _as_batch(sigma)
    k = _normalise(torch.exp(-(xx ** 2 + yy ** 2) / (2 * s ** 2)), dtype)
    return k if isinstance(sigma, torch.Tensor) and sigma.dim() > 0 else k[0]


def anisotropic_gaussian(size: int, sigma_x: Number, sigma_y: Number, theta: Number,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``exp(−½ [x y] Σ⁻¹ [x y]ᵀ)`` with ``Σ = R(θ) diag(σx², σy²) R(θ)ᵀ``, normalised.

    θ in radians; the σx axis points along ``(cos θ, sin θ)`` with y pointing down, so a
    positive θ turns it clockwise on screen. Scalars give p×p; 1-D tensors give B×p×p.
    """
    xx, yy = _grid(size)
    sx, sy, th = _as_batch(sigma_x), _as_batch(sigma_y), _as_batch(theta)
    c, s = torch.cos(th), torch.sin(th)
    ix, iy = 1.0 / sx ** 2, 1.0 / sy ** 2
    # Σ⁻¹ = R diag(1/σx², 1/σy²) Rᵀ, written out
    a = c * c * ix + s * s * iy
    b = c * s * (ix - iy)
    d = s * s * ix + c * c * iy
    k = _normalise(torch.exp(-0.5 * (a * xx ** 2 + 2 * b * xx * yy + d * yy ** 2)), dtype)
    batched = any(isinstance(v, torch.Tensor) and v.dim() > 0 for v in (sigma_x, sigma_y, theta))
    return k if batched else k[0]


def degrees(theta_deg: float) -> float:
    return theta_deg * math.pi / 180.0
