"""Super-resolving whole photos: the one place that knows about layouts, sizes and tiles.

:class:`Upscaler` wraps a KXNet the way Real-ESRGAN's ``RealESRGANer`` wraps its network: the
network only ever sees a B×3×h×w float batch, and this class owns everything around it —

* **greyscale** sources are processed as RGB (three equal channels) and returned as ``L``;
* **alpha** is upscaled separately with the same bicubic as X⁰, clamped to [0, 1] and
  re-attached (the network has no alpha channel and a blur estimate from it makes no sense);
* **16-bit** sources stay 16-bit (the output :class:`~kxnet.io.Image` keeps ``bit_depth``);
* **tiny** images (a side under the architecture's ``min_input_side`` LR pixels) are padded by
  edge replication at the bottom/right and the output cropped back (the entry points refuse
  photos under :data:`MIN_INPUT_SIDE`: there is nothing to restore);
* **large** images are processed in overlapping tiles so memory stays bounded.

Tiling and the kernel
---------------------
KXNet estimates one blur kernel per image. Running every tile blind would give every tile its
own kernel (and, near tile edges, different images), so tiles would disagree. Instead:

1. an image that fits in one tile (both sides ≤ ``tile`` LR pixels) is run as the model's
   blind forward on the whole image — bit for bit with ``optimized=False``, to float32
   tolerance on the default fused path (:func:`kxnet.models.fast.optimize`);
2. otherwise the blind model is run once on the **centre crop** of the LR image of at most
   ``kernel_crop`` × ``kernel_crop`` pixels (default: the tile size, so memory stays within one
   tile's), and its per-stage kernels K¹…K^T are recorded;
3. every tile is then run **non-blind** with those per-stage kernels (stage t's X-step uses
   K^t, exactly as in the blind run), so all tiles share one consistent kernel estimate; the
   reported kernel is K^T of the crop. With a user-given kernel (non-blind mode), step 2 is
   skipped and every stage of every tile uses that kernel.

Tiles (``tile`` LR pixels square, the last ones shifted to end on the border) overlap their
neighbours by at least ``tile_overlap`` LR pixels, spread evenly. In each overlap band the two
tiles' outputs are cross-faded with complementary raised-cosine ramps (weights sum to one), so
there is no seam: the pixels a tile computes nearest its cut edge get the least weight
(:mod:`kxnet.inference.tiling`).

Defaults (:data:`DEFAULT_TILE` = 256, :data:`DEFAULT_OVERLAP` = 32 LR pixels) keep a ×4 run of
the paper-sized model on a 1000×1000 LR image on CPU within a few GB (docs/speed.md, "Memory").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import Image, ImageError, from_tensor, luma, read_image, to_tensor
from ..metrics import gaussian_fit as kernel_parameters
from ..models import resolve
from ..physics import bicubic_upsample
from .backends import choose
from .regions import (DEFAULT_REGION, RegionKernels, kernel_spread, probe_cells, probe_spread, region_starts,
                      uniform_spread)
from .tiling import _window_weights, tile_starts

__all__ = [
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "MIN_INPUT_SIDE",
    "REGION_MODES",
    "PRECISIONS",
    "Upscaler",
    "resolve_device",
    "prepare_kernel",
    "load_kernel",
    "kernel_parameters",
]

DEFAULT_TILE = 256          # LR pixels per tile side (0 or None … see Upscaler)
REGION_MODES = ("auto", "on", "off")
DEFAULT_OVERLAP = 32        # LR pixels shared by neighbouring tiles
MIN_INPUT_SIDE = 4          # kxnet sr, the API and the demo refuse smaller photos: nothing to restore
PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` → CUDA if available, else CPU; anything else as given (checked)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r} (use auto, cpu or cuda)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked but CUDA is not available on this machine")
    return dev


# ------------------------------------------------------------------------------ kernels


def prepare_kernel(kernel, size: int, name: str = "kernel") -> torch.Tensor:
    """A user kernel as a float32 ``size``×``size`` tensor summing to 1.

    It must be a finite, odd, square array no larger than the model's ``size``; a smaller odd
    kernel is zero-padded around its centre (which leaves the blur it describes unchanged).
    Negative taps are clipped to 0 (KXNet's own kernels are non-negative).
    """
    k = kernel.detach().cpu().double().numpy() if isinstance(kernel, torch.Tensor) else np.asarray(kernel)
    if k.ndim == 3 and k.shape[0] == 1:
        k = k[0]
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 != 1:
        raise ValueError(f"{name}: a kernel must be an odd square p×p array, got shape {k.shape}")
    if k.shape[0] > size:
        raise ValueError(f"{name}: kernel is {k.shape[0]}×{k.shape[0]} but this model uses "
                         f"{size}×{size} kernels (smaller odd kernels are zero-padded)")
    if not np.issubdtype(k.dtype, np.number) or not np.isfinite(k).all():
        raise ValueError(f"{name}: kernel has non-finite or non-numeric values")
    k = np.clip(k.astype(np.float64), 0.0, None)
    if k.sum() <= 0:
        raise ValueError(f"{name}: kernel has no positive weight")
    r = (size - k.shape[0]) // 2
    k = np.pad(k, r) / k.sum()
    return torch.from_numpy(k.astype(np.float32))


def load_kernel(path: str | Path, size: int) -> torch.Tensor:
    """A kernel file: ``.npy`` (p×p array) or an image (its grey values, normalised to sum 1)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "kernel file not found")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ImageError(path, f"not a readable .npy kernel ({' '.join(str(e).split())})") from None
    else:
        img = read_image(path)
        arr = luma(img.rgb.astype(np.float64))
    return prepare_kernel(arr, size, name=str(path))


# ----------------------------------------------------------------------------- upscaler


@dataclass
class _Plan:
    ys: list[int]
    xs: list[int]
    th: int
    tw: int

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


class Upscaler:
    """Run a model on :class:`~kxnet.io.Image` s of any size, layout and depth.

    ``model`` is anything :func:`kxnet.models.resolve` takes (a resolved model, a module, a
    shipped name or a file); what it can do is read from its architecture's descriptor.
    ``tile`` is the tile side in LR pixels (``None`` → :data:`DEFAULT_TILE`; ``0`` → never
    tile, the whole image in one forward however large). ``tile_overlap`` is the minimum
    overlap of neighbouring tiles in LR pixels; ``kernel_crop`` the side of the centre crop
    the kernel is estimated on for tiled images (``None`` → ``tile``). ``precision`` ``fp16``
    or ``bf16`` runs the network under CUDA autocast (CUDA only). ``progress`` shows a bar
    over the tiles of tiled images. ``optimized`` (default) runs the ``backend``
    (:func:`kxnet.inference.backends.choose`: ``"torch"``, the architecture's optimised path,
    built once per resolved model; ``"openvino"``; ``"auto"``); ``False`` keeps the plain module.
    """

    def __init__(self, model, device: str | torch.device | None = "auto", tile: int | None = None,
                 tile_overlap: int = DEFAULT_OVERLAP, kernel_crop: int | None = None,
                 precision: str = "fp32", progress: bool = False, optimized: bool = True,
                 regions: str = "auto", region_size: int = DEFAULT_REGION, backend: str = "torch"):
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision != "fp32" and self.device.type != "cuda":
            raise ValueError(f"precision {precision} needs a CUDA device (this run is on {self.device.type})")
        self.resolved = resolve(model, device=self.device)
        self.arch = self.resolved.arch
        self.min_side = max(self.arch.min_input_side, 1)
        tile = DEFAULT_TILE if tile is None else int(tile)
        if tile < 0 or (0 < tile < 2 * self.min_side):
            raise ValueError(f"tile must be 0 (no tiling) or at least {2 * self.min_side} LR pixels, got {tile}")
        if tile and not 0 <= tile_overlap <= tile // 2:
            raise ValueError(f"tile overlap must lie in 0…{tile // 2} for tile {tile}, got {tile_overlap}")
        self.tile = tile
        self.tile_overlap = int(tile_overlap)
        self.kernel_crop = int(kernel_crop) if kernel_crop else (tile or None)
        self.precision = precision
        self.progress = progress
        if optimized:
            chosen = choose(self.resolved, backend, self.device)
            self.model, self.backend = chosen.module, chosen.describe()
        else:
            self.model, self.backend = self.resolved.model, {"name": "torch", "precision": "fp32 plain"}
        self.scale = self.resolved.scale
        self.kernel_size = self.resolved.config.kernel_size
        # a method whose non-blind input is not an HR blur kernel (DCLS: an LR-space kernel)
        # cannot use a kernel the user gives
        self.takes_hr_kernel = self.arch.kernel_input == "hr"
        if regions not in REGION_MODES:
            raise ValueError(f"regions must be one of {REGION_MODES}, got {regions!r}")
        if region_size < 2 * self.min_side:
            raise ValueError(f"region size must be at least {2 * self.min_side} LR pixels, got {region_size}")
        self.regions = regions if self.arch.regional else "off"
        self.region_size = int(region_size)
        self.last_regions: RegionKernels | None = None   # the region kernels of the last run, if any

    # -- network ---------------------------------------------------------------------

    def _forward(self, y: torch.Tensor, kernel=None, stages: bool = False):
        """The network on ``y``; ``stages`` asks for every stage's image, which only the PyTorch
        module returns (an OpenVINO graph returns the last), so that one forward runs there."""
        y = y.to(self.device)
        model = self.resolved.runner if stages and self.backend["name"] != "torch" else self.model
        with torch.inference_mode():
            if self.precision == "fp32":
                return model(y, kernel=kernel)
            with torch.autocast("cuda", dtype=_AUTOCAST[self.precision]):
                return model(y, kernel=kernel)

    @staticmethod
    def _sr(out) -> np.ndarray:
        return from_tensor(out.sr.float())

    # -- public ----------------------------------------------------------------------

    def plan(self, height: int, width: int, tile: int | None = None, overlap: int | None = None) -> _Plan:
        """The tile grid for an LR image of this size (one window if it fits or tile is 0)."""
        tile = self.tile if tile is None else tile
        overlap = self.tile_overlap if overlap is None else overlap
        if not tile:
            return _Plan([0], [0], height, width)
        th, tw = min(tile, height), min(tile, width)
        return _Plan(tile_starts(height, tile, overlap), tile_starts(width, tile, overlap), th, tw)

    def _wants_regions(self, height: int, width: int) -> bool:
        """``on``: whenever a region fits; ``auto``: when the photo holds at least 2×2 region sizes
        (smaller photos measured better with one kernel: docs/photo.md)."""
        r = self.region_size
        if self.regions == "off" or min(height, width) < r:
            return False
        return self.regions == "on" or min(height, width) >= 2 * r

    def blind_kernels(self, image: Image) -> list[np.ndarray]:
        """The per-stage kernels (p×p each) of one blind forward on the whole of ``image`` —
        no tiles, no regions: one estimate for a crop (a video shot's frames use this)."""
        lr = to_tensor(image.rgb)
        h, w = lr.shape[-2:]
        ph, pw = max(h, self.min_side), max(w, self.min_side)
        if (ph, pw) != (h, w):
            lr = F.pad(lr, (0, pw - w, 0, ph - h), mode="replicate")
        out = self._forward(lr)
        stages = out.stage_kernels or ([out.kernel] if out.kernel is not None else [])
        return [k.detach().to("cpu", torch.float32).reshape(k.shape[-2:]).numpy() for k in stages]

    def _region_estimates(self, lr: torch.Tensor, cells: list[tuple[int, int]], known: dict, desc: str) -> dict:
        """The blind per-stage kernels (T×p×p) of the region crops at grid ``cells`` of ``lr``,
        added to ``known`` (cells already there are not estimated again)."""
        from tqdm import tqdm

        r = self.region_size
        ys, xs = region_starts(lr.shape[-2], r), region_starts(lr.shape[-1], r)
        todo = [c for c in cells if c not in known]
        for i, j in tqdm(todo, desc=desc, unit="region", leave=False, disable=not self.progress):
            out = self._forward(lr[..., ys[i]:ys[i] + r, xs[j]:xs[j] + r])
            known[i, j] = torch.stack([k[0].float() for k in out.stage_kernels])
        return known

    def estimate_regions(self, lr: torch.Tensor, known: dict | None = None) -> RegionKernels:
        """The blind per-stage kernels of every region crop of ``lr`` (1×3×h×w), smoothed;
        ``known`` holds estimates already made (the probes), by grid cell."""
        r = self.region_size
        ys, xs = region_starts(lr.shape[-2], r), region_starts(lr.shape[-1], r)
        cells = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
        known = self._region_estimates(lr, cells, dict(known or {}), "kernel regions")
        raw = torch.stack([torch.stack([known[i, j] for j in range(len(xs))]) for i in range(len(ys))])
        return RegionKernels.from_estimates(raw, ys, xs, r)

    def decide_regions(self, lr: torch.Tensor) -> tuple[RegionKernels | None, dict]:
        """Whether ``lr`` gets a kernel per region: ``on`` estimates the grid and uses it; ``auto``
        estimates the probe crops first and completes the grid only where they disagree.
        Returns the regions where they are used (else None) and the sidecar's account."""
        r = self.region_size
        h, w = lr.shape[-2:]
        grid = [len(region_starts(h, r)), len(region_starts(w, r))]
        info = {"grid": grid, "size": r, "probes": None, "probe_spread": None, "spread": None, "used": False}
        known: dict = {}
        if self.regions == "auto":
            cells = probe_cells(lr, r)
            known = self._region_estimates(lr, cells, known, "kernel probes")
            spread = kernel_spread(torch.stack([known[c][-1] for c in cells]))
            info["probes"], info["probe_spread"] = [list(c) for c in cells], round(spread, 4)
            if spread < probe_spread(self.scale):     # decided on the spread, not its rounding
                return None, info
        regions = self.estimate_regions(lr, known)
        info["spread"] = round(regions.spread, 4)
        info["used"] = self.regions == "on" or regions.spread >= uniform_spread(self.scale)
        if not info["used"]:
            return None, info
        info["regions"] = regions.describe(self.scale)
        return regions, info

    def run(self, image: Image, kernel=None, keep_output: bool = False):
        """Super-resolve ``image``; returns ``(Image, kernel, info, output)``.

        ``kernel`` (optional): a p×p array/tensor used at every stage (non-blind), or a list
        of T per-stage kernels. The returned kernel is the p×p float32 estimate (K^T; the
        regions' mean where they were estimated) or the kernel used, or None for a model that
        estimates no HR kernel (then ``info["kernel"]`` is None too). ``info`` describes the
        run (sizes, tiling, kernel fit, regions, seconds). ``output`` is the
        :class:`~kxnet.models.SROutput` of the whole image, or for a tiled image that of the
        kernel crop, when ``keep_output`` (else ``None``). After a run with region kernels,
        :attr:`last_regions` holds them (for the kernel map).
        """
        t0 = time.perf_counter()
        s = self.scale
        h, w = image.height, image.width
        if kernel is not None and not self.takes_hr_kernel:
            raise ValueError(f"a {self.arch.name} model takes no given blur kernel (its non-blind input "
                             "is not an HR blur kernel); run it blind")
        if kernel is not None:
            if isinstance(kernel, (list, tuple)):
                kernel = [prepare_kernel(k, self.kernel_size).to(self.device) for k in kernel]
            else:
                kernel = prepare_kernel(kernel, self.kernel_size).to(self.device)

        lr = to_tensor(image.rgb)
        ph, pw = max(h, self.min_side), max(w, self.min_side)
        if (ph, pw) != (h, w):
            lr = F.pad(lr, (0, pw - w, 0, ph - h), mode="replicate")
        self.last_regions, kernel_at, regions_info = None, None, None
        mode = "blind" if kernel is None else "given"
        plan = self.plan(ph, pw)
        if kernel is None and self._wants_regions(ph, pw):
            regions, regions_info = self.decide_regions(lr)
            if regions is not None:   # tiles of one region's size, each with the kernels at its centre
                self.last_regions = regions
                plan = self.plan(ph, pw, self.region_size, max(self.region_size // 4, 8))
                kernel_at, mode = regions.at, "regions"
                if self.tile != self.region_size:
                    regions_info["tile_note"] = (f"tiles of the region size ({self.region_size} LR px) instead of "
                                                 f"{self.tile or 'none'}: each takes its region's kernels")
            # else the one-kernel path, as with regions off: the mean of the crops' kernels is
            # wider than any of them and measured 0.05 dB below the centre crop's (docs/photo.md)
        info = {"device": str(self.device), "precision": self.precision, "backend": self.backend, "scale": s,
                "tiled": plan.count > 1, "tile": (plan.th if kernel_at else self.tile) or None,
                "tile_overlap": self.tile_overlap, "tiles": plan.count, "tile_grid": [len(plan.ys), len(plan.xs)],
                "padded_to": [pw, ph] if (ph, pw) != (h, w) else None, "kernel_mode": mode}

        output = None
        if kernel_at is not None:
            final_kernel = regions.mean()[-1]
            info["kernel_estimated_on"] = f"{regions.shape[0]}×{regions.shape[1]} regions of {self.region_size} px"
            sr = self._tiled(lr, plan, kernel_at=kernel_at)
        elif plan.count == 1:
            out = self._forward(lr, kernel, stages=keep_output)
            sr = self._sr(out)
            final_kernel = out.kernel[0] if out.kernel is not None else None
            info["kernel_estimated_on"] = "whole image" if kernel is None else None
            output = out if keep_output else None
            del out
        else:
            if kernel is None:
                ch, cw = min(self.kernel_crop, ph), min(self.kernel_crop, pw)
                y0, x0 = (ph - ch) // 2, (pw - cw) // 2
                crop_out = self._forward(lr[..., y0:y0 + ch, x0:x0 + cw], stages=keep_output)
                # the estimate in the form the model takes back (KXNet: its per-stage kernels)
                kernel = crop_out.condition if crop_out.condition is not None else \
                    [k.detach().clone() for k in crop_out.stage_kernels]
                final_kernel = crop_out.kernel[0] if crop_out.kernel is not None else None
                info["kernel_estimated_on"] = {"x": x0, "y": y0, "width": cw, "height": ch}
                output = crop_out if keep_output else None
                del crop_out
            else:
                final_kernel = (kernel[-1] if isinstance(kernel, list) else kernel)
                info["kernel_estimated_on"] = None
            sr = self._tiled(lr, plan, kernel)
        info["regions"] = regions_info

        if (ph, pw) != (h, w):
            sr = sr[: s * h, : s * w]
        np.clip(sr, 0.0, 1.0, out=sr)
        alpha = None
        if image.alpha is not None:
            a = torch.from_numpy(np.ascontiguousarray(image.alpha, dtype=np.float32))[None, None]
            alpha = bicubic_upsample(a, s)[0, 0].clamp_(0.0, 1.0).numpy()
        result = Image(rgb=sr, alpha=alpha, mode=image.mode, bit_depth=image.bit_depth, path=None, exif=image.exif)

        k = None  # a method without an HR kernel estimate (DCLS) reports none
        if final_kernel is not None:
            k = final_kernel.detach().to("cpu", torch.float32)
            k = (k[0] if k.dim() == 3 else k).numpy().copy()
        info.update(input_size=[w, h], output_size=[result.width, result.height], mode=image.mode,
                    bit_depth=image.bit_depth, kernel=kernel_parameters(k) if k is not None else None,
                    seconds=round(time.perf_counter() - t0, 3))
        return result, k, info, output

    def _tiled(self, lr: torch.Tensor, plan: _Plan, kernel=None, kernel_at=None) -> np.ndarray:
        """Blend the non-blind outputs of every tile into one HR array (H×W×3 float32); each
        tile takes ``kernel``, or ``kernel_at(y, x)`` at its centre (LR pixels)."""
        from tqdm import tqdm

        s = self.scale
        _, _, h, w = lr.shape
        acc = np.zeros((s * h, s * w, 3), np.float32)
        wy = [_window_weights(plan.ys, plan.th, i, h, s) for i in range(len(plan.ys))]
        wx = [_window_weights(plan.xs, plan.tw, j, w, s) for j in range(len(plan.xs))]
        with tqdm(total=plan.count, desc="tiles", unit="tile", leave=False,
                  disable=not self.progress) as bar:
            for i, y0 in enumerate(plan.ys):
                for j, x0 in enumerate(plan.xs):
                    k = kernel if kernel_at is None else kernel_at(y0 + plan.th / 2, x0 + plan.tw / 2)
                    out = self._forward(lr[..., y0:y0 + plan.th, x0:x0 + plan.tw], k)
                    tile = self._sr(out)
                    del out
                    tile *= wy[i][:, None, None] * wx[j][None, :, None]
                    acc[s * y0: s * y0 + tile.shape[0], s * x0: s * x0 + tile.shape[1]] += tile
                    bar.update()
        # The ramps of neighbours are complementary, so the weights already sum to one; divide
        # by the separable sums anyway so rounding never shows as a faint grid.
        sum_y = np.zeros(s * h, np.float32)
        sum_x = np.zeros(s * w, np.float32)
        for i, y0 in enumerate(plan.ys):
            sum_y[s * y0: s * y0 + wy[i].size] += wy[i]
        for j, x0 in enumerate(plan.xs):
            sum_x[s * x0: s * x0 + wx[j].size] += wx[j]
        acc /= sum_y[:, None, None]
        acc /= sum_x[None, :, None]
        return acc
