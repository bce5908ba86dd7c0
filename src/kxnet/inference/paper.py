"""The paper's published numbers (RESULTS.md, Tables 1–3) as data, for side-by-side reports.

Keys: (method, setting, noise, scale, set) → (PSNR, SSIM). Setting 1 is noise-free.
"""

from __future__ import annotations

SETS = ("Set5", "Set14", "B100")

# rows as printed: scale → {set: (psnr, ssim)}
_TABLE = {
    ("Bicubic", 1, 0): {
        2: {"B100": (27.02, 0.7472), "Set14": (27.13, 0.7797), "Set5": (29.42, 0.8666)},
        3: {"B100": (24.93, 0.6360), "Set14": (24.58, 0.6671), "Set5": (26.19, 0.7716)},
        4: {"B100": (23.84, 0.5780), "Set14": (23.25, 0.6036), "Set5": (24.43, 0.7045)},
    },
    ("KXNet", 1, 0): {
        2: {"B100": (32.03, 0.8941), "Set14": (33.36, 0.9091), "Set5": (37.58, 0.9552)},
        3: {"B100": (29.06, 0.8010), "Set14": (30.27, 0.8340), "Set5": (34.22, 0.9238)},
        4: {"B100": (27.59, 0.7330), "Set14": (28.67, 0.7782), "Set5": (31.94, 0.8912)},
    },
    ("Bicubic", 2, 0): {
        2: {"B100": (25.85, 0.6769), "Set14": (25.74, 0.7085), "Set5": (27.68, 0.8047)},
        3: {"B100": (24.68, 0.6254), "Set14": (24.28, 0.6546), "Set5": (25.78, 0.7555)},
        4: {"B100": (23.75, 0.5827), "Set14": (23.17, 0.6082), "Set5": (24.35, 0.7086)},
    },
    ("KXNet", 2, 0): {
        2: {"B100": (30.21, 0.8456), "Set14": (31.14, 0.8672), "Set5": (34.59, 0.9315)},
        3: {"B100": (28.15, 0.7672), "Set14": (29.04, 0.8036), "Set5": (32.53, 0.9034)},
        4: {"B100": (27.08, 0.7221), "Set14": (27.98, 0.7659), "Set5": (30.99, 0.8815)},
    },
    ("Bicubic", 2, 15): {
        2: {"B100": (24.44, 0.5150), "Set14": (24.38, 0.5497), "Set5": (25.72, 0.6241)},
        3: {"B100": (23.55, 0.4961), "Set14": (23.28, 0.5289), "Set5": (24.42, 0.6119)},
        4: {"B100": (22.83, 0.4841), "Set14": (22.39, 0.5120), "Set5": (23.33, 0.5977)},
    },
    ("KXNet", 2, 15): {
        2: {"B100": (26.87, 0.6959), "Set14": (27.59, 0.7422), "Set5": (29.93, 0.8449)},
        3: {"B100": (25.99, 0.6585), "Set14": (26.56, 0.7063), "Set5": (28.64, 0.8178)},
        4: {"B100": (25.30, 0.6296), "Set14": (25.78, 0.6792), "Set5": (27.66, 0.7977)},
    },
}

# Table 3: Set14, setting 2, ×2, σn = 0: PSNR after S stages (S = 0 is bicubic)
STAGE_CURVE = {0: 25.74, 5: 29.91, 10: 30.57, 17: 30.96, 19: 31.14, 21: 31.14}


def paper_value(method: str, setting: int, noise: float, scale: int, set_name: str) -> tuple[float, float] | None:
    """The published (PSNR, SSIM) of a cell, or None where the paper has no such cell."""
    row = _TABLE.get((method, setting, int(noise)))
    if row is None:
        return None
    return row.get(scale, {}).get(set_name)
