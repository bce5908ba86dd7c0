"""The Python API: ``kxnet.super_resolve(image)``, ``kxnet.super_resolve_folder(inputs, output)``.

>>> import kxnet
>>> result = kxnet.super_resolve("photo.png", scale=4)        # doctest: +SKIP
>>> result.image.shape, result.kernel.shape, result.info["kernel"]["sigma_x"]  # doctest: +SKIP
>>> done = kxnet.super_resolve_folder("photos/", "out", scale=4)   # doctest: +SKIP
>>> done.written, done.skipped, done.failures                      # doctest: +SKIP

Models are named through :func:`kxnet.models.resolve`; everything about layouts, tiles and
kernels is :class:`~kxnet.inference.upscaler.Upscaler`'s and :mod:`kxnet.inference.job`'s (the
code ``kxnet sr`` and the demo run too), and a folder of inputs is :mod:`kxnet.inference.folder`'s
job (``kxnet sr``'s: the same outputs, sidecars, skips and failures). This module turns paths,
NumPy arrays and PIL images into :class:`~kxnet.io.Image` and back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SRResult", "super_resolve", "super_resolve_folder"]

_cache: dict = {}       # the last resolved model, so repeated calls neither reload nor re-optimise it
_upscalers: dict = {}   # the last upscaler (its backend: compiled graphs) for the same arguments


# --------------------------------------------------------------------------- conversions


def _from_pil(im):
    from PIL import ImageOps

    from .io import Image

    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float32) / 65535.0
        return Image(rgb=np.repeat(arr[..., None], 3, axis=2), mode="L", bit_depth=16)
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    return _from_array(np.asarray(im), mode=im.mode)


def _from_array(arr: np.ndarray, mode: str | None = None):
    from .io import Image

    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        channels = 1
    elif arr.ndim == 3 and arr.shape[2] in (2, 3, 4):
        channels = arr.shape[2]
    else:
        raise ValueError(f"expected an H×W grey or H×W×3/4 colour image, got shape {arr.shape}")
    if arr.dtype in (np.uint8, np.uint16):
        bit_depth = 16 if arr.dtype == np.uint16 else 8
        values = arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    elif np.issubdtype(arr.dtype, np.floating):
        bit_depth = 8
        values = arr.astype(np.float32)
    else:
        raise ValueError(f"expected a uint8, uint16 or float image, got dtype {arr.dtype}")
    if channels < 3:
        values = values[..., None] if channels == 1 else values
        rgb = np.repeat(values[..., :1], 3, axis=2)
    else:
        rgb = values[..., :3]
    alpha = values[..., -1].copy() if channels in (2, 4) else None
    mode = mode or ("L", "LA", "RGB", "RGBA")[channels - 1]
    return Image(rgb=np.ascontiguousarray(rgb), alpha=alpha, mode=mode, bit_depth=bit_depth)


def _to_array(img, dtype) -> np.ndarray:
    """An output :class:`Image` as an array in the source's layout and dtype."""
    from .io import quantize, to_planes

    out = to_planes(img, img.mode)
    out = out[..., 0] if out.shape[-1] == 1 else out
    if np.issubdtype(dtype, np.floating):
        return np.clip(out, 0.0, 1.0).astype(dtype, copy=False)

    return quantize(out, 16 if dtype == np.uint16 else 8)


# ---------------------------------------------------------------------------------- API


def _resolved(model, scale, dev):
    """``(cache key, the resolved model)``, resolved once for the same arguments."""
    from .models import resolve

    key = (model if isinstance(model, (str, os.PathLike)) or model is None else id(model), scale, str(dev))
    if key not in _cache:
        _cache.clear()
        _cache[key] = resolve(model, scale, device=dev)
    return key, _cache[key]


@dataclass
class SRResult:
    """``image``: the super-resolved array in the input's layout and dtype (H×W grey, H×W×3
    RGB, H×W×4 RGBA; uint8, uint16 or float32 in [0, 1]); ``kernel``: the p×p kernel
    estimate (sums to 1), or None for a model that estimates no HR blur kernel (DCLS's
    estimate lives in LR space); ``info``: what was done (model, sizes, tiling, kernel fit,
    seconds)."""

    image: np.ndarray
    kernel: np.ndarray | None
    info: dict = field(default_factory=dict)

    def to_pil(self):
        """The image as a PIL image (16-bit greyscale as ``I;16``; 16-bit colour is reduced to 8)."""
        from PIL import Image as PILImage

        arr = self.image
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
        if arr.dtype == np.uint16:
            if arr.ndim == 2:
                return PILImage.fromarray(arr)  # Pillow makes a 2-D uint16 array I;16
            arr = (arr // 257).astype(np.uint8)
        return PILImage.fromarray(arr)


def super_resolve(image_or_path, scale: int | None = 4, model=None, device=None, tile: int | None = None,
                  kernel=None, regions: str = "auto", backend: str = "auto", jpeg_quality="auto") -> SRResult:
    """Super-resolve one image, estimating its blur kernel (or using ``kernel``).

    ``image_or_path``: a file path, a NumPy array (H×W grey or H×W×3/4, uint8/uint16/float in
    [0, 1]) or a PIL image. ``model``: anything :func:`kxnet.models.resolve` takes — a shipped
    name, a checkpoint path, a module — or None for the model the input's degradation estimate
    routes it to at ``scale`` (see ``jpeg_quality``); ``scale=None`` takes the model's. ``device``: ``"cpu"``, ``"cuda"`` or
    ``None``/``"auto"``. ``tile``: tile side in LR pixels (``None`` default, ``0`` never tile).
    ``kernel``: a p×p array (or a ``.npy``/image file) for non-blind super-resolution.
    ``regions``: a kernel per region of an unevenly blurred photo — ``"auto"`` (where the photo
    is large enough and its regions disagree), ``"on"`` or ``"off"``; ``info["regions"]`` then
    lists each region's kernel fit. ``backend``: ``"auto"`` (with the ``openvino`` extra, OpenVINO
    in bf16 on a CPU with bf16, its int8 graphs elsewhere for a shipped model measured within
    0.05 dB; else PyTorch), ``"torch"``, ``"openvino"`` or ``"openvino-int8"``; ``info["backend"]``
    says which ran. ``jpeg_quality``: the input's JPEG history, ``"auto"``
    (read from a JPEG file's tables or estimated from the pixels), ``"none"`` or a quality; with
    ``model=None`` an input with a JPEG history goes to the scale's photo model, any other to the
    paper's model (``info["degradation"]``: the estimate and which model it chose). The models
    are resolved once and kept between calls with the same arguments.
    """
    from .inference.job import run_job
    from .inference.routing import router_for
    from .inference.upscaler import MIN_INPUT_SIDE, Upscaler, load_kernel, resolve_device
    from .io import read_image

    dev = resolve_device(device)
    key, resolved = _resolved(model, scale, dev)

    dtype = np.uint8
    if isinstance(image_or_path, (str, os.PathLike)):
        img = read_image(image_or_path, min_size=MIN_INPUT_SIDE)
        dtype = np.uint16 if img.bit_depth == 16 else np.uint8
    elif isinstance(image_or_path, np.ndarray):
        img = _from_array(image_or_path)
        dtype = image_or_path.dtype if image_or_path.dtype in (np.uint8, np.uint16) else np.float32
    else:
        try:
            from PIL import Image as PILImage
        except ImportError:  # pragma: no cover
            PILImage = None
        if PILImage is None or not isinstance(image_or_path, PILImage.Image):
            raise TypeError(f"expected a path, a NumPy array or a PIL image, got {type(image_or_path).__name__}")
        img = _from_pil(image_or_path)
        dtype = np.uint16 if img.bit_depth == 16 else np.uint8

    if min(img.height, img.width) < MIN_INPUT_SIDE:
        raise ValueError(f"image too small ({img.width}×{img.height}; at least "
                         f"{MIN_INPUT_SIDE}×{MIN_INPUT_SIDE} needed)")
    source = str(kernel) if isinstance(kernel, (str, os.PathLike)) else None
    if source is not None:
        kernel = load_kernel(kernel, resolved.config.kernel_size)
    key = (key, tile, regions, backend, jpeg_quality)
    if _upscalers.get("key") != key:     # an OpenVINO runner compiles per input size: keep it
        _upscalers.update(key=key, router=router_for(
            resolved, lambda m: Upscaler(m, dev, tile=tile, regions=regions, backend=backend),
            given=model is not None, jpeg_quality=jpeg_quality))
    job = run_job(None, img, kernel=kernel, kernel_source=source, router=_upscalers["router"])
    info = dict(job.info)
    info["degradation"] = job.degradation
    info["model"] = {k: job.model[k] for k in ("name", "file", "sha256", "arch", "scale", "setting", "stages",
                                               "kernel_size", "mode") if k in job.model}
    return SRResult(image=_to_array(job.result, dtype), kernel=job.kernel, info=info)


def super_resolve_folder(inputs, output="results", scale: int | None = 4, model=None, device=None,
                         tile: int | None = None, kernel=None, regions: str = "auto", backend: str = "auto",
                         jpeg_quality="auto", format: str = "png", overwrite: bool = False,
                         save_kernel: bool = False, progress: bool = False):
    """Super-resolve many photos (and videos) into the folder ``output``, as ``kxnet sr`` does.

    ``inputs``: a file, folder or glob pattern, or a list of them (a folder's sub-folders are
    kept below ``output``); ``model``, ``scale``, ``device``, ``tile``, ``kernel``, ``regions``,
    ``backend`` and ``jpeg_quality`` as :func:`super_resolve` takes them (without ``model``, each
    photo goes to the model its degradation estimate routes it to). Each photo becomes
    ``output/<stem>_x<s>.<format>`` with its JSON sidecar (``save_kernel``: and its kernel files);
    an output whose sidecar exists is skipped unless ``overwrite``, so an interrupted call resumes.
    Returns a :class:`~kxnet.inference.folder.FolderResult`: ``written`` and ``skipped`` as
    ``(input, output)`` pairs, ``failures`` as ``(input, one-line message)``. A bad input fails
    alone and never raises; a bad model, kernel or argument raises. One process (``kxnet sr``
    under ``torchrun`` shares a folder among several).
    """
    from .inference.folder import find_inputs, plan_folder, run_folder
    from .inference.routing import parse_jpeg_quality, router_for
    from .inference.upscaler import Upscaler, load_kernel, resolve_device
    from .io import IMAGE_EXTENSIONS

    if f".{format}" not in IMAGE_EXTENSIONS:
        raise ValueError(f"format {format!r}: expected one of {', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))}")
    parse_jpeg_quality(jpeg_quality)
    found = find_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    dev = resolve_device(device)
    _, resolved = _resolved(model, scale, dev)
    source = str(kernel) if isinstance(kernel, (str, os.PathLike)) else None
    if source is not None:
        kernel = load_kernel(kernel, resolved.config.kernel_size)
    router = router_for(resolved, lambda m: Upscaler(m, dev, tile=tile, regions=regions, backend=backend,
                                                     progress=progress),
                        given=model is not None, jpeg_quality=jpeg_quality)
    if kernel is not None and not router.upscaler(resolved.name).takes_hr_kernel:
        raise ValueError(f"kernel: a {resolved.arch.name} model takes no HR blur kernel")
    video_up = Upscaler(resolved, dev, tile=tile, regions="off", backend=backend)   # a kernel per shot
    plan = plan_folder(found, output, resolved.scale, format=format, overwrite=overwrite, kernel=kernel)
    return run_folder(plan, router, video_up, kernel=kernel, kernel_source=source, save_kernel=save_kernel,
                      progress=progress)
