"""DCLS's two Fourier-domain computations (Luo et al., CVPR 2022; docs/dcls.md).

* :func:`cls_deconvolve` — the constrained-least-squares deconvolution of paper Eq. 16,
  ``R = F⁻¹( conj(F k̂) · F g / (|F k̂|² + |F P|² + ε) )``, one regulariser ``P`` per channel;
* :func:`reformulated_kernel` — the LR-space kernel ``k_l`` of Eq. 7 that the estimator is
  trained to predict, with the release's post-processing (channel mean, sign mask, zeroing
  of negligible taps).

Kernels are *convolution* kernels on the FFT grid (:func:`kxnet.physics.psf2otf`): the
reformulated kernel of a blur that :func:`kxnet.physics.blur` applies as a correlation is its
180° rotation in LR space, and the CLS inverts convolution by the kernel it is given — the
two conventions match each other, as in the release. For the project's centro-symmetric
Gaussians the rotation changes nothing.
"""

from __future__ import annotations

import torch

from ...physics import blur_downsample, downsample, otf2psf, psf2otf

__all__ = [
    "NEGLIGIBLE_RANK",
    "TARGET_EPS",
    "cls_deconvolve",
    "lr_space_kernel",
    "reformulated_kernel",
    "zeroize_negligible",
]

TARGET_EPS = 1e-20          # release: CorrectionLoss(eps=1e-20) in Eq. 7's denominator
NEGLIGIBLE_RANK = 40        # release: zeroize_negligible_val(k, n=40)
NEGLIGIBLE_FRACTION = 0.75  # … subtracts 0.75 × the (n+1)-th largest tap
_GUARD = 1e-20              # … and adds this at tap (p//2+1, p//2+1) before normalising


def _power(spectrum: torch.Tensor) -> torch.Tensor:
    return spectrum.real.square() + spectrum.imag.square()


def cls_deconvolve(features: torch.Tensor, kernel: torch.Tensor, regulariser: torch.Tensor,
                   eps: float = 0.0) -> torch.Tensor:
    """Eq. 16 on every channel: the circular deconvolution of ``features`` (B×C×H×W) by
    ``kernel`` (B×1×p×p, shared by the channels), regularised per channel by ``regulariser``
    (B×C×q×q; zero-mean high-pass filters in DCLS). Real, same shape as ``features``.

    The boundary is circular: callers pad first (DCLS replicate-pads by p) and crop after.
    ``eps`` is added to the denominator; the release adds nothing. Where ``k`` and ``P`` vanish
    at the same frequency the quotient is 0/0, and near such frequencies the gain
    ``|F k| / (|F k|² + |F P|²)`` is unbounded; any ``eps > 0`` bounds it by ``1/(2√eps)``.
    """
    shape = features.shape[-2:]
    k = psf2otf(kernel, shape)
    denominator = _power(k) + _power(psf2otf(regulariser, shape)) + eps
    return torch.fft.ifft2(k.conj() * torch.fft.fft2(features) / denominator).real


def lr_space_kernel(sharp: torch.Tensor, blurred: torch.Tensor, size: int,
                    eps: float = TARGET_EPS) -> torch.Tensor:
    """Eq. 7 per image and channel: the ``size×size`` kernel ``k`` with ``blurred ≈ sharp ⊛ k``
    (circular convolution), ``F⁻¹( conj(F sharp) · F blurred / (|F sharp|² + ε) )`` cropped
    around its centre. ``sharp`` and ``blurred`` are B×C×h×w; the result is B×C×size×size."""
    fx = torch.fft.fft2(sharp)
    return otf2psf(fx.conj() * torch.fft.fft2(blurred) / (_power(fx) + eps), size)


def zeroize_negligible(kernel: torch.Tensor, n: int = NEGLIGIBLE_RANK) -> torch.Tensor:
    """The release's ``zeroize_negligible_val`` on B×1×p×p kernels: subtract 0.75 × the
    (n+1)-th largest tap, clip to [0, 1], add 1e-20 at tap (p//2+1, p//2+1) — one below and
    right of the centre, as the release does (it only matters for an all-zero kernel, which
    becomes a delta there) — and normalise to sum 1."""
    b, _, p, _ = kernel.shape
    if p * p <= n:
        raise ValueError(f"a {p}×{p} kernel has fewer than {n + 1} taps")
    threshold = NEGLIGIBLE_FRACTION * kernel.reshape(b, -1).sort(dim=1).values[:, -n - 1]
    kept = (kernel - threshold.view(b, 1, 1, 1)).clamp(0.0, 1.0)
    guard = torch.zeros_like(kept)
    guard[..., p // 2 + 1, p // 2 + 1] = _GUARD
    kept = kept + guard
    return kept / kept.sum(dim=(-2, -1), keepdim=True)


@torch.no_grad()
def reformulated_kernel(hr: torch.Tensor, kernel: torch.Tensor, scale: int, size: int,
                        eps: float = TARGET_EPS) -> torch.Tensor:
    """The estimator's target: the LR-space kernel of blurring ``hr`` (B×3×H×W, clean) with
    ``kernel`` (B×p×p, the true HR blur) under this project's s-fold decimation.

    Eq. 7 with ``x↓ = downsample(hr)`` and ``(x ⊛ k)↓ = blur_downsample(hr, kernel)`` (the release
    uses bicubic for both; docs/dcls.md), per colour channel; then the release's
    ``CorrectionLoss``: average the three channels, keep only taps where the *product* of the
    three is positive (so a tap where exactly two channels are negative survives — a quirk kept
    on purpose), and :func:`zeroize_negligible`. Computed in float64 — with ε = 1e-20 the
    division is unregularised and float32 round-off would dominate the weak frequencies — and
    returned as B×1×size×size in ``hr``'s dtype. No gradient flows (it is a target).
    """
    if hr.dim() != 4:
        raise ValueError(f"expected a B×C×H×W HR batch, got shape {tuple(hr.shape)}")
    if kernel.dim() == 2:
        kernel = kernel.expand(hr.shape[0], -1, -1)
    x = hr.to(torch.float64)
    sharp = downsample(x, scale)
    blurred = blur_downsample(x, kernel.to(device=x.device, dtype=torch.float64), scale)
    per_channel = lr_space_kernel(sharp, blurred, size, eps)
    positive_product = per_channel.prod(dim=1, keepdim=True) > 0
    k = per_channel.mean(dim=1, keepdim=True) * positive_product
    return zeroize_negligible(k).to(hr.dtype)
