"""The Python API: ``kxnet.super_resolve(image)`` and the model lookup the CLI shares.

>>> import kxnet
>>> result = kxnet.super_resolve("photo.png", scale=4)        # doctest: +SKIP
>>> result.image.shape, result.kernel.shape, result.info["kernel"]["sigma_x"]  # doctest: +SKIP

Everything about layouts, tiles and kernels is :class:`~kxnet.inference.upscaler.Upscaler`'s;
this module turns paths, NumPy arrays and PIL images into :class:`~kxnet.io.Image` and back,
and names models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SRResult", "ScaleMismatchError", "MIN_INPUT_SIDE", "default_model_name", "open_model",
           "super_resolve"]

MIN_INPUT_SIDE = 4          # LR images smaller than 4×4 are refused: there is nothing to restore
_cache: dict = {}


def default_model_name(scale: int) -> str:
    """The shipped weights used when no model is named: setting 2 at the scale."""
    return f"kxnet_x{scale}.setting2"


class ScaleMismatchError(ValueError):
    """The checkpoint's scale is not the one asked for."""

    def __init__(self, file: str, model_scale: int, asked: int):
        self.file, self.model_scale, self.asked = file, model_scale, asked
        super().__init__(f"{file}: checkpoint is ×{model_scale} but scale {asked} was asked")


def open_model(model=None, scale: int | None = None, device="cpu"):
    """A model and a description of where it came from: ``(model, meta)``.

    ``model`` is a shipped weights name (see ``kxnet models``), a checkpoint path, a model
    instance, or ``None`` for :func:`default_model_name` at ``scale`` (×4 if not given). A
    ``scale`` that differs from the checkpoint's raises :class:`ScaleMismatchError`.
    ``meta`` holds the name, file, SHA-256 and config, for reports and sidecars.
    """
    from .io import file_sha256
    import torch.nn as nn

    from .models import load_model
    from .models.loading import locate_weights, shipped_models

    if isinstance(model, nn.Module):
        net, meta = model, {"name": None, "file": None, "sha256": None}
    else:
        spec = default_model_name(scale or 4) if model is None else model
        path, name = locate_weights(spec)   # unknown names, missing files, SHA-256 mismatches fail here
        sha = shipped_models()[name].get("sha256") if name else None
        net = load_model(path, device=device)   # broken files fail here
        meta = {"name": name or path.stem, "file": str(path), "sha256": sha or file_sha256(path)}
    if scale is not None and net.config.scale != scale:
        raise ScaleMismatchError(meta["file"] or "model", net.config.scale, scale)
    meta.update(net.config.to_dict())
    return net, meta


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
                  kernel=None) -> SRResult:
    """Super-resolve one image with KXNet, estimating its blur kernel (or using ``kernel``).

    ``image_or_path``: a file path, a NumPy array (H×W grey or H×W×3/4, uint8/uint16/float in
    [0, 1]) or a PIL image. ``model``: a shipped name, a checkpoint path or a model instance (default:
    the setting-2 weights for ``scale``); ``scale=None`` takes the model's. ``device``:
    ``"cpu"``, ``"cuda"`` or ``None``/``"auto"``. ``tile``: tile side in LR pixels (``None``
    default, ``0`` never tile). ``kernel``: a p×p array (or a ``.npy``/image file) for
    non-blind super-resolution. Loaded models are cached between calls.
    """
    from .inference.upscaler import Upscaler, load_kernel, resolve_device
    from .io import read_image

    dev = resolve_device(device)
    key = (model if isinstance(model, (str, os.PathLike)) or model is None else id(model), scale, str(dev))
    if key in _cache:
        net, meta = _cache[key]
    else:
        net, meta = open_model(model, scale, device=dev)
        _cache.clear()
        _cache[key] = (net, meta)

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

    if isinstance(kernel, (str, os.PathLike)):
        kernel = load_kernel(kernel, net.config.kernel_size)
    up = Upscaler(net, dev, tile=tile)
    out, k, info, _ = up.run(img, kernel=kernel)
    info["model"] = {key_: meta[key_] for key_ in ("name", "file", "sha256", "scale", "setting", "stages",
                                                   "kernel_size", "mode") if key_ in meta}
    return SRResult(image=_to_array(out, dtype), kernel=k, info=info)
