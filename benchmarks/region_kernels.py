"""A kernel per region against one kernel for the photo and the true kernels, on photos blurred
unevenly — and what it costs on photos blurred uniformly. Prints one table (docs/photo.md).

    python benchmarks/region_kernels.py                         # Set14 (HR ≥ 480 px), ×2 and ×4
    python benchmarks/region_kernels.py --scales 4 --sizes 48 64 --max-images 4

Scenes, each on every HR photo (modcropped), degraded with the setting-2 blur and decimation,
no noise:
* ``split``: the narrowest setting-2 test kernel (σ 0.8/1.6, θ 0°) on the left half of the LR
  image, the widest (σ 2.0/4.0, θ 90°) on the right (each half cut from the whole image
  degraded by its kernel);
* ``ramp``: an isotropic width that grows from σ 0.8 on the left to 3.6 on the right (each LR
  column blended linearly between the two nearest of 8 widths);
* ``uniform``: one kernel (σ₁ 4.0 / σ₂ 2.0 px at θ 135°: the generator's σx 2.0, σy 4.0, θ 45°) over the whole photo.

Methods: ``one`` (one kernel for the photo: today's rule, the centre crop's), ``regions`` (a
kernel per region, forced on; one row per region size), ``auto`` (the rule `kxnet sr` uses),
``true`` (tiles of the region size, each given the true kernel at its centre). PSNR on the Y
channel with the protocol's border crop, averaged over the photos. Also the complete Set5 ×4 σn 0
cell through the upscaler with regions off, forced on (with a region size that fits the
64-pixel LR images) and auto.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from kxnet.degrade import degrade
from kxnet.degrade.testsets import load_hr
from kxnet.inference.regions import DEFAULT_REGION
from kxnet.inference.upscaler import Upscaler
from kxnet.io import Image, from_tensor, list_images, to_uint8
from kxnet.kernels import (
    anisotropic_gaussian,
    benchmark_kernels,
    isotropic_gaussian,
    kernel_size,
)
from kxnet.metrics import image_metrics
from kxnet.models import resolve

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "benchmarks"


def _lr(hr: torch.Tensor, k: torch.Tensor, s: int) -> torch.Tensor:
    return degrade(hr, k, s, 0.0)


def scene(name: str, hr: torch.Tensor, s: int) -> tuple[torch.Tensor, callable]:
    """(LR image, true kernel at LR position (y, x))."""
    p = kernel_size(2, s)
    if name == "uniform":
        k = anisotropic_gaussian(p, 2.0, 4.0, math.radians(45))
        return _lr(hr, k, s), lambda y, x: k
    if name == "split":
        a, b = anisotropic_gaussian(p, 0.8, 1.6, 0.0), anisotropic_gaussian(p, 2.0, 4.0, math.pi / 2)
        la, lb = _lr(hr, a, s), _lr(hr, b, s)
        half = la.shape[-1] // 2
        lr = torch.cat([la[..., :half], lb[..., half:]], dim=-1)
        return lr, lambda y, x: a if x < half else b
    if name == "ramp":
        sigmas = np.linspace(0.8, 3.6, 8)
        levels = torch.stack([_lr(hr, isotropic_gaussian(p, float(v)), s) for v in sigmas])
        w = levels.shape[-1]
        pos = np.linspace(0, len(sigmas) - 1, w)
        lo = np.floor(pos).astype(int).clip(0, len(sigmas) - 2)
        frac = torch.from_numpy(pos - lo).float()
        cols = torch.arange(w)
        lr = levels[lo, :, :, cols].permute(1, 2, 0) * (1 - frac) + levels[lo + 1, :, :, cols].permute(1, 2, 0) * frac

        def true_kernel(y, x):
            t = float(np.interp(x, np.arange(w), pos))
            return isotropic_gaussian(p, float(np.interp(t, np.arange(len(sigmas)), sigmas)))
        return torch.round(lr * 255) / 255, true_kernel
    raise ValueError(name)


def psnr(sr: np.ndarray, hr: torch.Tensor, s: int) -> float:
    return image_metrics(to_uint8(sr), to_uint8(from_tensor(hr)), s).psnr


def run(model, lr: torch.Tensor, regions: str, size: int, true_kernel=None) -> tuple[np.ndarray, float]:
    up = Upscaler(model, "cpu", regions=regions, region_size=size)
    img = Image(rgb=from_tensor(lr))
    t0 = time.perf_counter()
    if true_kernel is None:
        out, _, info, _ = up.run(img)
        return out.rgb, time.perf_counter() - t0
    # the oracle: tiles of the region size, each with the true kernel at its centre
    plan = up.plan(lr.shape[-2], lr.shape[-1], size, max(size // 4, 8))
    T = up.resolved.config.stages
    sr = up._tiled(lr[None], plan, kernel_at=lambda y, x: [true_kernel(y, x)[None].float()] * T)
    return np.clip(sr, 0, 1), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--set", default="Set14")
    ap.add_argument("--min-side", type=int, default=480, help="HR photos with both sides at least this")
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96], help="region sizes (LR px) to try")
    ap.add_argument("--scenes", nargs="+", default=["split", "ramp", "uniform"])
    ap.add_argument("--methods", nargs="+", default=["regions", "auto", "true"], choices=["regions", "auto", "true"],
                    help="besides one kernel (always run: the baseline)")
    ap.add_argument("--no-set5", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU {platform.processor() or platform.machine()}, {args.threads} thread(s), torch {torch.__version__}")
    from PIL import Image as PILImage

    photos = [p for p in list_images([args.data / args.set], recursive=False)
              if min(PILImage.open(p).size) >= args.min_side][:args.max_images or None]
    print(f"{len(photos)} photos of {args.set} with both sides ≥ {args.min_side}: {', '.join(p.stem for p in photos)}")
    for s in args.scales:
        model = resolve(f"kxnet_x{s}.setting2", photos=False)
        print(f"\n×{s} ({model.name}); PSNR (dB, Y) mean over the photos; spread = the regions' disagreement")
        print(f"{'scene':<8} {'method':<14} {'PSNR':>7} {'Δ one':>7} {'spread (min–max)':>21} {'s/photo':>8}")
        for name in args.scenes:
            rows: dict[str, list] = {}
            spreads: dict[int, list] = {}
            for path in photos:
                hr = load_hr(path, s)
                lr, true_kernel = scene(name, hr, s)
                for label, regions, size, oracle in ([("one", "off", args.sizes[0], False)]
                                                     + [(f"regions {r}", "on", r, False) for r in args.sizes
                                                        if "regions" in args.methods]
                                                     + [(f"auto {r}", "auto", r, False) for r in args.sizes
                                                        if "auto" in args.methods]
                                                     + [(f"true {r}", "off", r, True) for r in args.sizes[:1]
                                                        if "true" in args.methods]):
                    sr, sec = run(model, lr, regions, size, true_kernel if oracle else None)
                    rows.setdefault(label, []).append((psnr(sr, hr, s), sec))
                for r in args.sizes:
                    up = Upscaler(model, "cpu", regions="on", region_size=r)
                    spreads.setdefault(r, []).append(up.estimate_regions(lr[None]).spread)
            base = np.mean([v for v, _ in rows["one"]])
            for label, vals in rows.items():
                size = int(label.split()[-1]) if label[-1].isdigit() else None
                spread = (f"{np.mean(spreads[size]):7.3f} ({min(spreads[size]):.3f}–{max(spreads[size]):.3f})"
                          if size in spreads and not label.startswith("true") else f"{'':>21}")
                print(f"{name:<8} {label:<14} {np.mean([v for v, _ in vals]):7.3f} "
                      f"{np.mean([v for v, _ in vals]) - base:+7.3f} {spread} {np.mean([t for _, t in vals]):8.1f}",
                      flush=True)
    if not args.no_set5:
        set5 = list_images([args.data / "Set5"], recursive=False)
        model = resolve("kxnet_x4.setting2", photos=False)
        print("\nSet5 ×4 σn 0, complete (5 images × 8 setting-2 kernels), through the upscaler:")
        for label, regions, size in (("one kernel (regions off)", "off", DEFAULT_REGION),
                                     ("regions forced, 32 px", "on", 32),
                                     (f"auto ({DEFAULT_REGION} px)", "auto", DEFAULT_REGION)):
            if regions != "off" and label.split()[0] not in args.methods:
                continue
            vals = []
            for path in set5:
                hr = load_hr(path, 4)
                for bk in benchmark_kernels(2, 4):
                    lr = degrade(hr, torch.from_numpy(bk.kernel), 4, 0.0)
                    sr, _ = run(model, lr, regions, size)
                    vals.append(psnr(sr, hr, 4))
            print(f"  {label:<28} {np.mean(vals):.3f} dB ({len(vals)} pairs)", flush=True)


if __name__ == "__main__":
    main()
