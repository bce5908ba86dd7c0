"""Kernels on an FFT grid: the transfer function of a centred kernel and back.

A ``p×p`` kernel (``p`` odd, centre tap at ``p//2``) is placed on an ``H×W`` grid with its
centre tap at index ``(0, 0)`` and the other taps wrapped around (MATLAB's ``psf2otf``), so
``ifft2(psf2otf(c) · fft2(x))`` is the *circular convolution* ``x ⊛ c``:
``(x ⊛ c)[i] = Σ_m c[r + m] · x[i − m]`` with ``r = p//2``. That is the 180° rotation of the
correlation :func:`kxnet.physics.blur` applies; for centro-symmetric kernels (every Gaussian of
this project) the two coincide. Batched: the leading dimensions are kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psf2otf", "otf2psf"]


def _check_odd(p_h: int, p_w: int) -> None:
    if p_h % 2 != 1 or p_w % 2 != 1:
        raise ValueError(f"kernels must have odd sides, got {p_h}×{p_w}")


def psf2otf(kernel: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The 2-D DFT of ``kernel`` (…×p×q) zero-padded to ``shape`` with its centre at (0, 0)."""
    p_h, p_w = kernel.shape[-2:]
    _check_odd(p_h, p_w)
    h, w = shape
    if p_h > h or p_w > w:
        raise ValueError(f"a {p_h}×{p_w} kernel does not fit an {h}×{w} FFT grid")
    padded = F.pad(kernel, (0, w - p_w, 0, h - p_h))
    return torch.fft.fft2(torch.roll(padded, shifts=(-(p_h // 2), -(p_w // 2)), dims=(-2, -1)))


def otf2psf(otf: torch.Tensor, size: int) -> torch.Tensor:
    """The centred ``size×size`` crop of ``real(ifft2(otf))``: the inverse of :func:`psf2otf`
    for a kernel of that size (taps outside the crop are dropped)."""
    _check_odd(size, size)
    h, w = otf.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"a {size}×{size} kernel does not fit an {h}×{w} FFT grid")
    psf = torch.fft.ifft2(otf).real
    r = size // 2
    return torch.roll(psf, shifts=(r, r), dims=(-2, -1))[..., :size, :size]
