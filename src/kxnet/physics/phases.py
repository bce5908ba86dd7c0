"""``Dᵀ`` computed by output phases: the same sums as the strided transposed correlations of
:mod:`.operators`, arranged as s² stride-1 correlations and a pixel shuffle.

Output pixel ``m = s·q + φ`` of a stride-s transposed correlation is ``Σ_j E[q − j]·K[s·j + φ]``:
a correlation of E with the flipped sub-kernel ``K[φ::s]`` (⌈p/s⌉² taps). One dense convolution
with s² output channels per image and a pixel shuffle replace the strided transposed
convolution, which oneDNN runs about ten times slower at these shapes (docs/speed.md). The
fast inference path uses these; they are tested against :func:`.back_project` and
:func:`.blur_downsample_adjoint` and against the adjoint identity, like the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .operators import reflect_pad_adjoint

__all__ = ["back_project_phases", "blur_downsample_adjoint_phases", "transposed_correlation_phases"]


def transposed_correlation_phases(e: torch.Tensor, kernel: torch.Tensor, scale: int, padding: int,
                                   out_hw: tuple[int, int]) -> torch.Tensor:
    """``conv_transpose2d`` of every channel of image b with kernel b (stride s, given padding),
    cropped to ``out_hw``, computed as s² stride-1 correlations (one per output phase).

    Output pixel ``m = s·q + φ`` (before cropping ``padding``) is ``Σ_j E[q − j]·K[s·j + φ]``:
    a correlation of E with the flipped sub-kernel ``K[φ::s]`` (⌈p/s⌉² taps). One dense
    convolution with s² output channels and a pixel shuffle replace the strided transposed
    convolution, which oneDNN runs ≈10× slower for these shapes; same sums, float rounding only.
    """
    b, c, h, w = e.shape
    p = kernel.shape[-1]
    s = scale
    j = -(-p // s)
    kp = F.pad(kernel.to(e.dtype), (0, j * s - p, 0, j * s - p))
    sub = kp.reshape(b, j, s, j, s).permute(0, 2, 4, 1, 3).flip(-1, -2).reshape(b * s * s, 1, j, j)
    rows = -(-(out_hw[0] + padding) // s)   # phase rows needed to cover the cropped output
    cols = -(-(out_hw[1] + padding) // s)
    ep = F.pad(e, (j - 1, max(cols - w, 0), j - 1, max(rows - h, 0)))
    if b == 1:
        out = F.conv2d(ep.reshape(c, 1, ep.shape[-2], ep.shape[-1]), sub)            # c × s² × …
        full = F.pixel_shuffle(out, s).reshape(1, c, out.shape[-2] * s, out.shape[-1] * s)
    else:
        out = F.conv2d(ep.transpose(0, 1), sub, groups=b)                            # c × (b·s²) × …
        full = F.pixel_shuffle(out.reshape(c * b, s * s, out.shape[-2], out.shape[-1]), s)
        full = full.reshape(c, b, full.shape[-2], full.shape[-1]).transpose(0, 1)
    return full[..., padding:padding + out_hw[0], padding:padding + out_hw[1]]


def back_project_phases(e: torch.Tensor, kernel: torch.Tensor, scale: int, hr_hw: tuple[int, int]) -> torch.Tensor:
    """:func:`kxnet.physics.back_project` (the release's ``Dᵀ_K``) by output phases."""
    return transposed_correlation_phases(e, kernel, scale, kernel.shape[-1] // 2, hr_hw)


def blur_downsample_adjoint_phases(e: torch.Tensor, kernel: torch.Tensor, scale: int,
                                   hr_hw: tuple[int, int]) -> torch.Tensor:
    """:func:`kxnet.physics.blur_downsample_adjoint` (exact ``Aᵀ``) by output phases."""
    r = kernel.shape[-1] // 2
    padded = transposed_correlation_phases(e, kernel, scale, 0, (hr_hw[0] + 2 * r, hr_hw[1] + 2 * r))
    return reflect_pad_adjoint(padded, r)
