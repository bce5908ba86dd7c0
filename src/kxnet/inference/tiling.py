"""Tile layout: where overlapping windows start along one axis, and how their outputs are
cross-faded. Used by the upscaler's tiles (:mod:`kxnet.inference.upscaler`) and the grid of
region crops (:mod:`kxnet.inference.regions`)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["blend_ramp", "tile_starts"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of windows of size ``tile`` covering ``[0, length)``, evenly spread so
    that neighbours overlap by at least ``overlap``; one window if ``length <= tile``."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [(i * (length - tile)) // (n - 1) for i in range(n)]


def blend_ramp(n: int) -> np.ndarray:
    """Rising raised-cosine weights for an overlap band of ``n`` pixels; ``r + r[::-1] == 1``."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def _window_weights(starts: list[int], size: int, i: int, length: int, scale: int) -> np.ndarray:
    """1-D HR weights of window ``i``: one inside, ramps where it overlaps a neighbour."""
    a = starts[i]
    b = min(a + size, length)
    w = np.ones((b - a) * scale, np.float32)
    if i > 0:
        n = (starts[i - 1] + size - a) * scale          # band shared with the previous window
        w[:n] *= blend_ramp(n)
    if i + 1 < len(starts):
        n = (b - starts[i + 1]) * scale                 # band shared with the next window
        w[-n:] *= blend_ramp(n)[::-1]
    return w
