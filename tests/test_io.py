"""Image I/O: lossless round trips per format and layout, EXIF orientation, clear errors,
atomic writes and input discovery. All files are small and made in tmp_path."""

import json
import os

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image as PILImage
from PIL import ImageOps

from kxnet.io import (
    Image,
    ImageError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    from_tensor,
    list_images,
    output_layout,
    quantize,
    read_image,
    to_tensor,
    to_uint8,
    write_image,
)

RNG = np.random.default_rng(0)
H, W = 13, 17  # odd, non-square: catches transposed axes


def _u8(*channels):
    return RNG.integers(0, 256, (H, W, *channels), dtype=np.uint8)


def _u16(*channels):
    return RNG.integers(0, 65536, (H, W, *channels), dtype=np.uint16)


def _pixels(img: Image) -> np.ndarray:
    """The integer pixels an Image stands for, in its own layout (what a file should hold)."""
    planes = [img.rgb[..., :1]] if img.mode.startswith("L") else [img.rgb]
    if img.mode.endswith("A"):
        planes.append(img.alpha[..., None])
    return quantize(np.concatenate(planes, axis=2), img.bit_depth)


def _no_leftovers(folder, *expected):
    assert sorted(os.listdir(folder)) == sorted(expected)


# ------------------------------------------------------------------- lossless round trips


@pytest.mark.parametrize("ext", ["png", "tif", "bmp", "webp"])
def test_rgb8_round_trip(tmp_path, ext):
    pixels = _u8(3)
    src = tmp_path / f"in.{ext}"
    PILImage.fromarray(pixels).save(src, **({"lossless": True} if ext == "webp" else {}))
    img = read_image(src)
    assert (img.mode, img.bit_depth, img.alpha) == ("RGB", 8, None)
    assert img.rgb.dtype == np.float32 and img.rgb.shape == (H, W, 3)
    np.testing.assert_array_equal(to_uint8(img.rgb), pixels)
    out = write_image(tmp_path / f"out.{ext}", img)
    with PILImage.open(out) as back:
        assert back.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(back), pixels)


def test_greyscale_comes_back_greyscale(tmp_path):
    pixels = _u8()
    PILImage.fromarray(pixels).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.mode == "L"
    np.testing.assert_array_equal(img.rgb[..., 0], img.rgb[..., 2])
    for ext in ("png", "tif", "jpg", "bmp"):
        with PILImage.open(write_image(tmp_path / f"out.{ext}", img)) as back:
            assert back.mode == "L", ext
            if ext != "jpg":
                np.testing.assert_array_equal(np.asarray(back), pixels)


@pytest.mark.parametrize("mode,channels", [("RGBA", 4), ("LA", 2)])
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_alpha_preserved(tmp_path, mode, channels, ext):
    pixels = _u8(channels)
    src = tmp_path / f"a.{ext}"
    PILImage.fromarray(pixels, mode).save(src)
    img = read_image(src)
    assert img.mode == mode and img.alpha is not None
    np.testing.assert_array_equal(to_uint8(img.alpha), pixels[..., -1])
    with PILImage.open(write_image(tmp_path / f"out.{ext}", img)) as back:
        assert back.mode == mode
        np.testing.assert_array_equal(np.asarray(back), pixels)


def test_palette_with_transparency_becomes_rgba(tmp_path):
    p = PILImage.fromarray(_u8() // 64).convert("P")
    p.save(tmp_path / "p.png", transparency=0)
    img = read_image(tmp_path / "p.png")
    assert img.mode == "RGBA" and img.alpha.min() == 0.0 and img.alpha.max() == 1.0


@pytest.mark.parametrize("mode,channels", [("L", None), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_round_trip_is_exact(tmp_path, mode, channels, ext):
    pixels = _u16(channels) if channels else _u16()
    src = tmp_path / f"deep.{ext}"
    if ext == "png":  # written by independent encoders: pypng here, Pillow below
        h, w = pixels.shape[:2]
        writer = png.Writer(w, h, greyscale=mode.startswith("L"), alpha=mode.endswith("A"),
                            bitdepth=16)
        with open(src, "wb") as f:
            writer.write(f, pixels.reshape(h, -1))
    else:
        tifffile.imwrite(src, pixels, photometric="minisblack" if mode.startswith("L") else "rgb",
                         extrasamples=["unassalpha"] if mode.endswith("A") else None)
    img = read_image(src)
    assert (img.mode, img.bit_depth) == (mode, 16)
    expected = pixels if channels else pixels[..., None]
    np.testing.assert_array_equal(_pixels(img), expected)
    out = write_image(tmp_path / f"out.{ext}", img)
    np.testing.assert_array_equal(_pixels(read_image(out)), expected)
    if ext == "tif":
        np.testing.assert_array_equal(tifffile.imread(out), pixels)


def test_16bit_grey_png_from_pillow(tmp_path):
    pixels = _u16()
    PILImage.fromarray(pixels).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert (img.mode, img.bit_depth) == ("L", 16)
    np.testing.assert_array_equal(_pixels(img)[..., 0], pixels)
    with PILImage.open(write_image(tmp_path / "out.png", img)) as back:
        np.testing.assert_array_equal(np.asarray(back), pixels)


def test_16bit_is_reduced_to_8bit_where_the_format_needs_it(tmp_path):
    img = Image(rgb=_u16(3).astype(np.float32) / 65535, bit_depth=16)
    assert output_layout("x.jpg", "RGBA", 16) == ("RGB", 8)
    assert output_layout("x.webp", "L", 8) == ("RGB", 8)
    assert output_layout("x.bmp", "LA", 8) == ("RGBA", 8)
    with PILImage.open(write_image(tmp_path / "o.bmp", img)) as back:
        np.testing.assert_array_equal(np.asarray(back), to_uint8(img.rgb))


def test_jpeg_readable_and_writable(tmp_path):
    smooth = np.linspace(0, 255, H * W * 3).reshape(H, W, 3).astype(np.uint8)
    PILImage.fromarray(smooth).save(tmp_path / "in.jpg", quality=95)
    img = read_image(tmp_path / "in.jpg")
    assert (img.mode, img.bit_depth, img.rgb.shape) == ("RGB", 8, (H, W, 3))
    assert np.abs(to_uint8(img.rgb).astype(int) - smooth).max() <= 8
    with PILImage.open(write_image(tmp_path / "out.jpeg", img)) as back:
        assert back.format == "JPEG" and back.mode == "RGB"


def test_write_plain_arrays(tmp_path):
    pixels = _u8(3)
    write_image(tmp_path / "a.png", pixels.astype(np.float64) / 255)
    write_image(tmp_path / "b.png", pixels)
    for name in ("a.png", "b.png"):
        with PILImage.open(tmp_path / name) as back:
            np.testing.assert_array_equal(np.asarray(back), pixels)
    write_image(tmp_path / "c.png", _u16(3))
    assert read_image(tmp_path / "c.png").bit_depth == 16


# ------------------------------------------------------------------- EXIF orientation


def _exif(orientation: int) -> PILImage.Exif:
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "kxnet-test"  # Make: a tag that must survive
    return exif


def test_jpeg_orientation_6_is_rotated(tmp_path):
    PILImage.fromarray(_u8(3)).save(tmp_path / "rot.jpg", exif=_exif(6))
    img = read_image(tmp_path / "rot.jpg")
    assert img.rgb.shape == (W, H, 3)
    kept = PILImage.Exif()
    kept.load(img.exif)
    assert 0x0112 not in kept and kept[0x010F] == "kxnet-test"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    pixels = _u8(3)
    PILImage.fromarray(pixels).save(tmp_path / "o.png", exif=_exif(orientation))
    with PILImage.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(to_uint8(read_image(tmp_path / "o.png").rgb), expected)


def test_orientation_of_16bit_png(tmp_path):
    PILImage.fromarray(_u16()).save(tmp_path / "o16.png", exif=_exif(8))
    img = read_image(tmp_path / "o16.png")
    assert img.bit_depth == 16 and img.rgb.shape == (W, H, 3)


# ------------------------------------------------------------------- errors


def _assert_image_error(path, match, **kwargs):
    with pytest.raises(ImageError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and match in message and "\n" not in message
    assert info.value.path == str(path)


def test_error_missing_file(tmp_path):
    _assert_image_error(tmp_path / "nope.png", "file not found")


def test_error_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_image_error(tmp_path / "empty.png", "empty")


def test_error_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am not a picture\n")
    _assert_image_error(tmp_path / "notes.png", "not a readable image")


@pytest.mark.parametrize("bits", [8, 16])
def test_error_truncated_png(tmp_path, bits):
    pixels = _u8(3) if bits == 8 else _u16(3)
    whole = tmp_path / "whole.png"
    write_image(whole, pixels)
    data = whole.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _assert_image_error(tmp_path / "cut.png", "truncated or corrupt")


def test_error_truncated_jpeg(tmp_path):
    PILImage.fromarray(_u8(3)).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    _assert_image_error(tmp_path / "cut.jpg", "truncated or corrupt")


def test_error_too_small(tmp_path):
    PILImage.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "tiny.png")
    _assert_image_error(tmp_path / "tiny.png", "image too small (2×2; at least 8×8 needed)",
                        min_size=8)
    assert read_image(tmp_path / "tiny.png").rgb.shape == (2, 2, 3)


def test_error_folder(tmp_path):
    (tmp_path / "dir.png").mkdir()
    _assert_image_error(tmp_path / "dir.png", "folder")


# ------------------------------------------------------------------- atomic writes


def test_write_unknown_extension_leaves_nothing(tmp_path):
    with pytest.raises(ImageError, match=r"out\.xyz: unsupported output format"):
        write_image(tmp_path / "out.xyz", _u8(3))
    _no_leftovers(tmp_path)


def test_failing_encoder_leaves_no_partial_file(tmp_path, monkeypatch):
    import kxnet.io.images as images

    def half_written(tmp, *args, **kwargs):
        tmp.write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    write_image(tmp_path / "out.png", _u8(3))
    before = (tmp_path / "out.png").read_bytes()
    monkeypatch.setattr(images, "_write_pillow", half_written)
    with pytest.raises(ImageError, match="disk full"):
        write_image(tmp_path / "out.png", _u8(3))
    with pytest.raises(ImageError):
        write_image(tmp_path / "new.png", _u8(3))
    assert (tmp_path / "out.png").read_bytes() == before
    _no_leftovers(tmp_path, "out.png")


def test_atomic_helpers(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    obj = {"b": [1, 2.5], "a": {"z": None, "y": "é"}}
    atomic_write_json(tmp_path / "r.json", obj)
    text = (tmp_path / "r.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == obj
    atomic_write_json(tmp_path / "r2.json", dict(reversed(obj.items())))
    assert (tmp_path / "r2.json").read_bytes() == (tmp_path / "r.json").read_bytes()

    with atomic_path(tmp_path / "arr.npy") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npy" and not tmp.exists()
        np.save(tmp, np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "arr.npy"), np.arange(3))

    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    _no_leftovers(tmp_path, "a.bin", "r.json", "r2.json", "arr.npy")


# ------------------------------------------------------------------- conversions


def test_tensor_round_trip():
    rgb = RNG.random((H, W, 3), dtype=np.float32)
    t = to_tensor(rgb)
    assert t.shape == (1, 3, H, W) and t.dtype == torch.float32
    np.testing.assert_array_equal(from_tensor(t), rgb)
    np.testing.assert_array_equal(from_tensor(t[0]), rgb)
    pixels = _u8(3)
    np.testing.assert_allclose(from_tensor(to_tensor(pixels)), pixels / 255, rtol=0, atol=1e-7)


def test_to_uint8_is_tensor2img():
    x = np.array([-0.2, 0.0, 0.5, 1.0, 1.7], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 128, 255, 255])
    # Half-way cases round to even, and float32 input is scaled in float32 like tensor2img.
    np.testing.assert_array_equal(to_uint8(np.array([0.5, 1.5, 2.5]) / 255), [0, 2, 2])
    v = RNG.random(200_000, dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(v), np.round(v * np.float32(255)).astype(np.uint8))
    assert to_uint8(v).dtype == np.uint8 and quantize(v, 16).dtype == np.uint16


# ------------------------------------------------------------------- discovery


def test_list_images(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("b.png", "A.JPG", "sub/c.tif", "sub/deeper/d.WebP", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    expected_all = [tmp_path / n for n in ("A.JPG", "b.png", "sub/c.tif", "sub/deeper/d.WebP")]
    assert list_images(tmp_path) == sorted(expected_all, key=str)
    assert list_images(str(tmp_path), recursive=False) == [tmp_path / "A.JPG", tmp_path / "b.png"]
    assert list_images([tmp_path / "b.png", tmp_path, str(tmp_path / "*.png")]) == \
        sorted(expected_all, key=str)
    assert list_images(str(tmp_path / "**" / "*.tif")) == [tmp_path / "sub" / "c.tif"]
    assert list_images(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]  # named explicitly
    with pytest.raises(ImageError, match="missing.png: file not found"):
        list_images([tmp_path / "b.png", tmp_path / "missing.png"])


def test_write_plain_grey_array(tmp_path):
    from kxnet.io import read_image, write_image

    grey = (np.arange(12 * 10) % 256).astype(np.uint8).reshape(12, 10)
    write_image(tmp_path / "g.png", grey)
    back = read_image(tmp_path / "g.png")
    assert back.mode == "L"
    np.testing.assert_array_equal(np.round(back.rgb[..., 0] * 255).astype(np.uint8), grey)
