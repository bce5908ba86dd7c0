"""scripts/pack_photos.py: photos packed for a device call keep their pixels (or their bytes)."""

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("pack_photos", ROOT / "scripts" / "pack_photos.py")
pack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pack)


def test_pack_keeps_pixels_copies_jpegs_crops_and_skips(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        (src / name).mkdir(parents=True)
    png = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(png).save(src / "a" / "p.png")
    Image.fromarray(png).save(src / "a" / "j.jpg", quality=90)
    Image.fromarray(png).save(src / "b" / "w.png")
    Image.fromarray(png).save(src / "c" / "skip.png")
    assert pack.main([str(src), "--out", str(tmp_path / "out"), "--skip", "c", "--crop", "b=20"]) == 0
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == ["a/j.jpg", "a/p.webp", "b/w.webp"]
    assert np.array_equal(np.asarray(Image.open(out / "a" / "p.webp")), png)
    assert (out / "a" / "j.jpg").read_bytes() == (src / "a" / "j.jpg").read_bytes()
    assert np.array_equal(np.asarray(Image.open(out / "b" / "w.webp")), png[10:30, 20:40])
