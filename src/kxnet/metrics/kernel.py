"""Accuracy of an estimated blur kernel against the ground truth, and the Gaussian that a
kernel amounts to (its widths and direction, to compare an estimate with the truth)."""

from __future__ import annotations

import math

import numpy as np

from .image import psnr

__all__ = ["FIT_CONVENTION", "fit_label", "gaussian_fit", "kernel_fit_errors", "kernel_l1", "kernel_mae", "kernel_psnr",
           "match_kernel_size"]

# How every kernel is stated to the user — the README, the `kxnet sr` summary line, the JSON
# sidecar (``sigma_x``, ``sigma_y``, ``theta_deg``), the demo, docs/ — which is how
# :func:`gaussian_fit` reads it: the larger spread first, the angle of its axis. The kernels'
# generator (docs/protocol.md, ``anisotropic_gaussian(p, σx, σy, θ)``) takes σx and θ of either
# axis: ``(1.2, 2.6, 30°)`` is stated as σ₁ 2.60 / σ₂ 1.20 px at θ 120°.
FIT_CONVENTION = ("σ₁ ≥ σ₂ are the kernel's spreads (standard deviations, HR pixels) along and across its major "
                  "axis; θ is the angle of the σ₁ axis in degrees, clockwise from the image's x axis (pointing "
                  "right; y points down), in [0°, 180°)")


def match_kernel_size(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre-crop or zero-pad ``k`` to ``shape`` so kernels of different sizes compare.

    The kernel centre ``(p−1)/2`` stays at the centre; when a size difference is odd, the extra
    row/column is taken from (or added at) the bottom/right.
    """
    k = np.asarray(k, dtype=np.float64)
    for axis, target in enumerate(shape):
        diff = k.shape[axis] - target
        if diff > 0:
            k = np.take(k, range(diff // 2, diff // 2 + target), axis=axis)
        elif diff < 0:
            pad = [(0, 0), (0, 0)]
            pad[axis] = (-diff // 2, -diff - (-diff // 2))
            k = np.pad(k, pad)
    return k


def _pair(k: np.ndarray, k_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k_gt = np.asarray(k_gt, dtype=np.float64)
    if k_gt.ndim != 2 or np.ndim(k) != 2:
        raise ValueError(f"kernels must be 2-D, got {np.shape(k)} and {k_gt.shape}")
    return match_kernel_size(k, k_gt.shape), k_gt


def kernel_mae(k: np.ndarray, k_gt: np.ndarray) -> float:
    """Mean absolute difference per kernel tap (after size matching)."""
    k, k_gt = _pair(k, k_gt)
    return float(np.mean(np.abs(k - k_gt)))


def kernel_psnr(k: np.ndarray, k_gt: np.ndarray) -> float:
    """``20·log10(max(k_gt) / RMSE(k, k_gt))`` in dB; ``inf`` for identical kernels.

    The peak is the ground truth's largest tap rather than 1 because kernel taps sum to one
    and are tiny: a fixed peak of 1 would rate every kernel as excellent.
    """
    k, k_gt = _pair(k, k_gt)
    return psnr(k, k_gt, data_range=float(k_gt.max()))


def kernel_l1(k: np.ndarray, k_gt: np.ndarray) -> float:
    """``Σ |k/Σk − k_gt/Σk_gt|`` after size matching: 0 for the exact kernel, 2 for disjoint
    supports; independent of the kernel size, unlike the per-tap MAE."""
    k, k_gt = _pair(k, k_gt)
    return float(np.abs(k / k.sum() - k_gt / k_gt.sum()).sum())


def gaussian_fit(kernel) -> dict:
    """A Gaussian fitted to a kernel by its moments, stated as :data:`FIT_CONVENTION` says.

    ``sigma_x ≥ sigma_y`` (σ₁, σ₂) are the principal standard deviations in HR pixels; ``theta_deg``
    ∈ [0, 180) is the direction of the σ₁ (major) axis, ``x`` = column to the right, ``y`` =
    row down (so positive angles turn clockwise on screen); ``centre_offset`` = (x, y) of the
    centroid relative to the kernel's centre tap. Plus the peak tap and the entropy in bits.
    Moments of a p×p kernel are those of the truncated Gaussian: σ of wide blurs read low.
    """
    if hasattr(kernel, "detach"):  # a torch tensor; metrics stay importable without touching torch
        kernel = kernel.detach().cpu().double().numpy()
    k = np.asarray(kernel, np.float64)
    k = np.clip(k, 0.0, None)
    total = k.sum()
    p = k.shape[-1]
    if total <= 0:
        return {"size": p, "sigma_x": None, "sigma_y": None, "theta_deg": None,
                "centre_offset": None, "peak": 0.0, "entropy_bits": None}
    k = k / total
    c = (np.arange(p) - p // 2).astype(np.float64)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    mx, my = (k * xx).sum(), (k * yy).sum()
    cxx = (k * (xx - mx) ** 2).sum()
    cyy = (k * (yy - my) ** 2).sum()
    cxy = (k * (xx - mx) * (yy - my)).sum()
    half_trace, det_part = (cxx + cyy) / 2, math.hypot((cxx - cyy) / 2, cxy)
    l1, l2 = half_trace + det_part, max(half_trace - det_part, 0.0)
    theta = math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy)) % 180.0
    nz = k[k > 0]
    return {
        "size": p,
        "sigma_x": round(math.sqrt(l1), 4),
        "sigma_y": round(math.sqrt(l2), 4),
        "theta_deg": round(theta, 2),
        "centre_offset": [round(mx, 4), round(my, 4)],
        "peak": round(float(k.max()), 6),
        "entropy_bits": round(float(-(nz * np.log2(nz)).sum()), 4),
    }


def fit_label(fit: dict | None, ascii: bool = False) -> str:
    """A :func:`gaussian_fit` in words, the one way kernels are stated (:data:`FIT_CONVENTION`):
    ``σ₁ 2.60 / σ₂ 1.20 px at θ 120°`` (``ascii``: ``sigma1 2.60 / sigma2 1.20 px at theta 120 deg``,
    for fonts without Greek); ``""`` for no fit."""
    if not fit or fit.get("sigma_x") is None:
        return ""
    theta = round(fit["theta_deg"]) % 180
    if ascii:
        return f"sigma1 {fit['sigma_x']:.2f} / sigma2 {fit['sigma_y']:.2f} px at theta {theta} deg"
    return f"σ₁ {fit['sigma_x']:.2f} / σ₂ {fit['sigma_y']:.2f} px at θ {theta}°"


def kernel_fit_errors(k: np.ndarray, k_gt: np.ndarray) -> dict:
    """Errors of the estimate's Gaussian fit against the true kernel's fit (both by moments
    on the same grid, so the truncation of wide kernels biases both alike).

    ``sigma_major_err`` / ``sigma_minor_err``: absolute differences in HR pixels;
    ``theta_err_deg``: the angle between the major axes in [0, 90], None when the true kernel
    is (nearly) isotropic (σ ratio < 1.1), where the direction means nothing.
    """
    est, gt = gaussian_fit(k), gaussian_fit(k_gt)
    if est["sigma_x"] is None:
        return {"sigma_major_err": None, "sigma_minor_err": None, "theta_err_deg": None}
    theta = None
    if gt["sigma_x"] > 1.1 * gt["sigma_y"]:
        d = abs(est["theta_deg"] - gt["theta_deg"]) % 180.0
        theta = min(d, 180.0 - d)
    return {"sigma_major_err": abs(est["sigma_x"] - gt["sigma_x"]),
            "sigma_minor_err": abs(est["sigma_y"] - gt["sigma_y"]), "theta_err_deg": theta}
