"""Accuracy of an estimated blur kernel against the ground truth."""

from __future__ import annotations

import numpy as np

from .image import psnr

__all__ = ["kernel_mae", "kernel_psnr", "match_kernel_size"]


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
