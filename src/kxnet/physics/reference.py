"""The paper's formulation, written straight from it: kept for comparison and tests only.

The paper computes the kernel gradient through the patch matrix ``U(X)`` (p²·C × h·w): every
p×p patch that the blur multiplies with ``K`` laid out as a column. That is simple and
obviously right, and costs p² copies of the image in memory — the fast path in
:mod:`kxnet.physics.operators` avoids it. The network's other operators are given here the
way the release computes them (one grouped convolution with ``groups = B·C``, whatever the
batch). Only :mod:`kxnet.models.reference` (the comparison model), tests and benchmarks
import this module.
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


# ------------------------------------------------------------------------------------------
# The network's operators as the release computes them: one grouped convolution with
# groups = B·C for every batch (no batch-1 fast path), the normaliser rebuilt from an
# all-ones map each time, and the kernel gradient through the explicit patch matrix.

def _per_channel_weight(kernel: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """(B·C)×1×p×p: kernel b repeated for each of the C channels of image b (release layout)."""
    return kernel.to(dtype).repeat_interleave(channels, dim=0).unsqueeze(1)


def blur_downsample_grouped(x: torch.Tensor, kernel: torch.Tensor, scale: int) -> torch.Tensor:
    """``D_K(X)``: reflect pad, then ``conv2d(groups=B·C, stride=s)`` on a 1×(B·C)×H×W view."""
    b, c = x.shape[:2]
    r = kernel.shape[-1] // 2
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    out = F.conv2d(xp.reshape(1, b * c, xp.shape[-2], xp.shape[-1]), _per_channel_weight(kernel, c, x.dtype),
                   stride=scale, groups=b * c)
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


def _transposed_grouped(e: torch.Tensor, kernel: torch.Tensor, scale: int, padding: int,
                        out_hw: tuple[int, int]) -> torch.Tensor:
    b, c, h, w = e.shape
    p = kernel.shape[-1]
    op_h = out_hw[0] - ((h - 1) * scale - 2 * padding + p)
    op_w = out_hw[1] - ((w - 1) * scale - 2 * padding + p)
    out = F.conv_transpose2d(e.reshape(1, b * c, h, w), _per_channel_weight(kernel, c, e.dtype), stride=scale,
                             padding=padding, output_padding=(op_h, op_w), groups=b * c)
    return out.reshape(b, c, out_hw[0], out_hw[1])


def back_project_grouped(e: torch.Tensor, kernel: torch.Tensor, scale: int, hr_hw: tuple[int, int]) -> torch.Tensor:
    """The release's ``Dᵀ_K(E)``: ``conv_transpose2d(groups=B·C)``, zero padding ``p//2``."""
    return _transposed_grouped(e, kernel, scale, kernel.shape[-1] // 2, hr_hw)


def _reflect_pad_adjoint_by_autograd(z: torch.Tensor, r: int) -> torch.Tensor:
    """Adjoint of reflect padding, straight from its definition: the VJP of ``F.pad(reflect)``."""
    b, c, hp, wp = z.shape
    with torch.enable_grad():
        x = z.new_zeros(b, c, hp - 2 * r, wp - 2 * r, requires_grad=True)
        (g,) = torch.autograd.grad(F.pad(x, (r, r, r, r), mode="reflect"), x, z)
    return g


def blur_downsample_adjoint_grouped(e: torch.Tensor, kernel: torch.Tensor, scale: int,
                                    hr_hw: tuple[int, int]) -> torch.Tensor:
    """Exact adjoint of :func:`blur_downsample_grouped` ("exact" mode), grouped form."""
    r = kernel.shape[-1] // 2
    padded = _transposed_grouped(e, kernel, scale, 0, (hr_hw[0] + 2 * r, hr_hw[1] + 2 * r))
    return _reflect_pad_adjoint_by_autograd(padded, r)


REFERENCE_ADJOINTS = {"official": back_project_grouped, "exact": blur_downsample_adjoint_grouped}


def kernel_step_gradient_reference(x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor,
                                   scale: int) -> torch.Tensor:
    """The K-step's data gradient the paper's way: ``U(X)ᵀ vec(D_K X − Y) / (3hw)``."""
    residual = blur_downsample_grouped(x, kernel, scale) - y
    return kernel_gradient_reference(x, residual, scale, kernel.shape[-1]) / residual[0].numel()


def image_step_gradient_reference(x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor, scale: int,
                                  mode: str = "official") -> torch.Tensor:
    """``Ĝ = Dᵀ(D_K X − Y) / (Dᵀ1 + 1e−10)`` with grouped convolutions, as the release."""
    adjoint = REFERENCE_ADJOINTS[mode]
    hr_hw = (x.shape[-2], x.shape[-1])
    e = blur_downsample_grouped(x, kernel, scale) - y
    return adjoint(e, kernel, scale, hr_hw) / (adjoint(torch.ones_like(e), kernel, scale, hr_hw) + 1e-10)
