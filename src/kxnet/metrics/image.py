"""Image-quality metrics of the benchmark protocol (docs/protocol.md, "Metrics").

The published numbers come from the release's ``test.py``: both images as 8-bit, converted to
the BT.601 studio-range Y channel without rounding, ``scale`` pixels cropped on every side,
then PSNR with peak 255 and the Wang et al. single-scale SSIM. Everything here is NumPy
float64 so the metric does not depend on OpenCV, SciPy or scikit-image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io import to_uint8

__all__ = [
    "ImageMetrics",
    "crop_border",
    "image_metrics",
    "lr_consistency_psnr",
    "psnr",
    "rgb_to_y",
    "ssim",
]

# MATLAB rgb2ycbcr luma row, for R, G, B in [0, 1]; the offset 16 gives Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Y channel (float64, not rounded) of H×W×3 RGB given as uint8 or as float in [0, 1]."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {rgb.shape}")
    values = rgb / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
    return 16.0 + values @ _Y_WEIGHTS


def crop_border(img: np.ndarray, n: int) -> np.ndarray:
    """Drop ``n`` pixels on each of the four sides (the protocol crops ``scale`` pixels)."""
    if n < 0:
        raise ValueError(f"crop must be non-negative, got {n}")
    return img if n == 0 else img[n:-n, n:-n, ...]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """``20·log10(data_range / RMSE)``; ``inf`` for identical inputs."""
    a, b = _pair(a, b)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(20.0 * np.log10(data_range / np.sqrt(mse)))


def _gaussian_1d() -> np.ndarray:
    x = np.arange(_SSIM_WINDOW, dtype=np.float64) - (_SSIM_WINDOW - 1) / 2
    g = np.exp(-(x ** 2) / (2 * _SSIM_SIGMA ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation with ``g ⊗ g`` keeping only fully covered positions.

    This equals filtering with any border mode and discarding ``len(g)//2`` pixels per side,
    which is what the release does (``cv2.filter2D`` then ``[5:-5, 5:-5]``).
    """
    n = len(g)
    h, w = x.shape[0] - n + 1, x.shape[1] - n + 1
    rows = sum(g[k] * x[k:k + h] for k in range(n))
    return sum(g[k] * rows[:, k:k + w] for k in range(n))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Single-scale SSIM (11×11 Gaussian window, σ = 1.5), mean over the valid region.

    3-D inputs (H×W×C) give the mean of the per-channel SSIMs, as the release does for RGB.
    """
    a, b = _pair(a, b)
    if a.ndim == 3:
        return float(np.mean([ssim(a[..., c], b[..., c], data_range) for c in range(a.shape[2])]))
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D or 3-D image, got shape {a.shape}")
    if min(a.shape) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {_SSIM_WINDOW}×{_SSIM_WINDOW} pixels, "
                         f"got {a.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g = _gaussian_1d()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a ** 2
    var_b = _filter_valid(b * b, g) - mu_b ** 2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / \
        ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


@dataclass(frozen=True)
class ImageMetrics:
    """Y-channel PSNR (dB) and SSIM of one SR/HR pair."""

    psnr: float
    ssim: float


def _require_uint8_rgb(name: str, img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise TypeError(f"{name} must be a uint8 H×W×3 RGB image (quantise with to_uint8 first: "
                        f"the protocol scores 8-bit images), got {img.dtype} {img.shape}")


def image_metrics(sr: np.ndarray, hr: np.ndarray, scale: int) -> ImageMetrics:
    """THE evaluation of the benchmark protocol for one super-resolved image (docs/protocol.md, "Metrics")."""
    _require_uint8_rgb("sr", sr)
    _require_uint8_rgb("hr", hr)
    y_sr, y_hr = crop_border(rgb_to_y(sr), scale), crop_border(rgb_to_y(hr), scale)
    return ImageMetrics(psnr=psnr(y_sr, y_hr), ssim=ssim(y_sr, y_hr))


def image_psnr(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """The PSNR of :func:`image_metrics` alone (per-stage curves need no SSIM)."""
    _require_uint8_rgb("sr", sr)
    _require_uint8_rgb("hr", hr)
    return psnr(crop_border(rgb_to_y(sr), scale), crop_border(rgb_to_y(hr), scale))


def lr_consistency_psnr(lr: np.ndarray, sr: np.ndarray, kernel: np.ndarray, scale: int) -> float:
    """How well an SR result explains its own input: Y-PSNR of ``lr`` vs ``(sr ⊗ kernel)↓s``.

    Needs no ground truth, so it can score real photographs. The re-degraded image goes
    through the same float32 blur and 8-bit quantisation that synthesised the benchmark LRs,
    so an SR equal to the true HR with the true kernel scores ``inf`` on noise-free data.
    ``sr`` is H×W×3 (uint8, or float in [0, 1]); ``kernel`` is p×p.
    """
    import torch  # only this metric needs the network-side operator

    from ..io import from_tensor, to_tensor
    from ..physics import blur_downsample

    _require_uint8_rgb("lr", lr)
    k = torch.as_tensor(np.asarray(kernel), dtype=torch.float32).unsqueeze(0)
    with torch.no_grad():
        redegraded = from_tensor(blur_downsample(to_tensor(sr), k, scale))
    if redegraded.shape != lr.shape:
        raise ValueError(f"SR {np.shape(sr)} at ×{scale} degrades to {redegraded.shape}, "
                         f"but the LR is {lr.shape}")
    return psnr(rgb_to_y(to_uint8(redegraded)), rgb_to_y(lr))
