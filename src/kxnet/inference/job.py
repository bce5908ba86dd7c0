"""One photo super-resolved, and the files that say what was done: the one code path behind
``kxnet sr``, ``kxnet.super_resolve`` and the demo page.

:func:`run_job` runs an :class:`~kxnet.inference.upscaler.Upscaler` on an image and keeps
everything a report needs; :func:`write_job` writes the result, the JSON sidecar and, on
request, the kernel (``.npy`` and a picture) and the stages strip — each atomically, and all of
them removed again if any fails, so a failure leaves no partial output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import Image

__all__ = ["Job", "run_job", "side_paths", "sidecar", "write_job"]


@dataclass
class Job:
    """``source`` super-resolved into ``result``; ``kernel`` is the p×p estimate (or the kernel
    used), None for a method with no HR kernel; ``info`` the upscaler's account of the run;
    ``output`` the model output of the whole image or of the kernel crop (for the stages
    strip), when asked for."""

    source: Image
    result: Image
    kernel: np.ndarray | None
    info: dict
    model: dict
    output: object = None
    kernel_source: str | None = None
    regions: object = None          # RegionKernels, where the photo was given a kernel per region
    degradation: dict | None = None  # the JPEG history and noise estimate, and how the model was chosen


def run_job(upscaler, image: Image, kernel=None, keep_stages: bool = False, kernel_source: str | None = None,
            router=None, route=None) -> Job:
    """Super-resolve ``image`` (blind, or with ``kernel``; ``kernel_source`` names where it
    came from for the sidecar). With a :class:`~kxnet.inference.routing.Router` the model
    follows the image's degradation estimate; ``route``, a choice already made by one (the demo
    needs the model before it runs), does the same. ``upscaler`` is then None."""
    if router is not None:
        route = router.pick(image)
    if route is not None:
        upscaler = route.upscaler
    result, k, info, output = upscaler.run(image, kernel=kernel, keep_output=keep_stages)
    degradation = route.record() if route is not None else None
    if degradation is not None:
        info["seconds"] = round(info["seconds"] + degradation["seconds"], 3)
    return Job(image, result, k, info, upscaler.resolved.meta(), output, kernel_source, upscaler.last_regions,
               degradation)


def side_paths(out: Path) -> dict[str, Path]:
    """The files written beside ``out`` (``photo_x4.png`` → ``photo_x4.json``, …)."""
    stem = out.with_suffix("")
    return {"json": stem.with_name(stem.name + ".json"),
            "kernel_npy": stem.with_name(stem.name + "_kernel.npy"),
            "kernel_png": stem.with_name(stem.name + "_kernel.png"),
            "kernel_map": stem.with_name(stem.name + "_kernel_map.png"),
            "stages": stem.with_name(stem.name + "_stages.png")}


_MODEL_FIELDS = ("name", "file", "sha256", "arch", "scale", "setting", "stages", "kernel_size", "mode")


def sidecar(job: Job, input_path, output_path, output_layout: tuple[str, int], files: dict) -> dict:
    """The JSON record of a job: versions, input and output, model, device, time, tiling and
    the kernel (its Gaussian fit, how it was obtained)."""
    from .. import __version__
    from ..metrics import FIT_CONVENTION

    info = dict(job.info)
    kinfo = dict(info.pop("kernel") or {})
    if kinfo.get("sigma_x") is not None:     # the fit's keys, stated as everywhere else
        kinfo["convention"] = f"sigma_x, sigma_y, theta_deg = σ₁, σ₂, θ: {FIT_CONVENTION}"
    kinfo.update(mode=info.pop("kernel_mode"), estimated_on=info.pop("kernel_estimated_on"), source=job.kernel_source,
                 regions=info.pop("regions", None))
    out_mode, out_depth = output_layout
    img, result = job.source, job.result
    record = {
        "kxnet_version": __version__,
        "input": {"path": str(input_path) if input_path else None, "width": img.width, "height": img.height,
                  "mode": img.mode, "bit_depth": img.bit_depth},
        "output": {"path": str(output_path) if output_path else None, "width": result.width,
                   "height": result.height, "mode": out_mode, "bit_depth": out_depth},
        "model": {key: job.model.get(key) for key in _MODEL_FIELDS},
        "scale": info.pop("scale"),
        "device": info.pop("device"),
        "precision": info.pop("precision"),
        "backend": info.pop("backend", None),
        "seconds": info.pop("seconds"),
        "tiling": {key: info.pop(key) for key in ("tiled", "tile", "tile_overlap", "tiles", "tile_grid",
                                                   "padded_to")},
        "kernel": kinfo,
        "degradation": job.degradation,
        "files": files,
    }
    if (out_mode, out_depth) != (result.mode, result.bit_depth):
        record["note"] = (f"{Path(output_path).suffix.lstrip('.') if output_path else 'the output'} stores "
                          f"{out_mode} {out_depth}-bit, not the input's {result.mode} {result.bit_depth}-bit")
    return record


def write_job(job: Job, out: Path, input_path=None, save_kernel: bool = False, stages: bool = False) -> dict:
    """Write ``out`` (format by its suffix), its sidecar and the asked-for extras; returns the
    sidecar. On any failure every file written so far is removed before the error propagates."""
    from ..io import atomic_path, atomic_write_json, output_layout, write_image
    from ..kernels import kernel_to_image
    from .regions import draw_kernel_map
    from .stages import render_stages

    side = side_paths(out)
    written: list[Path] = []
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_image(out, job.result))
        saved_kernel = save_kernel and job.kernel is not None   # no HR kernel estimate (DCLS): nothing to save
        if saved_kernel:
            with atomic_path(side["kernel_npy"]) as tmp:
                np.save(tmp, job.kernel.astype(np.float32))
            written.append(side["kernel_npy"])
            written.append(write_image(side["kernel_png"], kernel_to_image(job.kernel)))
        if saved_kernel and job.regions is not None:
            written.append(write_image(side["kernel_map"], draw_kernel_map(job.source.rgb, job.regions)))
        if stages and job.output is not None and job.output.stage_images:
            written.append(render_stages(job.output, side["stages"]))
        files = {"kernel_npy": str(side["kernel_npy"]) if saved_kernel else None,
                 "kernel_png": str(side["kernel_png"]) if saved_kernel else None,
                 "kernel_map": str(side["kernel_map"]) if side["kernel_map"] in written else None,
                 "stages": str(side["stages"]) if side["stages"] in written else None}
        record = sidecar(job, input_path, out, output_layout(out, job.result.mode, job.result.bit_depth), files)
        atomic_write_json(side["json"], record)
        written.append(side["json"])
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return record
