"""Where the default `kxnet sr` sends the benchmark cells' LR images, and the cells that follow.

    python benchmarks/routing_cells.py                  # Set5, Set14; ×2 and ×4

Each cell's LR images are made exactly as `kxnet benchmark` makes them (the paper's σn 0 and σn 5,
and the photo cells 5+jpeg75, 5+jpeg90, cam+jpeg80, decoded and kept as PNG); the degradation
estimate of each (kxnet.degrade.estimate, from the pixels) routes it (kxnet.inference.routing).
Where every image of a cell goes to one model, the routed cell is that model's cell exactly (the
same forward on the same LR), read from the manifest beside the paper model's; a cell split
between models is flagged. A JPEG file's quality is read from its tables (exact:
benchmarks/degradation_estimate.py), so LR given as JPEG files route as their decoded PNGs do.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from kxnet.degrade.estimate import estimate_degradation
from kxnet.degrade.testsets import load_manifest, synthesise
from kxnet.hardware import cpu_name
from kxnet.inference.routing import route
from kxnet.io import read_image
from kxnet.models.zoo import read_manifest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
CELLS = {"0": "noise0", "5": "noise5", "5+jpeg75": "noise5_jpeg75", "5+jpeg90": "noise5_jpeg90",
         "cam+jpeg80": "noise0_cam2-0.2-0.6_jpeg80"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    entries = read_manifest()
    print(f"CPU {cpu_name()}")
    print("| LR | set | cell | routed to | routed PSNR / SSIM | paper model | Δ |")
    print("|---|---|---|---|---|---|---|")
    work = Path(tempfile.mkdtemp())
    for s in args.scales:
        paper = f"kxnet_x{s}.setting2"
        for set_name in args.sets:
            for spec, tag in CELLS.items():
                out = work / f"{set_name}_x{s}_{tag}"
                synthesise(args.data / set_name, out, 2, s, spec, progress=False)
                lrs = [out / pair["lr"] for pair in load_manifest(out)["pairs"]]
                names = [route(s, estimate_degradation(read_image(p).rgb), entries) for p in lrs]
                counts = {n: names.count(n) for n in sorted(set(names))}
                key = f"{set_name}/setting2/x{s}/{tag}"
                base = entries[paper].benchmarks.get(key)
                where = ", ".join(f"{n} {c}/{len(names)}" for n, c in counts.items())
                if len(counts) == 1 and (cell := entries[next(iter(counts))].benchmarks.get(key)) and base:
                    print(f"| ×{s} | {set_name} | {spec} | {where} | {cell['psnr']:.2f} / {cell['ssim']:.4f} | "
                          f"{base['psnr']:.2f} / {base['ssim']:.4f} | {cell['psnr'] - base['psnr']:+.2f} |", flush=True)
                else:
                    print(f"| ×{s} | {set_name} | {spec} | {where} | (not in the manifest or split) | "
                          f"{base['psnr'] if base else float('nan'):.2f} | — |", flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
