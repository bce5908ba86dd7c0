"""How much the regions' kernels disagree — over the whole grid and over auto's probe crops — on
photos blurred uniformly by every setting-2 test kernel and on photos blurred unevenly: the
figures ``--regions auto``'s two thresholds sit between (kxnet.inference.regions).

    python benchmarks/region_spreads.py                 # ×2, ×3, ×4; four Set14 photos and a wallpaper
    python benchmarks/region_spreads.py --scales 2 4 --photos 4     # the four photos of docs/photo.md's table

Uniform: each photo (Set14's with both HR sides ≥ 480 px, and the centre 256·s square of a
training wallpaper, whose sky and flat walls make it the hardest case found) is blurred by each of
the 8 setting-2 benchmark kernels and decimated without noise. Uneven: the four Set14 photos in
the ``split`` and ``ramp`` scenes of benchmarks/region_kernels.py. The shipped setting-2 model of
the scale estimates every region (64-pixel crops); the grid's spread and the probes' spread (the
same estimates at :func:`~kxnet.inference.regions.probe_cells`) are printed per photo, then the
largest uniform and smallest uneven figure of each beside the thresholds in use. The grids'
estimates are kept in ``--cache`` (keyed by scale, photo, kernel or scene), so a changed probe
rule is measured again without the network.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from region_kernels import scene

from kxnet.degrade import degrade
from kxnet.degrade.testsets import load_hr
from kxnet.hardware import cpu_name
from kxnet.inference.regions import (DEFAULT_REGION, RegionKernels, probe_cells, probe_spread, region_starts,
                                     uniform_spread)
from kxnet.inference.upscaler import Upscaler
from kxnet.io import list_images
from kxnet.kernels import benchmark_kernels
from kxnet.models import resolve

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WALLPAPER = DATA / "train" / "wallpapers" / "lomiri16_aitzgorri_by_Aitzol_Berasategi.png"


def spreads(up: Upscaler, lr: torch.Tensor, cache: Path, key: str) -> tuple[float, float]:
    """(grid spread, probes' spread) of one LR image (3×h×w); the grid's raw estimates cached."""
    file = cache / f"{key}.pt"
    if file.is_file():
        raw = torch.load(file)
        r = DEFAULT_REGION
        regions = RegionKernels.from_estimates(raw, region_starts(lr.shape[-2], r), region_starts(lr.shape[-1], r), r)
    else:
        regions = up.estimate_regions(lr[None])
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(regions.raw, file)
    return regions.spread, regions.spread_of(probe_cells(lr, DEFAULT_REGION))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--photos", type=int, default=0, help="the first N Set14 photos only (0: all)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "kxnet-region-spreads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU {cpu_name()}, {args.threads} thread(s), torch {torch.__version__}; each cell grid / probes")
    from PIL import Image as PILImage

    set14 = [p for p in list_images([DATA / "benchmarks" / "Set14"], recursive=False)
             if min(PILImage.open(p).size) >= 480][:args.photos or None]
    for s in args.scales:
        up = Upscaler(resolve(f"kxnet_x{s}.setting2", photos=False), "cpu", regions="on")
        uniform: list[tuple[float, float]] = []
        uneven: list[tuple[float, float]] = []
        for p in set14 + [WALLPAPER]:
            hr = load_hr(p, s)
            if p == WALLPAPER:
                side = s * 256
                top, left = (hr.shape[1] - side) // 2, (hr.shape[2] - side) // 2
                hr = hr[:, top:top + side, left:left + side]
            row = [spreads(up, degrade(hr, torch.as_tensor(bk.kernel, dtype=torch.float32), s, 0.0), args.cache,
                           f"x{s}_{p.stem}_k{n}") for n, bk in enumerate(benchmark_kernels(2, s))]
            uniform += row
            print(f"×{s} uniform {p.stem[:16]:<16} " + " ".join(f"{g:.3f}/{q:.3f}" for g, q in row), flush=True)
            if p != WALLPAPER:
                row = [spreads(up, scene(name, hr, s)[0], args.cache, f"x{s}_{p.stem}_{name}") for name in ("split", "ramp")]
                uneven += row
                print(f"×{s} uneven  {p.stem[:16]:<16} split {row[0][0]:.3f}/{row[0][1]:.3f} "
                      f"ramp {row[1][0]:.3f}/{row[1][1]:.3f}", flush=True)
        print(f"×{s}: grid  — largest uniform {max(g for g, _ in uniform):.3f}, smallest uneven "
              f"{min(g for g, _ in uneven):.3f}; threshold {uniform_spread(s):.2f}")
        print(f"×{s}: probes — largest uniform {max(q for _, q in uniform):.3f}, smallest uneven "
              f"{min(q for _, q in uneven):.3f}; threshold {probe_spread(s):.2f}\n", flush=True)


if __name__ == "__main__":
    main()
