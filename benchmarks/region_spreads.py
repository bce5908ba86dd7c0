"""How much the regions' kernels disagree on photos blurred uniformly, with every setting-2 test
kernel: the figures ``--regions auto``'s thresholds must stay above (kxnet.inference.regions).

    python benchmarks/region_spreads.py                 # ×2, ×3, ×4; four Set14 photos and a wallpaper
    python benchmarks/region_spreads.py --scales 4

Each photo (Set14's with both HR sides ≥ 480 px, and the centre 256·s square of a training
wallpaper, whose sky and flat walls make it the hardest case found) is blurred by each of the 8
setting-2 benchmark kernels and decimated without noise; the shipped setting-2 model of the
scale estimates the regions (64-pixel crops, forced on) and the spread is printed, one row per
photo and one column per kernel, then the largest per scale beside the threshold in use.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kxnet.degrade import degrade
from kxnet.degrade.testsets import load_hr
from kxnet.inference.regions import uniform_spread
from kxnet.inference.upscaler import Upscaler
from kxnet.io import list_images
from kxnet.kernels import benchmark_kernels
from kxnet.models import resolve

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WALLPAPER = DATA / "train" / "wallpapers" / "lomiri16_aitzgorri_by_Aitzol_Berasategi.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from PIL import Image as PILImage

    photos = [p for p in list_images([DATA / "benchmarks" / "Set14"], recursive=False)
              if min(PILImage.open(p).size) >= 480] + [WALLPAPER]
    for s in args.scales:
        up = Upscaler(resolve(f"kxnet_x{s}.setting2", photos=False), "cpu", regions="on")
        largest = 0.0
        for p in photos:
            hr = load_hr(p, s)
            if p == WALLPAPER:
                side = s * 256
                top, left = (hr.shape[1] - side) // 2, (hr.shape[2] - side) // 2
                hr = hr[:, top:top + side, left:left + side]
            row = []
            for bk in benchmark_kernels(2, s):
                lr = degrade(hr, torch.as_tensor(bk.kernel, dtype=torch.float32), s, 0.0)
                row.append(up.estimate_regions(lr[None]).spread)
            largest = max(largest, *row)
            print(f"×{s} {p.stem[:16]:<16} " + " ".join(f"{v:.3f}" for v in row), flush=True)
        print(f"×{s}: largest uniform spread {largest:.3f}; auto's threshold {uniform_spread(s):.2f}\n", flush=True)


if __name__ == "__main__":
    main()
