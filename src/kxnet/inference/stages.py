"""How the estimate evolves over the unrolled stages, as one picture (the paper's Fig. 5a)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..io import atomic_path, from_tensor, to_uint8
from ..kernels import kernel_to_image
from ..models import SROutput

__all__ = ["default_stages", "render_stages"]

_LABEL_HEIGHT = 16
_GAP = 4


def default_stages(total: int, count: int = 7) -> list[int]:
    """``count`` evenly spaced stage numbers (1-based) from the first to the last, or all."""
    if total <= count:
        return list(range(1, total + 1))
    return sorted({int(round(v)) for v in np.linspace(1, total, count)})


def _image_tile(x, tile_size: int) -> Image.Image:
    img = Image.fromarray(to_uint8(from_tensor(x)))
    if max(img.size) > tile_size:  # keep the sheet a viewable size for large images
        img.thumbnail((tile_size, tile_size), Image.Resampling.LANCZOS)
    return img


def render_stages(output: SROutput, path: str | os.PathLike, index: int = 0,
                  stages: list[int] | None = None, tile_size: int = 256) -> Path:
    """Write a PNG with, per stage, the clamped SR image and below it the kernel estimate.

    ``index`` picks the batch item; ``stages`` are stage numbers 1…T as the paper counts them
    (default: about seven evenly spaced, always including the first and last). Images larger
    than ``tile_size`` are shrunk to fit. The file is written atomically.
    """
    total = len(output.stage_images)
    if total == 0:
        raise ValueError("this output has no stages to show (a baseline without a kernel estimate?)")
    stages = default_stages(total) if stages is None else list(stages)
    bad = [t for t in stages if not 1 <= t <= total]
    if bad or not stages:
        raise ValueError(f"stage numbers must lie in 1…{total}, got {stages}")

    images = [_image_tile(output.stage_images[t - 1][index], tile_size) for t in stages]
    w, h = images[0].size
    kernels = [Image.fromarray(kernel_to_image(output.stage_kernels[t - 1][index].detach().cpu().numpy(),
                                               size=min(w, h))) for t in stages]
    col = max(w, *(k.size[0] for k in kernels))  # tiny images: keep every kernel tap visible
    k_side = max(k.size[1] for k in kernels)
    sheet = Image.new("RGB", (len(stages) * (col + _GAP) + _GAP, _LABEL_HEIGHT + h + k_side + 2 * _GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (t, img, ker) in enumerate(zip(stages, images, kernels)):
        left = _GAP + i * (col + _GAP)
        draw.text((left, 2), f"stage {t}", fill="black")
        sheet.paste(img, (left + (col - w) // 2, _LABEL_HEIGHT))
        sheet.paste(ker, (left + (col - ker.size[0]) // 2, _LABEL_HEIGHT + h + _GAP))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
