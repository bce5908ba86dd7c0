"""Benchmark test sets exactly as the paper's protocol makes them (docs/protocol.md, "Test sets").

Every HR image is modcropped and degraded by each of the setting's 8 benchmark kernels, so
Set5 gives 40 LR/HR pairs. The folder holds ``HR/`` (modcropped, once per image), ``LR/``,
``kernels/`` (.npy and a visible .png) and ``manifest.json``, which lists every pair and every
parameter. Nothing machine-specific goes in (no absolute paths, no dates), so the same
command writes the same bytes anywhere.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..io import (ImageError, atomic_write_json, file_sha256, from_tensor, list_images, read_image, to_tensor,
                  to_uint8, write_image)
from ..kernels import benchmark_kernels, kernel_size, kernel_to_image
from . import degrade, modcrop
from .photo import PhotoDegradation, degrade_photo, parse_degradation

MANIFEST = "manifest.json"
FORMAT = "kxnet-testset/1"


def _noise_tag(noise: float) -> str:
    # the release writes "noise0" for a disabled noise and the float otherwise
    return "noise0" if noise == 0 else f"noise{float(noise)}"


def lr_name(setting: int, kernel_tag: str, noise: float, image_name: str, extra: str = "") -> str:
    """The release's LR file name (``sig…_{name}.png``, docs/protocol.md); ``extra`` names degradations
    beyond the paper (``…_noise5.0_jpeg75_{name}.png``)."""
    extra = f"{extra}_" if extra else ""
    if setting == 1:
        return f"{kernel_tag}_{extra}{image_name}.png"
    return f"{kernel_tag}_{_noise_tag(noise)}_{extra}{image_name}.png"


def load_hr(path: str | Path, scale: int) -> torch.Tensor:
    """An HR image as the protocol uses it: 3×H×W float32 on the 8-bit grid, modcropped."""
    return modcrop(to_tensor(to_uint8(read_image(path).rgb))[0], scale)


def synthesise(hr: str | Path | Sequence[str | Path], out_dir: str | Path, setting: int, scale: int,
               noise: float | str | PhotoDegradation = 0.0, seed: int = 0, overwrite: bool = False,
               progress: bool = True) -> dict:
    """Write a benchmark set to ``out_dir`` and return its manifest.

    ``noise`` is the paper's white noise σ, or a degradation beyond the paper
    (:func:`~kxnet.degrade.photo.parse_degradation`: ``"5+jpeg75"``, ``"cam+jpeg90"``).

    ``hr`` is a folder (all its images) or a list of HR image files (a subset, e.g. for a
    validation set), processed in sorted order either way. The set is built in a temporary folder beside ``out_dir`` and moved into place only when
    complete, so a failure never leaves a half-written set. The noise generator is re-seeded
    with ``seed + kernel index`` before each kernel, as the release re-seeds per θ.
    """
    out_dir = Path(out_dir)
    how = parse_degradation(noise)
    noise = how.noise
    if setting == 1 and not how.is_paper:
        raise ValueError("setting 1 is the paper's noise-free protocol; degradations beyond it use --setting 2")
    if setting == 1 and noise:
        raise ValueError("setting 1 is noise-free; use --setting 2 for noisy sets")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir}: output folder is not empty (use --overwrite)")
    if isinstance(hr, (str, Path)):
        hr_folder = Path(hr)
        sources = list_images([hr_folder], recursive=False)
        if not sources:
            raise ImageError(str(hr_folder), "no images found")
    else:
        sources = sorted(Path(p) for p in hr)
        if not sources:
            raise ValueError("no HR images given")
        hr_folder = sources[0].parent
    kernels = benchmark_kernels(setting, scale)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for sub in ("HR", "LR", "kernels"):
            (tmp / sub).mkdir()
        kernel_entries = []
        for k in kernels:
            np.save(tmp / "kernels" / f"{k.tag}.npy", k.kernel)
            write_image(tmp / "kernels" / f"{k.tag}.png", kernel_to_image(k.kernel))
            kernel_entries.append({"tag": k.tag, "params": k.params, "npy": f"kernels/{k.tag}.npy",
                                   "png": f"kernels/{k.tag}.png"})

        images, hrs = [], []
        for src in sources:
            hr = load_hr(src, scale)
            name = src.stem
            write_image(tmp / "HR" / f"{name}.png", to_uint8(from_tensor(hr)))
            images.append({"name": name, "source": src.name, "source_sha256": file_sha256(src),
                           "hr": f"HR/{name}.png", "hr_size": [hr.shape[-2], hr.shape[-1]]})
            hrs.append(hr)

        pairs = []
        bar = tqdm(total=len(kernels) * len(hrs), desc=f"synth x{scale} setting {setting}", unit="pair",
                   disable=not progress)
        for ki, k in enumerate(kernels):
            gen = torch.Generator().manual_seed(seed + ki)
            kt = torch.from_numpy(k.kernel)
            for meta, hr in zip(images, hrs):
                lr = degrade(hr, kt, scale, noise, gen) if how.is_paper else degrade_photo(hr, kt, scale, how, gen)
                name = lr_name(setting, k.tag, noise, meta["name"], how.extra_tag)
                write_image(tmp / "LR" / name, to_uint8(from_tensor(lr)))
                pairs.append({"lr": f"LR/{name}", "hr": meta["hr"], "kernel": f"kernels/{k.tag}.npy",
                              "kernel_tag": k.tag})
                bar.update()
        bar.close()
        manifest = {
            "format": FORMAT,
            "kxnet_version": __version__,
            "setting": setting,
            "scale": scale,
            "noise": float(noise),
            "seed": seed,
            "kernel_size": kernel_size(setting, scale),
            "hr_folder": hr_folder.name,
            "protocol": "docs/protocol.md: modcrop, reflect-padded correlation, top-left decimation, "
                        "noise, clamp, 8-bit rounding",
            **({} if how.is_paper else {"degradation": how.spec, "photo": how.to_dict()}),
            "kernels": kernel_entries,
            "images": images,
            "pairs": pairs,
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def load_manifest(set_dir: str | Path) -> dict:
    import json

    path = Path(set_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{set_dir}: not a benchmark set (no {MANIFEST}; make one with `kxnet synth`)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown set format {manifest.get('format')!r}")
    return manifest
