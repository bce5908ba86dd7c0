"""Draw the panel of docs/: real photos, the input beside each model's result, zoomed, with the
estimated kernels (kxnet.inference.panel).

    python scripts/photo_panel.py --model kxnet_x4.setting2 --model kxnet_x4.photo      # RealSRSet
    python scripts/photo_panel.py a.jpg b.png --model paper=kxnet_x4.setting2 --out /tmp/panel.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kxnet.inference.panel import compare_panel

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "real" / "RealSRSet"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("inputs", nargs="*", default=[str(DEFAULT_INPUT)], help=f"images or folders (default: {DEFAULT_INPUT})")
    ap.add_argument("--model", action="append", required=True, metavar="[LABEL=]NAME|FILE",
                    help="a model to compare (repeat; all of one scale)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tile", type=int, default=None, help="tile side in LR pixels (default: the library's)")
    ap.add_argument("--rows", type=int, default=4, help="photos shown (default 4)")
    ap.add_argument("--height", type=int, default=256, help="display height of the full images")
    ap.add_argument("--zoom", type=int, default=96, help="side of the zoomed region in output pixels")
    ap.add_argument("--out", default=str(REPO / "docs" / "photo_panel.png"))
    args = ap.parse_args(argv)
    models = [tuple(m.split("=", 1)) if "=" in m else (m, m) for m in args.model]
    done, failures = compare_panel(args.inputs, models, args.out, rows=args.rows, height=args.height, zoom=args.zoom,
                                   device=args.device, tile=args.tile)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
