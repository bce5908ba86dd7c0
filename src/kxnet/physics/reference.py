"""The paper's formulation, written straight from it: kept for comparison and tests only.

The paper computes the kernel gradient through the patch matrix ``U(X)`` (p²·C × h·w): every
p×p patch that the blur multiplies with ``K`` laid out as a column. That is simple and
obviously right, and costs p² copies of the image in memory — the fast path in
:mod:`kxnet.physics.operators` avoids it. Nothing outside tests and benchmarks imports this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_matrix(x: torch.Tensor, kernel_size: int, scale: int) -> torch.Tensor:
    """``U(X)``: B × (C·p²) × (h·w), the reflect-padded p×p patches at stride ``s``."""
    r = kernel_size // 2
    return F.unfold(F.pad(x, (r, r, r, r), mode="reflect"), kernel_size, stride=scale)


def blur_downsample_reference(x: torch.Tensor, kernel: torch.Tensor, scale: int) -> torch.Tensor:
    """A(X;K) as ``U(X)ᵀ vec(K)``, per channel."""
    b, c, hh, ww = x.shape
    p = kernel.shape[-1]
    h, w = -(-hh // scale), -(-ww // scale)
    patches = patch_matrix(x, p, scale).reshape(b, c, p * p, h * w)
    out = torch.einsum("bcnl,bn->bcl", patches, kernel.reshape(b, p * p).to(x.dtype))
    return out.reshape(b, c, h, w)


def kernel_gradient_reference(x: torch.Tensor, residual: torch.Tensor, scale: int,
                              kernel_size: int) -> torch.Tensor:
    """∇_K ½‖A(X;K) − Y‖² = Σ_c U_c(X) · vec(R_c), through the patch matrix."""
    b, c = x.shape[:2]
    p = kernel_size
    patches = patch_matrix(x, p, scale).reshape(b, c, p * p, -1)
    grad = torch.einsum("bcnl,bcl->bn", patches, residual.reshape(b, c, -1).to(x.dtype))
    return grad.reshape(b, p, p)
