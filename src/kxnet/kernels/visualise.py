"""Kernels as pictures people can look at."""

from __future__ import annotations

import numpy as np


def kernel_to_image(kernel, size: int = 168) -> np.ndarray:
    """A p×p kernel as a uint8 greyscale picture about ``size`` pixels wide.

    Scaled so its peak is white (kernels sum to 1, so their raw values are invisible) and
    enlarged with nearest-neighbour so each tap stays a crisp square.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2:
        raise ValueError(f"a kernel is p×p, got shape {k.shape}")
    peak = k.max()
    img = np.zeros_like(k) if peak <= 0 else np.clip(k / peak, 0.0, 1.0)
    rep = max(1, size // k.shape[0])
    img = np.repeat(np.repeat(img, rep, axis=0), rep, axis=1)
    return np.round(img * 255.0).astype(np.uint8)
