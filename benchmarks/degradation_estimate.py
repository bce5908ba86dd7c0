"""How well kxnet reads a photo's JPEG history and noise (kxnet.degrade.estimate), on synthetic
LR images with known truth. Prints one table (docs/photo.md, "The degradation estimate").

    python benchmarks/degradation_estimate.py                       # Set5, Set14, B100; ×2 and ×4
    python benchmarks/degradation_estimate.py --sets Set5 --scales 4

Every HR image is blurred by a setting-2 test kernel (cycled over the images) and decimated, then
given each of: the paper's clean cells (σn 0, σn 5, no JPEG) and four JPEG cells drawn per image
(white σ 0–15 or camera noise; quality 30–95; 4:2:0 or 4:4:4), each saved as a JPEG file (the
quality read from its tables) and as a PNG of the decoded pixels with the 8×8 grid shifted by a
random crop (estimated from the pixels). The noise truth is the white σ, or for camera noise the
RMS of its σ over the image, before any compression; the σ scored is the one kxnet reports (on a
compressed input the learned σ before compression), beside the σ of the noise the pixels show.
Draws are seeded: the table is the same on every run.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from kxnet.degrade import degrade
from kxnet.degrade.estimate import estimate_degradation
from kxnet.degrade.photo import CameraNoise, add_camera_noise, jpeg_roundtrip
from kxnet.degrade.testsets import load_hr
from kxnet.hardware import cpu_name
from kxnet.io import list_images
from kxnet.kernels import benchmark_kernels

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"


def noisy_lr(clean: torch.Tensor, rng: np.random.Generator, camera: bool, sigma: float) -> tuple[torch.Tensor, float]:
    """(8-bit LR with white or camera noise, the noise's σ truth in 8-bit units)."""
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    if camera:
        noise = CameraNoise(read=float(rng.uniform(0.5, 4.0)), shot=float(rng.uniform(0.0, 0.3)),
                            corr=float(rng.uniform(0.0, 0.9)))
        out = add_camera_noise(clean[None], noise, g)[0]
        truth = math.sqrt(float((noise.read ** 2 + noise.shot * 255 * clean.clamp(0, 1)).mean()))
    else:
        out, truth = clean + sigma / 255 * torch.randn(clean.shape, generator=g), sigma
    return torch.round(out.clamp(0, 1) * 255) / 255, truth


def as_jpeg_file(lr: torch.Tensor, quality: int, chroma: str, folder: Path) -> tuple[np.ndarray, Path]:
    a = (lr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path = folder / "x.jpg"
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, "JPEG", quality=quality, subsampling={"4:2:0": 2, "4:4:4": 0}[chroma])
    path.write_bytes(buf.getvalue())
    with PILImage.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255, path


def image_cells(clean: torch.Tensor, rng: np.random.Generator, folder: Path):
    """The cells of one clean LR image, drawn from ``rng``: (label, camera noise?, JPEG quality or
    None, σ truth, [(form, H×W×3 pixels, JPEG file or None)]) — the clean σ0 and σ5 cells as PNG,
    then four JPEG cells each as a JPEG file and as a PNG of its pixels with the grid shifted."""
    cells = [("clean σ0", False, 0.0, None, None), ("clean σ5", False, 5.0, None, None)]
    for _ in range(4):
        camera = bool(rng.random() < 0.3)
        cells.append(("jpeg", camera, float(rng.uniform(0, 15)), int(rng.integers(30, 96)),
                      "4:2:0" if rng.random() < 0.6 else "4:4:4"))
    for label, camera, sigma, quality, chroma in cells:
        lr, truth = noisy_lr(clean, rng, camera, sigma)
        if quality is None:
            forms = [("png", lr.permute(1, 2, 0).numpy(), None)]
        else:
            pixels, file = as_jpeg_file(lr, quality, chroma, folder)
            grid = (int(rng.integers(8)), int(rng.integers(8)))
            shifted = jpeg_roundtrip(lr[None], quality, chroma, grid)[0].permute(1, 2, 0).numpy()
            forms = [("jpeg file", pixels, file), ("png of jpeg", shifted, None)]
        yield label, camera, quality, truth, forms


def benchmark_images(data: Path, sets, scales, seed: int = 0, set_done=None):
    """Per HR image of ``sets`` at each of ``scales``: (scale, set name, its cells as
    :func:`image_cells` draws them) — blurred by a setting-2 test kernel (cycled over the images)
    and decimated, the draws seeded by (``seed``, scale, image, set) so that every script that
    reads these cells gets the same ones. ``set_done(scale, set name)`` is called after each set."""
    import tempfile

    folder = Path(tempfile.mkdtemp())
    for s in scales:
        kernels = benchmark_kernels(2, s)
        for set_name in sets:
            for n, path in enumerate(list_images([data / set_name], recursive=False)):
                rng = np.random.default_rng([seed, s, n, len(set_name)])
                k = torch.as_tensor(kernels[n % len(kernels)].kernel, dtype=torch.float32)
                clean = degrade(load_hr(path, s), k, s, 0.0)
                yield s, set_name, image_cells(clean, rng, folder)
            if set_done is not None:
                set_done(s, set_name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["Set5", "Set14", "B100"])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"CPU {cpu_name()}, 1 thread, torch {torch.__version__}")
    rows: list[dict] = []

    def set_done(s, set_name):
        print(f"×{s} {set_name}: {sum(1 for r in rows if r['scale'] == s and r['set'] == set_name)} estimates",
              flush=True)

    for s, set_name, cells in benchmark_images(args.data, args.sets, args.scales, args.seed, set_done):
        for label, camera, quality, truth, forms in cells:
            for form, rgb, file in forms:
                t0 = time.perf_counter()
                est = estimate_degradation(rgb, file)
                rows.append(dict(scale=s, set=set_name, cell=label, form=form, quality=quality,
                                 found=est.jpeg_quality, sigma=truth, sigma_left=est.noise_sigma,
                                 sigma_found=est.noise_sigma if est.noise_before_jpeg is None else est.noise_before_jpeg,
                                 camera=camera, seconds=time.perf_counter() - t0, pixels=rgb.shape[0] * rgb.shape[1]))

    def share(sel, ok) -> str:
        sel = list(sel)
        return f"{100 * sum(map(ok, sel)) / len(sel):5.1f}% of {len(sel)}" if sel else "—"

    print("\n| LR | cell | quality within ±5 | JPEG history reported | σ within ±1.5 | σ within ±1.5 (white / camera) "
          "| the pixels' σ within ±1.5 |")
    print("|---|---|---|---|---|---|---|")
    for s in args.scales:
        for cell, form in (("clean σ0", "png"), ("clean σ5", "png"), ("jpeg", "jpeg file"), ("jpeg", "png of jpeg")):
            sel = [r for r in rows if r["scale"] == s and r["cell"] == cell and r["form"] == form]
            qok = share(sel, lambda r: r["found"] is not None and abs(r["found"] - r["quality"]) <= 5) \
                if cell == "jpeg" else "—"
            print(f"| ×{s} | {cell}, {form} | {qok} | {share(sel, lambda r: r['found'] is not None)} | "
                  f"{share(sel, lambda r: abs(r['sigma_found'] - r['sigma']) <= 1.5)} | "
                  f"{share([r for r in sel if not r['camera']], lambda r: abs(r['sigma_found'] - r['sigma']) <= 1.5)}"
                  f" / {share([r for r in sel if r['camera']], lambda r: abs(r['sigma_found'] - r['sigma']) <= 1.5)} | "
                  f"{share(sel, lambda r: abs(r['sigma_left'] - r['sigma']) <= 1.5)} |")
    exact = [r for r in rows if r["form"] == "jpeg file"]
    print(f"\nJPEG files read exactly: {sum(r['found'] == r['quality'] for r in exact)} of {len(exact)}")
    by_q = {}
    for r in rows:
        if r["form"] == "png of jpeg":
            by_q.setdefault((r["quality"] - 30) // 15, []).append(r)
    print("σ error on JPEG inputs by quality (mean estimate − truth):",
          ", ".join(f"q{30 + 15 * b}–{44 + 15 * b}: {np.mean([r['sigma_found'] - r['sigma'] for r in v]):+.2f}"
                    for b, v in sorted(by_q.items())))
    per_mp = np.median([r["seconds"] / r["pixels"] * 1e6 for r in rows])
    print(f"cost: median {1000 * np.median([r['seconds'] for r in rows]):.1f} ms an image, {per_mp:.2f} s per megapixel")


if __name__ == "__main__":
    main()
