"""The blur–decimate operator with **circular** boundaries, in the Fourier domain, and the
closed-form least-squares step built on it (USRNet's data step; docs/kenet_usrnet.md).

These functions follow FFT codes' convention, not :mod:`.operators`': a kernel here is a
**PSF** ``h`` applied by *true* convolution with centre ``c = ⌊p/2⌋``,
``(x ⊛ h)[i] = Σ_u h[u] · x[(i − u + c) mod H]``. The project's operator instead *correlates*
with ``k`` centred at ``(p−1)/2`` and reflects at the borders; for odd ``p`` the two agree,
away from the borders, when ``h = flip(k)`` (:func:`psf_of_kernel`) — tests/test_usrnet.py pins
it, and that the symmetric Gaussians of both settings do not care.

Decimation keeps the upper-left pixel of every s×s block (``[..., ::s, ::s]``), as everywhere
in the project. Images are ``B×C×H×W`` with ``H`` and ``W`` multiples of ``s``; PSFs ``B×1×p×q``
(one per image, shared by the channels) or anything that broadcasts against the images.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .fourier import psf2otf

__all__ = [
    "SFoldSystem",
    "circular_blur_downsample",
    "psf_of_kernel",
    "sfold_solve",
    "sfold_system",
    "zero_upsample",
]


def psf_of_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """The convolution PSF of a kernel in the project's (correlation) orientation: both axes flipped."""
    return kernel.flip(-2, -1)


def zero_upsample(y: torch.Tensor, scale: int) -> torch.Tensor:
    """Sᵀ, the adjoint of upper-left decimation: ``y`` at ``[::s, ::s]``, zeros elsewhere."""
    b, c, h, w = y.shape
    out = y.new_zeros(b, c, h * scale, w * scale)
    out[..., ::scale, ::scale] = y
    return out


def circular_blur_downsample(x: torch.Tensor, otf: torch.Tensor, scale: int) -> torch.Tensor:
    """``(x ⊛ h)↓s`` with circular boundaries, ``otf`` being ``psf2otf(h, x's size)``."""
    return torch.fft.ifft2(torch.fft.fft2(x) * otf).real[..., ::scale, ::scale]


def _block_mean(a: torch.Tensor, scale: int) -> torch.Tensor:
    """Mean of the s×s blocks a spectrum splits into when each axis is cut into s equal parts:
    the frequencies that decimation by s folds onto one another."""
    *lead, h, w = a.shape
    return a.reshape(*lead, scale, h // scale, scale, w // scale).mean(dim=(-4, -2))


class SFoldSystem(NamedTuple):
    """What the data step needs of one (y, h, s), computed once and reused by every iteration:
    ``otf`` = F(h), ``otf_power`` = |F(h)|², ``data_term`` = conj(F(h))·F(Sᵀy), the scale."""

    otf: torch.Tensor
    otf_power: torch.Tensor
    data_term: torch.Tensor
    scale: int


def sfold_system(y: torch.Tensor, psf: torch.Tensor, scale: int) -> SFoldSystem:
    """Precompute the data step's Fourier terms for LR images ``y`` (B×C×h×w) and PSFs ``psf``."""
    hr = (y.shape[-2] * scale, y.shape[-1] * scale)
    otf = psf2otf(psf.to(y.dtype), hr)
    data_term = otf.conj() * torch.fft.fft2(zero_upsample(y, scale))
    return SFoldSystem(otf, otf.real.square() + otf.imag.square(), data_term, scale)


def sfold_solve(system: SFoldSystem, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``argmin_z ‖y − (z ⊛ h)↓s‖² + α‖z − x‖²`` in closed form (α > 0, B×1×1×1 or a number).

    The normal equations ``(HᵀH + αI) z = Hᵀy + αx``, ``H = S·C_h``, are diagonalised by the FFT
    up to the s² aliased copies decimation mixes; the Woodbury identity then leaves one division
    per frequency block (Zhao et al. 2016, as USRNet's ``DataNet``):
    ``z = F⁻¹[(R − conj(F h) ⊙ tile(mean_s(F h ⊙ R) / (mean_s|F h|² + α))) / α]``, ``R = F(Hᵀy + αx)``.
    Runs in the system's precision (autocast does not reach FFTs); tested against the normal
    equations in float64.
    """
    dtype = system.otf.real.dtype
    x = x.to(dtype)
    alpha = torch.as_tensor(alpha, dtype=dtype, device=x.device)
    s = system.scale
    rhs = system.data_term + torch.fft.fft2(alpha * x)
    ratio = _block_mean(system.otf * rhs, s) / (_block_mean(system.otf_power, s) + alpha)
    spectrum = (rhs - system.otf.conj() * ratio.repeat(*([1] * (ratio.dim() - 2)), s, s)) / alpha
    return torch.fft.ifft2(spectrum).real
