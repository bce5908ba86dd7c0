"""Reproduce the paper's Bicubic rows: regenerate every noise-free benchmark set and score bicubic.

    python benchmarks/bicubic_table.py [--data ../shared/data/benchmarks] [--work DIR] [--sets Set5 Set14 B100]

Prints a Markdown table (ours, paper, Δ) and exits non-zero if any cell is off by more than
--tolerance dB (default 0.02), so it doubles as a check of synthesis + metric + upsampler.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from kxnet.degrade.testsets import synthesise
from kxnet.inference.evaluate import evaluate
from kxnet.inference.paper import paper_value
from kxnet.models import create_model


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(here.parent.parent / "shared" / "data" / "benchmarks"))
    ap.add_argument("--work", default=None, help="where to write the sets (default: a temporary folder)")
    ap.add_argument("--sets", nargs="+", default=["Set5", "Set14", "B100"])
    ap.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--settings", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--tolerance", type=float, default=0.02)
    args = ap.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="kxnet-bicubic-"))
    rows, worst = [], 0.0
    t0 = time.time()
    for setting in args.settings:
        for scale in args.scales:
            model = create_model("bicubic", scale=scale)
            for name in args.sets:
                out = work / f"setting{setting}" / f"x{scale}" / name
                if not (out / "manifest.json").exists():
                    synthesise(Path(args.data) / name, out, setting, scale, 0.0, 0, overwrite=True, progress=False)
                s = evaluate(model, out, "bicubic", progress=False).summary()
                ref = paper_value("Bicubic", setting, 0, scale, name)
                d = s["psnr"] - ref[0]
                worst = max(worst, abs(d))
                rows.append(f"| {setting} | ×{scale} | {name} | {s['psnr']:.4f} / {s['ssim']:.4f} | "
                            f"{ref[0]:.2f} / {ref[1]:.4f} | {d:+.4f} | {s['ssim'] - ref[1]:+.4f} |")
                print(rows[-1], file=sys.stderr, flush=True)
    print("| setting | scale | set | ours PSNR / SSIM | paper | Δ PSNR | Δ SSIM |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nworst |Δ PSNR| = {worst:.4f} dB over {len(rows)} cells ({time.time() - t0:.0f} s)")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
