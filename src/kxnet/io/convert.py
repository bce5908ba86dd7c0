"""Conversions between float images, integer pixels and PyTorch tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is only needed by the tensor helpers; keep `import kxnet.io` light.
    import torch

__all__ = ["quantize", "to_uint8", "to_tensor", "from_tensor"]


def quantize(x: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Clip to [0, 1], scale to the integer range and round half to even.

    The arithmetic stays in the input's float dtype on purpose: the release's ``tensor2img``
    multiplies a float32 array by 255 before ``round``, and doing the same in float64 would
    round a handful of pixels differently and shift the published metrics (docs/protocol.md, "Metrics").
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"expected a float image in [0, 1], got dtype {x.dtype}")
    top = 255.0 if bit_depth == 8 else 65535.0
    return np.round(np.clip(x, 0.0, 1.0) * top).astype(np.uint8 if bit_depth == 8 else np.uint16)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """The benchmark protocol's quantisation of a float image in [0, 1] to 8 bits."""
    return quantize(rgb, 8)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H×W×3 image (float in [0, 1], or uint8/uint16 scaled by their maximum) → 1×3×H×W."""
    import torch

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 image, got shape {rgb.shape}")
    if rgb.dtype in (np.uint8, np.uint16):
        rgb = rgb.astype(np.float32) / np.float32(np.iinfo(rgb.dtype).max)
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(chw).unsqueeze(0)


def from_tensor(t: torch.Tensor) -> np.ndarray:
    """1×3×H×W or 3×H×W tensor → H×W×3 float32 array (values are not clipped)."""
    import torch

    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a 3×H×W tensor, got shape {tuple(t.shape)}")
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy().transpose(1, 2, 0))

