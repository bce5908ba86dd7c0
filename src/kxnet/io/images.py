"""Reading and writing images for the super-resolution tool.

Pixels travel through the package as float32 RGB in [0, 1] (plus an optional alpha plane);
what the file looked like (greyscale or colour, alpha or not, 8 or 16 bits) is remembered in
:class:`Image` so that the output can be written back in the same layout.

Decoders: Pillow for everything it decodes losslessly; tifffile for TIFFs deeper than 8 bits
and pypng for 16-bit PNGs, because Pillow silently truncates 16-bit colour (48/64-bit RGB(A))
PNG and TIFF data to 8 bits and cannot open some 16-bit TIFF layouts at all.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png
import tifffile
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from .atomic import atomic_path
from .convert import quantize

__all__ = [
    "IMAGE_EXTENSIONS",
    "MODES",
    "Image",
    "ImageError",
    "luma",
    "output_layout",
    "read_image",
    "to_planes",
    "write_image",
]

MODES = ("L", "LA", "RGB", "RGBA")

# extension → (Pillow format name, colour layouts the format stores, deepest bit depth)
_FORMATS: dict[str, tuple[str, frozenset[str], int]] = {
    ".png": ("PNG", frozenset(MODES), 16),
    ".tif": ("TIFF", frozenset(MODES), 16),
    ".tiff": ("TIFF", frozenset(MODES), 16),
    ".jpg": ("JPEG", frozenset({"L", "RGB"}), 8),
    ".jpeg": ("JPEG", frozenset({"L", "RGB"}), 8),
    ".webp": ("WEBP", frozenset({"RGB", "RGBA"}), 8),
    ".bmp": ("BMP", frozenset({"L", "RGB", "RGBA"}), 8),
}
IMAGE_EXTENSIONS = frozenset(_FORMATS)
# Nearest storable layout, best first; every format stores RGB. Alpha is kept if possible.
_FALLBACK = {"L": ("RGB",), "LA": ("RGBA", "L", "RGB"), "RGB": (), "RGBA": ("RGB",)}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ORIENTATION_TAG = 0x0112
# ITU-R BT.601 luma, the weights Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114])


class ImageError(Exception):
    """A problem with one image file, reported as a single line ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


@dataclass
class Image:
    """A decoded image: float RGB (+ alpha) and the layout to write it back in.

    ``rgb`` is float32 H×W×3 in [0, 1] even for greyscale sources (three equal channels), so
    the network always sees colour; ``mode`` and ``bit_depth`` describe the source file.
    ``exif`` is the source's EXIF block with the orientation already applied (tag removed).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    mode: str = "RGB"
    bit_depth: int = 8
    path: str | None = None
    exif: bytes | None = None

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"rgb must be H×W×3, got shape {self.rgb.shape}")
        if self.alpha is not None and self.alpha.shape != self.rgb.shape[:2]:
            raise ValueError(f"alpha shape {self.alpha.shape} does not match "
                             f"rgb {self.rgb.shape[:2]}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


# ----------------------------------------------------------------------------- reading


@dataclass
class _Decoded:
    """Integer pixels H×W×C (C = 1..4, matching ``MODES``) straight from a decoder."""

    pixels: np.ndarray
    orientation: int = 1
    exif: bytes | None = None


def read_image(path: str | os.PathLike[str], min_size: int = 1) -> Image:
    """Decode an image file completely, upright, as float RGB in [0, 1].

    The whole file is decoded here (not lazily) so that truncated or corrupt data is reported
    now, as an :class:`ImageError` naming the file, instead of as a half-grey output later.
    EXIF orientation is applied so the network sees the picture the way viewers show it.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageError(p, "file not found") from None
    except IsADirectoryError:
        raise ImageError(p, "is a folder, not an image file") from None
    except OSError as exc:
        raise ImageError(p, f"cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise ImageError(p, "file is empty (0 bytes)")

    decoded = _decode(p, data)
    pixels = _apply_orientation(decoded.pixels, decoded.orientation)
    h, w = pixels.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(p, f"image is empty ({w}×{h})")
    if h < min_size or w < min_size:
        raise ImageError(p, f"image too small ({w}×{h}; at least {min_size}×{min_size} needed)")

    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    values = pixels.astype(np.float32) / np.float32(65535.0 if bit_depth == 16 else 255.0)
    channels = pixels.shape[2]
    mode = MODES[channels - 1]
    colour = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=2)
    alpha = values[..., -1].copy() if channels in (2, 4) else None
    return Image(rgb=np.ascontiguousarray(colour), alpha=alpha, mode=mode, bit_depth=bit_depth,
                 path=str(p), exif=decoded.exif)


def _decode(path: Path, data: bytes) -> _Decoded:
    """Decode ``data``; a failure is one :class:`ImageError` line, with whatever the decoders
    warned about folded into it (Pillow's two-line DecompressionBombWarning for a header that
    claims 12000×12000, say) instead of printed on stderr. A good decode drops its warnings
    (EXIF/ICC oddities that do not affect the pixels)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _decode_any(path, data)
        except ImageError as exc:
            notes = _warning_notes(caught)
            if not notes:
                raise
            raise ImageError(path, f"{exc.problem}; {notes}") from None


def _warning_notes(caught: list[warnings.WarningMessage]) -> str:
    """The decoders' warnings as one clause (duplicates once)."""
    notes: list[str] = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if issubclass(w.category, PILImage.DecompressionBombWarning):
            numbers = re.findall(r"\d+", text)
            if len(numbers) >= 2:
                text = (f"its header claims {int(numbers[0]):,} pixels, over Pillow's decompression-bomb "
                        f"limit of {int(numbers[1]):,}")
        if text and text not in notes:
            notes.append(text)
    return "; ".join(notes)


def _decode_any(path: Path, data: bytes) -> _Decoded:
    try:
        if data.startswith(_PNG_SIGNATURE) and _png_bit_depth(data) == 16:
            return _decode_png16(data)
        if data.startswith(_TIFF_SIGNATURES):
            deep = _decode_deep_tiff(data)
            if deep is not None:
                return deep
        return _decode_pillow(data)
    except ImageError as exc:
        raise ImageError(path, exc.problem) from None
    except UnidentifiedImageError:
        raise ImageError(path, "not a readable image (cannot identify image file)") from None
    except PILImage.DecompressionBombError as exc:
        raise ImageError(path, f"image too large ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError,
            struct.error, zlib.error, png.Error) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageError(path, f"truncated or corrupt image data ({detail})") from None


def _decode_pillow(data: bytes) -> _Decoded:
    # warnings (EXIF/ICC oddities, a decompression-bomb size) are caught by _decode
    with PILImage.open(io.BytesIO(data)) as im:
        im.load()  # full decode now: raises on truncated data
        if im.format == "TIFF":
            # A TIFF's "EXIF" is its whole IFD (strip offsets…): take only the orientation.
            orientation, exif = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1), None
        else:
            orientation, exif = _read_exif(im.info.get("exif"))
        pixels = _pillow_pixels(im)
    return _Decoded(pixels, orientation, exif)


def _pillow_pixels(im: PILImage.Image) -> np.ndarray:
    """Pixels of a loaded Pillow image as H×W×C uint8/uint16, C matching ``MODES``."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageError(None, f"unsupported pixel format ({mode} with values beyond 16 bits)")
        return arr.astype(np.uint16)[..., None]
    if mode in ("P", "PA"):
        # Palette entries are colours; keep transparency if the palette has any.
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("La", "RGBa"):  # premultiplied alpha
        im = im.convert(mode.upper())
    elif mode not in MODES:
        try:
            im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX…
        except ValueError:
            raise ImageError(None, f"unsupported pixel format ({mode})") from None
    arr = np.asarray(im)
    return arr[..., None] if arr.ndim == 2 else arr


def _read_exif(raw: bytes | None) -> tuple[int, bytes | None]:
    """The EXIF orientation, and the EXIF block without it (the pixels get rotated instead).

    Malformed metadata is ignored rather than reported: it must not make a good picture
    unreadable.
    """
    if not raw:
        return 1, None
    try:
        exif = PILImage.Exif()
        exif.load(raw)
        orientation = int(exif.pop(_ORIENTATION_TAG, 1) or 1)
        return orientation, exif.tobytes()
    except Exception:
        return 1, None


def _png_chunks(data: bytes):
    """Yield ``(type, payload)`` for each chunk of a PNG byte string."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield kind, data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length


def _png_bit_depth(data: bytes) -> int:
    """Bit depth from the IHDR chunk, which the PNG standard requires to come first."""
    kind, payload = next(_png_chunks(data), (b"", b""))
    return payload[8] if kind == b"IHDR" and len(payload) >= 13 else 0


def _decode_png16(data: bytes) -> _Decoded:
    width, height, rows, info = png.Reader(bytes=data).asDirect()
    pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    pixels = pixels.reshape(height, width, info["planes"])
    raw = next((payload for kind, payload in _png_chunks(data) if kind == b"eXIf"), None)
    return _Decoded(pixels, *_read_exif(raw))


def _decode_deep_tiff(data: bytes) -> _Decoded | None:
    """Decode a TIFF with more than 8 bits per sample; ``None`` leaves it to Pillow."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        if page.bitspersample <= 8:
            return None
        if page.dtype != np.uint16:
            raise ImageError(None, f"unsupported TIFF sample type ({page.dtype}; 8 or 16-bit "
                                   "unsigned integers supported)")
        try:
            arr = page.asarray()
        except ValueError as exc:
            if "imagecodecs" not in str(exc):
                raise
            raise ImageError(None, f"16-bit TIFF compression not supported ({exc})") from None
        photometric = int(page.photometric)
        orientation_tag = page.tags.get("Orientation")
        orientation = int(orientation_tag.value) if orientation_tag is not None else 1
        samples = page.samplesperpixel
        if arr.ndim == 3 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
            arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE):
        colour = 1
    elif photometric == tifffile.PHOTOMETRIC.RGB:
        colour = 3
    else:
        raise ImageError(None, f"unsupported 16-bit TIFF colour space "
                               f"({tifffile.PHOTOMETRIC(photometric).name})")
    # Keep the colour samples plus at most one extra sample (alpha); ignore further extras.
    arr = arr[..., :colour + (1 if samples > colour else 0)].copy()
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        arr[..., 0] = 65535 - arr[..., 0]
    return _Decoded(arr, orientation, None)


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Turn H×W(×C) pixels upright for EXIF orientation 1–8, exactly as exif_transpose does."""
    if orientation in (5, 6, 7, 8):
        a = np.swapaxes(a, 0, 1)  # orientations 5–8 are a transpose plus flips
    flips = {2: (1,), 3: (0, 1), 4: (0,), 5: (), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    for axis in flips:
        a = np.flip(a, axis)
    return np.ascontiguousarray(a)


# ----------------------------------------------------------------------------- writing


def _format_of(path: Path) -> tuple[str, frozenset[str], int]:
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(e.lstrip(".") for e in _FORMATS))
        raise ImageError(path, f"unsupported output format {path.suffix or '(no extension)'!r} "
                               f"(use one of: {known})") from None


def output_layout(path: str | os.PathLike[str], mode: str, bit_depth: int) -> tuple[str, int]:
    """The ``(mode, bit_depth)`` actually written for a requested layout and file extension.

    Formats that cannot store a layout get the nearest one they can: no alpha in JPEG (it is
    dropped), no greyscale in WebP (stored as RGB), no 16 bits outside PNG/TIFF. Callers can
    compare the result with what they asked for to warn the user.
    """
    if mode not in MODES or bit_depth not in (8, 16):
        raise ValueError(f"unknown layout {mode!r}/{bit_depth}-bit (modes {MODES}, 8 or 16 bits)")
    _, modes, max_depth = _format_of(Path(path))
    if mode not in modes:
        mode = next(m for m in _FALLBACK[mode] if m in modes)
    return mode, min(bit_depth, max_depth)


def write_image(path: str | os.PathLike[str], image: Image | np.ndarray, *, mode: str | None = None,
                bit_depth: int | None = None, quality: int | None = None) -> Path:
    """Write an image atomically in the layout it was read in (or ``mode``/``bit_depth``).

    ``image`` is an :class:`Image`, an H×W×3 RGB array or an H×W greyscale array (float in
    [0, 1], or uint8/uint16).
    The format follows the extension; see :func:`output_layout` for what each format keeps.
    ``quality`` applies to JPEG (default 95, 4:4:4 chroma — subsampling would discard the
    detail super-resolution restores) and WebP (default: lossless). Floats are clipped to
    [0, 1] and rounded half-to-even, as in the benchmark protocol. The source's EXIF block
    (orientation removed) is carried into 8-bit JPEG, PNG and WebP outputs. Any failure
    raises :class:`ImageError` and leaves no file behind.
    """
    target = Path(path)
    img = _as_image(image)
    fmt, _, _ = _format_of(target)
    out_mode, out_depth = output_layout(target, mode or img.mode, bit_depth or img.bit_depth)
    pixels = quantize(to_planes(img, out_mode), out_depth)
    try:
        with atomic_path(target) as tmp:
            if out_depth == 16 and fmt == "PNG":
                _write_png16(tmp, pixels, out_mode)
            elif fmt == "TIFF":
                _write_tiff(tmp, pixels, out_mode)
            else:
                _write_pillow(tmp, pixels, fmt, quality, img.exif)
    except (OSError, ValueError, png.Error) as exc:
        # strerror rather than str(): the latter names the temporary file, not the target.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ImageError(target, f"cannot write image ({reason})") from None
    return target


def _as_image(image: Image | np.ndarray) -> Image:
    if isinstance(image, Image):
        return image
    arr = np.asarray(image)
    bit_depth = 8
    if arr.dtype in (np.uint8, np.uint16):
        bit_depth = 16 if arr.dtype == np.uint16 else 8
        arr = arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    elif not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"expected a float, uint8 or uint16 image, got dtype {arr.dtype}")
    if arr.ndim == 2:  # a single plane is a greyscale picture
        return Image(rgb=np.repeat(arr[..., None], 3, axis=2), mode="L", bit_depth=bit_depth)
    return Image(rgb=arr, bit_depth=bit_depth)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an H×W×3 float image, computed in the image's own float dtype."""
    return rgb @ _LUMA.astype(rgb.dtype)


def to_planes(img: Image, mode: str) -> np.ndarray:
    """Float H×W×C planes for ``mode`` (grey as BT.601 luma, missing alpha as opaque)."""
    planes = [luma(img.rgb)] if mode.startswith("L") else [img.rgb[..., c] for c in range(3)]
    if mode.endswith("A"):
        opaque = np.ones(img.rgb.shape[:2], img.rgb.dtype)
        planes.append(img.alpha if img.alpha is not None else opaque)
    return np.stack(planes, axis=-1)


def _write_pillow(tmp: Path, pixels: np.ndarray, fmt: str, quality: int | None,
                  exif: bytes | None) -> None:
    im = PILImage.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    options: dict = {}
    if fmt == "JPEG":
        options = {"quality": 95 if quality is None else quality, "subsampling": 0}
    elif fmt == "WEBP":
        options = {"lossless": True} if quality is None else {"quality": quality}
    if exif and fmt in ("JPEG", "PNG", "WEBP"):
        options["exif"] = exif
    im.save(tmp, format=fmt, **options)


def _write_png16(tmp: Path, pixels: np.ndarray, mode: str) -> None:
    h, w, c = pixels.shape
    writer = png.Writer(w, h, greyscale=mode.startswith("L"), alpha=mode.endswith("A"), bitdepth=16)
    with open(tmp, "xb") as f:
        writer.write(f, pixels.reshape(h, w * c))


def _write_tiff(tmp: Path, pixels: np.ndarray, mode: str) -> None:
    # Deflate is the one lossless compression tifffile writes without optional codecs.
    tifffile.imwrite(tmp, pixels if pixels.shape[2] > 1 else pixels[..., 0],
                     photometric="minisblack" if mode.startswith("L") else "rgb",
                     extrasamples=["unassalpha"] if mode.endswith("A") else None,
                     compression="zlib")
