"""Pack training photos small enough to travel with a device call (64 MiB with the repository).

    python scripts/pack_photos.py ../shared/data/train --out gpu_carry/train --skip t91 --crop wallpapers=512

The GPU windows of docs/study.md trained on this with the wallpapers cropped to 640 (34.4 MiB);
512 (32.1 MiB) keeps a margin now that the tracked tree is 27.9 MiB. Per sub-folder of the source: JPEGs
are copied as they are (re-encoding would change them); other images are written as lossless
WebP, checked to decode to the same pixels; ``--crop NAME=SIDE`` keeps only the central
SIDE×SIDE (at most) of that folder's images; ``--skip NAME`` leaves a folder out. Prints the
total size; the folder is for a git-ignored path named in the device call's ``carry``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from kxnet.io import list_images  # noqa: E402  (the trainer's own notion of an image file)

JPEG = {".jpg", ".jpeg"}


def center_crop(im: Image.Image, side: int) -> Image.Image:
    w, h = im.size
    cw, ch = min(side, w), min(side, h)
    left, top = (w - cw) // 2, (h - ch) // 2
    return im.crop((left, top, left + cw, top + ch))


def pack_one(src: Path, out_dir: Path, side: int | None) -> Path:
    if src.suffix.lower() in JPEG and side is None:
        dst = out_dir / src.name
        shutil.copyfile(src, dst)
        return dst
    im = Image.open(src)
    im = im.convert("RGB") if im.mode not in ("RGB", "L") else im
    if side is not None:
        im = center_crop(im, side)
    dst = out_dir / (src.stem + ".webp")
    im.save(dst, lossless=True, quality=100, method=4)
    with Image.open(dst) as back:
        if back.convert(im.mode).tobytes() != im.tobytes():
            raise SystemExit(f"{src}: lossless WebP did not give back the same pixels")
    return dst


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
    folders = sorted(p for p in args.source.iterdir() if p.is_dir() and p.name not in args.skip)
    if not folders:
        raise SystemExit(f"{args.source}: no photo folders")
    total, count = 0, 0
    for folder in folders:
        out_dir = args.out / folder.name
        out_dir.mkdir(parents=True, exist_ok=True)
        for src in list_images(folder, recursive=False):
            total += pack_one(src, out_dir, crops.get(folder.name)).stat().st_size
            count += 1
    print(f"{count} photos from {len(folders)} folders, {total / 2 ** 20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
