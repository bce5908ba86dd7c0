"""Photos packed for a device call keep their pixels (or their bytes): kxnet.train.pack."""

import numpy as np
import pytest
from PIL import Image

from kxnet.io import ImageError
from kxnet.train.pack import pack_photos


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
    assert pack_photos(src, tmp_path / "out", skip=["c"], crops={"b": 20})[:2] == (3, 2)
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == ["a/j.jpg", "a/p.webp", "b/w.webp"]
    assert np.array_equal(np.asarray(Image.open(out / "a" / "p.webp")), png)
    assert (out / "a" / "j.jpg").read_bytes() == (src / "a" / "j.jpg").read_bytes()
    assert np.array_equal(np.asarray(Image.open(out / "b" / "w.webp")), png[10:30, 20:40])


def test_pack_refuses_a_folder_without_photo_folders(tmp_path):
    with pytest.raises(ImageError, match="no photo folders"):
        pack_photos(tmp_path, tmp_path / "out")
