"""The degradation operator ``Y = (X ⊗ K)↓s`` and everything derived from it.

Every function is batched with one kernel per image: images are ``B×C×H×W`` and kernels
``B×p×p`` (``p`` odd, centred at ``(p-1)/2``). The blur is a per-channel *cross-correlation*
(no kernel flip), as in the release (docs/protocol.md, "Degradation"); the distinction matters for asymmetric
kernels and is pinned by a test. Nothing here hard-codes a device or dtype.

Sizes need not be multiples of ``s``: decimation keeps rows/columns ``0, s, 2s, … < H``, so
the LR size is ``ceil(H/s) × ceil(W/s)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "lr_size",
    "blur",
    "downsample",
    "blur_downsample",
    "blur_downsample_adjoint",
    "back_project",
    "back_project_normaliser",
    "kernel_gradient",
    "bicubic_upsample",
    "reflect_pad_adjoint",
]


def lr_size(hr_size: int, scale: int) -> int:
    """Number of rows (or columns) kept by top-left decimation of ``hr_size`` by ``scale``."""
    return -(-hr_size // scale)


def _check(x: torch.Tensor, kernel: torch.Tensor) -> tuple[int, int]:
    if x.dim() != 4:
        raise ValueError(f"images must be B×C×H×W, got shape {tuple(x.shape)}")
    if kernel.dim() != 3 or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 != 1:
        raise ValueError(f"kernels must be B×p×p with p odd, got shape {tuple(kernel.shape)}")
    if kernel.shape[0] != x.shape[0]:
        raise ValueError(f"one kernel per image: {x.shape[0]} images but {kernel.shape[0]} kernels")
    p = kernel.shape[-1]
    return p, p // 2


def _grouped_correlation(x_padded: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """Correlate every channel of image b with kernel b (valid region, given stride).

    A batch of one is folded into the conv's batch axis (one shared 1-channel filter), which
    is several times faster than the ``groups=B·C`` form the release uses for every batch.
    """
    b, c, hp, wp = x_padded.shape
    p = kernel.shape[-1]
    kernel = kernel.to(x_padded.dtype)
    if b == 1:
        out = F.conv2d(x_padded.reshape(c, 1, hp, wp), kernel.reshape(1, 1, p, p), stride=stride)
        return out.reshape(1, c, out.shape[-2], out.shape[-1])
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)  # (B·C)×1×p×p
    out = F.conv2d(x_padded.reshape(1, b * c, hp, wp), weight, stride=stride, groups=b * c)
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


def _grouped_transposed_correlation(e: torch.Tensor, kernel: torch.Tensor, stride: int,
                                    padding: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """Adjoint of :func:`_grouped_correlation` restricted to an ``out_hw`` window (zero padding)."""
    b, c, h, w = e.shape
    p = kernel.shape[-1]
    kernel = kernel.to(e.dtype)
    # conv_transpose2d yields (h-1)·s - 2·pad + p + output_padding rows; pick output_padding
    # so that this equals the requested size exactly (it is < s for every legal size).
    op_h = out_hw[0] - ((h - 1) * stride - 2 * padding + p)
    op_w = out_hw[1] - ((w - 1) * stride - 2 * padding + p)
    if not (0 <= op_h < stride and 0 <= op_w < stride):
        raise ValueError(f"LR size {h}×{w} does not decimate from HR size {out_hw} at scale {stride}")
    if b == 1:
        out = F.conv_transpose2d(e.reshape(c, 1, h, w), kernel.reshape(1, 1, p, p), stride=stride,
                                 padding=padding, output_padding=(op_h, op_w))
        return out.reshape(1, c, out_hw[0], out_hw[1])
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)
    out = F.conv_transpose2d(e.reshape(1, b * c, h, w), weight, stride=stride, padding=padding,
                             output_padding=(op_h, op_w), groups=b * c)
    return out.reshape(b, c, out_hw[0], out_hw[1])


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Reflect-padded per-channel correlation of each image with its kernel (same size)."""
    _, r = _check(x, kernel)
    return _grouped_correlation(F.pad(x, (r, r, r, r), mode="reflect"), kernel, stride=1)


def downsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Keep the top-left pixel of every ``scale×scale`` block."""
    return x[..., ::scale, ::scale]


def blur_downsample(x: torch.Tensor, kernel: torch.Tensor, scale: int) -> torch.Tensor:
    """The degradation operator A(X; K) = downsample(blur(X, K), s), fused.

    Folding the stride into the convolution computes only the kept pixels (s² less work)
    and gives bit-for-bit the release's network operator ``D_K``.
    """
    _, r = _check(x, kernel)
    return _grouped_correlation(F.pad(x, (r, r, r, r), mode="reflect"), kernel, stride=scale)


def reflect_pad_adjoint(z: torch.Tensor, r: int) -> torch.Tensor:
    """Adjoint of ``F.pad(x, (r, r, r, r), mode='reflect')``.

    Each padded border pixel is a copy of an interior pixel, so the adjoint folds the border
    back onto the pixels it was copied from and keeps the centre.
    """
    if r == 0:
        return z
    for dim in (-2, -1):
        n = z.shape[dim] - 2 * r
        centre = z.narrow(dim, r, n).clone()
        left = z.narrow(dim, 0, r).flip(dim)            # padded j < r copies source r - j
        right = z.narrow(dim, r + n, r).flip(dim)       # padded r+n+m copies source n-2-m
        centre.narrow(dim, 1, r).add_(left)
        centre.narrow(dim, n - 1 - r, r).add_(right)
        z = centre
    return z


def blur_downsample_adjoint(y: torch.Tensor, kernel: torch.Tensor, scale: int,
                            hr_hw: tuple[int, int]) -> torch.Tensor:
    """The exact adjoint Aᵀ of :func:`blur_downsample` for HR size ``hr_hw``.

    ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ holds to float64 rounding, reflection included (tested).
    """
    _, r = _check(y, kernel)
    padded = _grouped_transposed_correlation(y, kernel, scale, 0, (hr_hw[0] + 2 * r, hr_hw[1] + 2 * r))
    return reflect_pad_adjoint(padded, r)


def back_project(y: torch.Tensor, kernel: torch.Tensor, scale: int, hr_hw: tuple[int, int]) -> torch.Tensor:
    """The release's ``Dᵀ_K``: adjoint of a *zero*-padded blur-decimate (docs/kxnet.md).

    It differs from :func:`blur_downsample_adjoint` only within ``p//2`` pixels of the border,
    where the reflection's contributions are dropped. Kept because the official weights were
    trained with it.
    """
    _, r = _check(y, kernel)
    return _grouped_transposed_correlation(y, kernel, scale, r, hr_hw)


def back_project_normaliser(kernel: torch.Tensor, scale: int, lr_hw: tuple[int, int],
                            hr_hw: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """``Dᵀ_K(1)``: how much each HR pixel is covered by the back-projection (paper Eq. 11).

    Dividing the back-projected residual by it evens out the uneven overlap of strided
    kernels. Returned as B×C×H×W so it broadcasts like the release's.
    """
    ones = kernel.new_ones(kernel.shape[0], channels, lr_hw[0], lr_hw[1])
    return back_project(ones, kernel, scale, hr_hw)


def kernel_gradient(x: torch.Tensor, residual: torch.Tensor, scale: int, kernel_size: int) -> torch.Tensor:
    """∇_K of ½‖A(X;K) − Y‖² given ``residual = A(X;K) − Y``, without the p²×hw patch matrix.

    G[u,v] = Σ_{c,i,j} Xpad[c, s·i+u, s·j+v] · R[c,i,j] is a correlation of the padded image
    with the residual dilated by ``s``, evaluated at the p×p lags: one grouped convolution
    (groups = batch) whose memory is that of the image, not p² copies of it.
    """
    b, c, h_hr, w_hr = x.shape
    r = kernel_size // 2
    h, w = residual.shape[-2:]
    if (h, w) != (lr_size(h_hr, scale), lr_size(w_hr, scale)):
        raise ValueError(f"residual {h}×{w} does not match HR {h_hr}×{w_hr} at scale {scale}")
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    residual = residual.to(xp.dtype)
    out = F.conv2d(xp.reshape(1, b * c, xp.shape[-2], xp.shape[-1]), residual, dilation=scale, groups=b)
    return out[0, :, :kernel_size, :kernel_size]


def bicubic_upsample(y: torch.Tensor, scale: int) -> torch.Tensor:
    """PyTorch bicubic (Keys a=−0.75, ``align_corners=False``): the paper's Bicubic and KXNet's X⁰."""
    return F.interpolate(y, scale_factor=scale, mode="bicubic", align_corners=False)
