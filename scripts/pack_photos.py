"""Pack training photos small enough to travel with a device call (kxnet.train.pack).

    python scripts/pack_photos.py ../shared/data/train --out gpu_carry/train --skip t91 --crop wallpapers=512

The GPU windows of docs/history/study.md trained on this with the wallpapers cropped to 640 (34.4 MiB);
512 (32.1 MiB) keeps a margin now that the tracked tree is 27.9 MiB. JPEGs are copied as they are,
other images written as lossless WebP (checked pixel for pixel); ``--crop NAME=SIDE`` keeps only
the central SIDE×SIDE of that folder's images; ``--skip NAME`` leaves a folder out. The folder is
for a git-ignored path named in the device call's ``carry``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kxnet.train.pack import pack_photos


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="a folder of photo folders (e.g. ../shared/data/train)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--skip", nargs="*", default=[], metavar="NAME")
    ap.add_argument("--crop", nargs="*", default=[], metavar="NAME=SIDE")
    args = ap.parse_args(argv)
    crops = {}
    for item in args.crop:
        name, _, side = item.partition("=")
        if not side.isdigit():
            ap.error(f"--crop {item}: expected NAME=SIDE, e.g. wallpapers=640")
        crops[name] = int(side)
    count, folders, total = pack_photos(args.source, args.out, args.skip, crops)
    print(f"{count} photos from {folders} folders, {total / 2 ** 20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
