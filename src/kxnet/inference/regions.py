"""A kernel per region, for photos blurred unevenly (depth of field, motion in part of the frame).

The model's blind forward is run on overlapping square crops laid on a grid over the LR photo
(stride half a crop); each crop gives its per-stage kernels K¹…K^T. The grid is smoothed — every
crop's kernels become a Gaussian-weighted mean of its neighbours' — so that neighbouring regions
cannot disagree sharply, and each tile of the image steps then takes the kernels interpolated
(bilinearly, per stage) at its centre. A tile's X-steps use one kernel, so the blur can vary
from tile to tile, and the blended tiles show no seam because their kernels vary smoothly.

Whether it pays is measured (docs/photo.md, "A kernel per region"): on a photo blurred
uniformly, the crops' estimates differ only by their noise, and the upscaler's one-kernel path
(the centre crop's estimate) is used instead (:attr:`RegionKernels.spread` below
:func:`uniform_spread` of the scale).

Deciding is made cheap first: ``auto`` estimates only a few *probe* crops, the most textured
of each quarter of the grid (:func:`probe_cells`, as many as a tenth of the photo's area pays
for, at least two),
and where they agree (their spread below :func:`probe_spread` of the scale) the photo gets one
kernel without the rest of the grid. Most photos are blurred uniformly and stop there; where the
probes disagree the grid is completed (the probes' estimates reused) and decided as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .tiling import tile_starts

__all__ = ["DEFAULT_REGION", "RegionKernels", "cell_texture", "draw_kernel_map", "kernel_spread", "probe_cells",
           "probe_spread", "region_starts", "uniform_spread"]

DEFAULT_REGION = 64      # LR pixels per region crop side (the size the rule below was measured at)
SMOOTHING = 1.0          # σ of the Gaussian over the grid, in grid steps
# The spread below which a photo counts as uniformly blurred, per scale: midway between the
# largest spread of a uniformly blurred photo (four Set14 photos and a wallpaper, each under all
# 8 setting-2 test kernels: benchmarks/region_spreads.py) and the smallest of an unevenly blurred
# one (the four Set14 photos' split and ramp scenes: benchmarks/region_kernels.py), with the
# shipped setting-2 models at 64-pixel regions: ×2 0.425 and 0.44, ×3 0.325 and 0.38, ×4 0.187
# and 0.20 (docs/photo.md). Narrow kernels spread most; spreads shrink with the kernel's support
# (11, 15, 21 pixels), hence one value per scale. The margins are thin: a photo whose spread
# lies near its threshold may be classed either way; --regions on/off overrides auto.
_UNIFORM_SPREAD = {2: 0.43, 3: 0.35, 4: 0.19}


# The probes' spread below which the grid is not completed, per scale, from the two-probe spreads
# of benchmarks/region_spreads.py (docs/photo.md): ×2 midway between uniformly blurred photos'
# largest (0.422) and unevenly blurred scenes' smallest (0.486); ×4 has no gap (uniform up to
# 0.216, uneven down to 0.172, lenna's ramp, whose regions gain least): at 0.20 one uniform
# photo-kernel pair of 40 still pays for the grid and that ramp keeps one kernel. ×3: the grid's
# threshold, below every uneven scene's probes (0.366 up) and above all but one uniform pair (0.365).
_PROBE_SPREAD = {2: 0.45, 3: 0.35, 4: 0.20}
PROBE_AREA_SHARE = 0.10     # of the photo's area, what the probe crops may cost at most (≥ 2 crops)
_PROBE_ORDER = ((0, 0), (-1, -1), (0, -1), (-1, 0))     # quarters: top-left and bottom-right first


def uniform_spread(scale: int) -> float:
    """The :attr:`RegionKernels.spread` below which ``auto`` uses one kernel at ``scale``."""
    return _UNIFORM_SPREAD[scale]


def probe_spread(scale: int) -> float:
    """The spread of the probe crops below which ``auto`` decides for one kernel at once."""
    return _PROBE_SPREAD[scale]


def probe_cells(lr: torch.Tensor, size: int) -> list[tuple[int, int]]:
    """The grid cells (row, column) ``auto`` estimates first on the LR photo ``lr`` (…×h×w): in
    each quarter of the grid the most textured cell (flat crops give unreliable kernels, which
    agree or disagree by chance), top-left and bottom-right quarters first so that each pair
    spans both axes; as many as :data:`PROBE_AREA_SHARE` of the photo's area pays for in crops
    of ``size``, at least two."""
    h, w = lr.shape[-2:]
    ys, xs = region_starts(h, size), region_starts(w, size)
    ny, nx = len(ys), len(xs)
    count = max(2, int(PROBE_AREA_SHARE * h * w / size ** 2))
    texture = cell_texture(lr, ys, xs, size)
    # the halves leave out a middle row/column, so that a pair always spans both axes
    rows = {0: range(0, max(1, ny // 2)), -1: range(min(ny - 1, (ny + 1) // 2), ny)}
    cols = {0: range(0, max(1, nx // 2)), -1: range(min(nx - 1, (nx + 1) // 2), nx)}
    cells: list[tuple[int, int]] = []
    for qi, qj in _PROBE_ORDER:
        quarter = [(i, j) for i in rows[qi] for j in cols[qj] if (i, j) not in cells]
        if quarter:
            cells.append(max(quarter, key=lambda c: texture[c]))
    return cells[:count]


def cell_texture(lr: torch.Tensor, ys: list[int], xs: list[int], size: int) -> np.ndarray:
    """The mean absolute gradient of each grid cell's crop (ny×nx): how much there is to read a
    blur from."""
    y = lr.reshape(-1, *lr.shape[-2:]).float().mean(dim=0)
    grad = torch.zeros_like(y)
    grad[:, :-1] += (y[:, 1:] - y[:, :-1]).abs()
    grad[:-1, :] += (y[1:, :] - y[:-1, :]).abs()
    return np.array([[float(grad[y0:y0 + size, x0:x0 + size].mean()) for x0 in xs] for y0 in ys])


def kernel_spread(finals: torch.Tensor) -> float:
    """How much N kernels (N×p×p) disagree: the mean unit-sum L1 of each to their mean kernel."""
    mean = _normalise(finals.mean(dim=0))
    return float((finals - mean).abs().sum(dim=(-2, -1)).mean())


def region_starts(length: int, size: int) -> list[int]:
    """Starts of crops of ``size`` covering ``[0, length)`` at a stride of at most half a crop."""
    return tile_starts(length, size, size - max(1, size // 2)) if length > size else [0]


def _normalise(k: torch.Tensor) -> torch.Tensor:
    k = k.clamp_min(0)
    return k / k.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


@dataclass
class RegionKernels:
    """Per-stage kernels on a grid of crops: ``kernels`` is ny×nx×T×p×p (smoothed), ``ys``/``xs``
    the crops' top-left LR rows/columns, ``size`` their side; ``raw`` the unsmoothed estimates."""

    kernels: torch.Tensor
    raw: torch.Tensor
    ys: list[int]
    xs: list[int]
    size: int

    @classmethod
    def from_estimates(cls, raw: torch.Tensor, ys: list[int], xs: list[int], size: int,
                       smoothing: float = SMOOTHING) -> "RegionKernels":
        ny, nx = raw.shape[:2]
        gy, gx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        smoothed = torch.empty_like(raw)
        for i in range(ny):
            for j in range(nx):
                w = np.exp(-((gy - i) ** 2 + (gx - j) ** 2) / (2 * smoothing ** 2)) if smoothing > 0 else \
                    ((gy == i) & (gx == j)).astype(float)
                w = torch.from_numpy(w / w.sum()).to(raw)
                smoothed[i, j] = _normalise((w[:, :, None, None, None] * raw).sum(dim=(0, 1)))
        return cls(smoothed, raw, ys, xs, size)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.kernels.shape[:2])

    def mean(self) -> list[torch.Tensor]:
        """One kernel per stage for the whole photo: the mean of every crop's (each 1×p×p)."""
        k = _normalise(self.raw.mean(dim=(0, 1)))
        return [k[t][None] for t in range(k.shape[0])]

    @property
    def spread(self) -> float:
        """How much the crops disagree: the mean unit-sum L1 of their final kernels to the mean
        kernel (0 = all the same; on uniformly blurred photos their estimation noise, up to the
        largest spreads behind :func:`uniform_spread`; more where the blur differs across the frame)."""
        return kernel_spread(self.raw[:, :, -1].flatten(0, 1))

    def spread_of(self, cells: list[tuple[int, int]]) -> float:
        """The spread of some cells' final kernels (the probes' decision, recomputed on a grid)."""
        return kernel_spread(torch.stack([self.raw[i, j, -1] for i, j in cells]))

    def at(self, y: float, x: float) -> list[torch.Tensor]:
        """The per-stage kernels at LR position (y, x): bilinear between the crops' centres
        (held constant beyond the outermost ones), each 1×p×p."""
        def locate(v: float, starts: list[int]) -> tuple[int, int, float]:
            centres = [s + self.size / 2 for s in starts]
            if len(centres) == 1 or v <= centres[0]:
                return 0, 0, 0.0
            if v >= centres[-1]:
                return len(centres) - 1, len(centres) - 1, 0.0
            i = max(k for k in range(len(centres) - 1) if centres[k] <= v)
            return i, i + 1, (v - centres[i]) / (centres[i + 1] - centres[i])

        i0, i1, fy = locate(y, self.ys)
        j0, j1, fx = locate(x, self.xs)
        g = self.kernels
        k = ((1 - fy) * ((1 - fx) * g[i0, j0] + fx * g[i0, j1]) + fy * ((1 - fx) * g[i1, j0] + fx * g[i1, j1]))
        k = _normalise(k)
        return [k[t][None] for t in range(k.shape[0])]

    def describe(self, scale: int) -> list[dict]:
        """Each region's box (LR pixels) and the Gaussian fit of its final (smoothed) kernel."""
        from ..metrics import gaussian_fit

        out = []
        for i, y in enumerate(self.ys):
            for j, x in enumerate(self.xs):
                fit = gaussian_fit(self.kernels[i, j, -1].cpu().numpy())
                out.append({"row": i, "col": j, "x": x, "y": y, "width": self.size, "height": self.size,
                            **{k: fit[k] for k in ("sigma_x", "sigma_y", "theta_deg")}})
        return out


def draw_kernel_map(rgb: np.ndarray, regions: RegionKernels, width: int = 768) -> np.ndarray:
    """The estimated kernels drawn as a grid over a thumbnail of the photo (H×W×3 uint8): each
    region's final kernel, scaled to its peak, in a square at the region's centre."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    from ..io import to_uint8
    from ..kernels import kernel_to_image

    h, w = rgb.shape[:2]
    f = width / w
    thumb = PILImage.fromarray(to_uint8(rgb)).resize((width, max(1, round(h * f))), PILImage.Resampling.LANCZOS)
    thumb = PILImage.blend(thumb, PILImage.new("RGB", thumb.size, (0, 0, 0)), 0.35)   # kernels stand out
    ny, nx = regions.shape
    side = max(8, int(min(regions.size * f / 2, thumb.width / (nx + 1), thumb.height / (ny + 1))))
    draw = ImageDraw.Draw(thumb)
    for i, y in enumerate(regions.ys):
        for j, x in enumerate(regions.xs):
            k = kernel_to_image(regions.kernels[i, j, -1].cpu().numpy(), size=side)
            tile = PILImage.fromarray(k).convert("RGB").resize((side, side), PILImage.Resampling.NEAREST)
            cx, cy = (x + regions.size / 2) * f, (y + regions.size / 2) * f
            box = (int(cx - side / 2), int(cy - side / 2))
            thumb.paste(tile, box)
            draw.rectangle([box[0], box[1], box[0] + side - 1, box[1] + side - 1], outline=(255, 255, 255))
    return np.asarray(thumb)
