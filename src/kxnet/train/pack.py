"""Training photos packed small enough to travel with a device call (64 MiB with the
repository; docs/training.md, "GPU windows").

Per sub-folder of the source: JPEGs are copied as they are (re-encoding would change them);
other images are written as lossless WebP, checked to decode to the same pixels; a folder's
images may be cropped to their centre (``crops``) or the folder left out (``skip``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from ..io import ImageError, list_images

__all__ = ["center_crop", "pack_one", "pack_photos"]

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
            raise ImageError(src, "lossless WebP did not give back the same pixels")
    return dst


def pack_photos(source: Path, out: Path, skip: list[str] = (), crops: dict[str, int] | None = None) -> tuple[int, int, int]:
    """Pack every photo folder of ``source`` into ``out``; returns (photos, folders, bytes)."""
    crops = crops or {}
    folders = sorted(p for p in Path(source).iterdir() if p.is_dir() and p.name not in skip)
    if not folders:
        raise ImageError(source, "no photo folders")
    total = count = 0
    for folder in folders:
        out_dir = Path(out) / folder.name
        out_dir.mkdir(parents=True, exist_ok=True)
        for src in list_images(folder, recursive=False):
            total += pack_one(src, out_dir, crops.get(folder.name)).stat().st_size
            count += 1
    return count, len(folders), total
