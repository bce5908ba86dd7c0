"""A synthetic test chart (a Siemens star, bar groups, discs, text): drawn here, so the bundled
example and the tests need no third-party photo."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["draw_chart"]


def draw_chart(size: int = 384) -> np.ndarray:
    img = Image.new("RGB", (size, size), (235, 232, 225))
    d = ImageDraw.Draw(img)
    c = size // 4
    # Siemens star: every orientation and frequency at once
    for i in range(36):
        a0, a1 = 2 * math.pi * i / 36, 2 * math.pi * (i + 0.5) / 36
        pts = [(c, c), (c + c * 0.9 * math.cos(a0), c + c * 0.9 * math.sin(a0)),
               (c + c * 0.9 * math.cos(a1), c + c * 0.9 * math.sin(a1))]
        d.polygon(pts, fill=(20, 20, 30))
    # bar groups of decreasing period: where blur and aliasing show first
    for j, period in enumerate((16, 12, 8, 6, 4)):
        y0 = 10 + j * 24
        for k in range(0, 170, period):
            x0 = size // 2 + 8 + k
            d.rectangle([x0, y0, x0 + period // 2 - 1, y0 + 18], fill=(140, 30, 30) if j % 2 else (30, 60, 150))
    # coloured discs and text
    for j, col in enumerate([(200, 40, 40), (40, 160, 60), (40, 80, 200), (230, 180, 30)]):
        d.ellipse([20 + j * 90, 220, 90 + j * 90, 290], fill=col, outline=(0, 0, 0), width=2)
    font = ImageFont.load_default(size=22) if hasattr(ImageFont, "load_default") else None
    d.text((20, 305), "kxnet  blind SR  x4", fill=(10, 10, 10), font=font)
    d.text((20, 340), "Kernel + image, unfolded.", fill=(60, 30, 90), font=font)
    return np.asarray(img).astype(np.float32) / 255.0
