"""Pictures a person would look at: real photos, the input beside each model's result.

Every input is super-resolved by every model (failures are reported, not fatal); for the first
``rows`` photos that worked, a row shows the input (bicubic, as a viewer would enlarge it) and
each model's result at one display height, with the same region marked on each, and under
them that region zoomed and each model's estimated kernel with its Gaussian fit. Real photos
have no ground truth: the panel is for looking, not for scoring (docs/photo.md). A model given
as ``"auto"`` is what ``kxnet sr`` runs without ``--model``: each photo goes to the model its
degradation estimate picks, named in that column's label on each row.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

__all__ = ["busiest_window", "compare_panel"]

_GAP, _LABEL = 6, 16


def busiest_window(rgb: np.ndarray, size: int) -> tuple[int, int]:
    """The top-left (y, x) of the ``size``×``size`` window with the most gradient energy: where
    texture and edges are, so the zoom shows what super-resolution did (and what it sharpened)."""
    from ..io import luma

    g = luma(rgb.astype(np.float64))
    energy = np.zeros_like(g)
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    size = min(size, g.shape[0], g.shape[1])
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size])
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


@dataclass
class _Result:
    label: str
    rgb: np.ndarray
    kernel: np.ndarray | None
    fit: dict | None


def _fit_text(fit: dict | None) -> str:
    # ASCII only: Pillow's default font has no σ or θ
    from ..metrics import fit_label

    if not fit or fit.get("sigma_x") is None:
        return "no kernel estimate"
    return f"kernel {fit_label(fit, ascii=True)}"


def _row(title: str, results: list[_Result], height: int, zoom: int, zoom_px: int) -> PILImage.Image:
    from ..io import to_uint8
    from ..kernels import kernel_to_image

    full = [PILImage.fromarray(to_uint8(r.rgb)) for r in results]
    h, w = results[0].rgb.shape[:2]
    y0, x0 = busiest_window(results[0].rgb, zoom)
    size = min(zoom, h, w)
    shown_w = max(1, round(w * height / h))
    scale = shown_w / w
    tiles = []
    for im in full:
        shown = im.resize((shown_w, height), PILImage.Resampling.LANCZOS)
        ImageDraw.Draw(shown).rectangle([x0 * scale, y0 * scale, (x0 + size) * scale, (y0 + size) * scale],
                                        outline=(255, 40, 40), width=2)
        tiles.append(shown)
    crops = [im.crop((x0, y0, x0 + size, y0 + size)).resize((zoom_px, zoom_px), PILImage.Resampling.NEAREST)
             for im in full]
    kernels = [PILImage.fromarray(kernel_to_image(r.kernel, size=zoom_px)).convert("RGB")
               .resize((zoom_px, zoom_px), PILImage.Resampling.NEAREST) if r.kernel is not None else None
               for r in results]
    col_w = max(shown_w, zoom_px * 2 + _GAP)
    width = len(results) * (col_w + _GAP) + _GAP
    row = PILImage.new("RGB", (width, _LABEL * 3 + height + zoom_px + 3 * _GAP), "white")
    draw = ImageDraw.Draw(row)
    draw.text((_GAP, 2), title, fill="black")
    for i, r in enumerate(results):
        x = _GAP + i * (col_w + _GAP)
        draw.text((x, _LABEL + 2), r.label, fill="black")
        row.paste(tiles[i], (x, 2 * _LABEL))
        y = 2 * _LABEL + height + _GAP
        row.paste(crops[i], (x, y))
        if kernels[i] is not None:
            row.paste(kernels[i], (x + zoom_px + _GAP, y))
        draw.text((x, y + zoom_px + 2), _fit_text(r.fit) if i else "zoomed region", fill="black")
    return row


def _routed(label: str, router, img):
    """(label naming the model the router picked and why, the job) for one photo."""
    from .job import run_job

    route = router.pick(img)
    found = route.estimate.jpeg_quality
    why = f"JPEG q{found} found" if found is not None else "no JPEG history"
    return f"{label}: {route.upscaler.resolved.name} ({why})", run_job(None, img, route=route)


def compare_panel(inputs: list, models: list[tuple[str, object]], out: str | Path, rows: int = 4, height: int = 256,
                  zoom: int = 96, zoom_px: int = 192, device="auto", tile: int | None = None,
                  log=print) -> tuple[int, list[str]]:
    """Super-resolve every image of ``inputs`` (files, folders, globs) with every model of
    ``models`` (``(label, anything resolve() takes or "auto")``; all of one scale, which the
    fixed models set) and write the panel of the first ``rows`` photos to ``out`` (PNG,
    atomically). Returns (photos done, failures)."""
    from ..io import ImageError, atomic_path, list_images, read_image
    from ..physics import bicubic_upsample
    from .job import run_job
    from .routing import Router
    from .upscaler import MIN_INPUT_SIDE, Upscaler, resolve_device

    device = resolve_device(device)
    ups = [(label, None if model == "auto" else Upscaler(model, device, tile=tile)) for label, model in models]
    scales = {up.scale for _, up in ups if up is not None}
    if len(scales) != 1:
        raise ValueError(f"the models compared must share one scale (and at least one must be fixed, not auto), "
                         f"got ×{sorted(scales)}")
    (scale,) = scales
    if any(up is None for _, up in ups):
        # the fixed columns' upscalers serve the routed one where it picks the same model
        router = Router(scale, lambda name: Upscaler(name, device, tile=tile),
                        known={up.resolved.name: up for _, up in ups if up is not None})
    files, failures, panel_rows, done = [], [], [], 0
    for item in inputs:
        try:
            files += list_images([item])
        except ImageError as e:
            failures.append(str(e))
    for path in files:
        t0 = time.perf_counter()
        try:
            img = read_image(path, min_size=MIN_INPUT_SIDE)
            jobs = [(label, run_job(up, img)) if up is not None else _routed(label, router, img) for label, up in ups]
        except (ImageError, ValueError, RuntimeError, OSError) as e:
            failures.append(f"{path}: {' '.join(str(e).split())}")
            log(f"FAILED {failures[-1]}")
            continue
        done += 1
        fits = "; ".join(f"{label}: {_fit_text(job.info['kernel'])}" for label, job in jobs)
        log(f"{path.name:<24} {img.width}x{img.height} -> x{scale}  {time.perf_counter() - t0:6.1f} s  {fits}")
        if len(panel_rows) < rows:
            import torch

            lr = torch.from_numpy(np.ascontiguousarray(img.rgb, dtype=np.float32)).permute(2, 0, 1)[None]
            bicubic = bicubic_upsample(lr, scale)[0].clamp(0, 1).permute(1, 2, 0).numpy()
            results = [_Result("input (bicubic)", bicubic, None, None)]
            results += [_Result(label, job.result.rgb, job.kernel, job.info["kernel"]) for label, job in jobs]
            panel_rows.append(_row(f"{path.name} ({img.width}x{img.height}, x{scale})", results, height, zoom,
                                   zoom_px))
    if panel_rows:
        width = max(r.width for r in panel_rows)
        panel = PILImage.new("RGB", (width, _LABEL + sum(r.height for r in panel_rows)), "white")
        header = "kxnet on photos: " + ", ".join(f"{label} = {up.resolved.name if up else 'as kxnet sr picks'}"
                                                 for label, up in ups)
        ImageDraw.Draw(panel).text((_GAP, 2), header, fill="black")
        y = _LABEL
        for r in panel_rows:
            panel.paste(r, (0, y))
            y += r.height
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            panel.save(tmp, format="PNG")
        log(f"wrote {out} ({len(panel_rows)} rows)")
    log(f"{done} of {len(files)} images done")
    for f in failures:
        print(f"  {f}", file=sys.stderr)
    return done, failures
