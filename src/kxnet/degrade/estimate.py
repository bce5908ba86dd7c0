"""What happened to a photo besides its blur: its JPEG history and its noise level.

KXNet estimates the kernel; a photo as people have it was also compressed and is noisy, which the
paper's models sharpen along with the edges. This module estimates both, for every input:

* **JPEG quality.** A JPEG file states it: its luma quantisation table is the IJG table of one
  quality (what libjpeg, Pillow, browsers and most cameras write), read exactly by comparing the
  file's table with each quality's, and its chroma subsampling is read from the frame header.
  A PNG or a video frame that was once a JPEG keeps the table in its pixels: on the 8×8 block
  grid of the last compression (possibly shifted by a crop) the luma DCT coefficients lie on
  multiples of the table's steps. :func:`estimate_jpeg_from_pixels` finds the grid (the offset
  at which the most coefficients are quantised away to zero) and then the lowest quality whose
  steps the coefficients fit — larger steps that do not divide the true ones leave residuals a
  quarter of a step on average; the true steps leave the rounding of the decoded pixels only.
  (The approach of the image-forensics literature, e.g. Fan & de Queiroz, IEEE TIP 2003.)
* **Noise σ** in 8-bit units: the smallest eigenvalue of the covariance of weakly textured 7×7
  patches of each colour channel (after Liu, Tanaka & Okutomi 2013): signal lives in a few principal directions of
  such patches, white noise spreads evenly over all of them. For camera noise, whose σ grows with
  the signal, it is the σ of the patches' mean level, close to the RMS σ over the photo. On a
  compressed photo that is the noise the compression left; the σ before it comes from a small
  learned network (:mod:`.noise_net`).

Everything works on float RGB in [0, 1] (H×W×3) as :mod:`kxnet.io` reads it; the cost is a few
block DCTs, one eigen-decomposition and, for a compressed photo, the small network on a
160² crop: well under a second on a 256² photo
(benchmarks/degradation_estimate.py prints the figures and the accuracy).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .noise_net import noise_before_jpeg

__all__ = ["DegradationEstimate", "estimate_degradation", "estimate_jpeg_from_pixels", "estimate_noise",
           "ijg_table", "jpeg_file_quality"]

# The IJG luminance table at quality 50 (ITU-T T.81 Annex K), row-major.
_LUMA50 = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
_SAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
_ANALYSIS_SIDE = 384          # pixels analysed at most per side (a centre crop): bounds the cost
_MIN_BLOCKS = 16
_REFINE = 8                   # qualities above the lowest fitting one that are compared by their fit


def ijg_table(quality: int) -> np.ndarray:
    """The 64 luma quantisation steps libjpeg writes at ``quality`` (1…100), row-major."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip((_LUMA50 * scale + 50) // 100, 1, 255)


_TABLES = np.stack([ijg_table(q) for q in range(1, 101)])     # quality q at row q-1


@dataclass(frozen=True)
class DegradationEstimate:
    """``jpeg_quality`` (None: no JPEG history found), how it was found (``"file"``: the file's
    tables; ``"pixels"``), the chroma subsampling where a file states it, ``grid`` the block
    grid's (row, column) offset, ``noise_sigma`` the noise in the pixels (8-bit units; after
    compression, what it left), ``seconds`` the cost, and for a compressed photo
    ``noise_before_jpeg``, the σ it had before compression (:mod:`.noise_net`)."""

    jpeg_quality: int | None
    jpeg_source: str | None
    chroma: str | None
    grid: tuple[int, int] | None
    noise_sigma: float
    seconds: float = 0.0
    noise_before_jpeg: float | None = None

    @property
    def compressed(self) -> bool:
        return self.jpeg_quality is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grid"] = list(self.grid) if self.grid is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DegradationEstimate":
        """The estimate a :meth:`to_dict` record (a sidecar's ``degradation``) holds; other keys
        are ignored, fields the record lacks take their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if values.get("grid") is not None:
            values["grid"] = tuple(values["grid"])
        return cls(**values)

    def summary(self) -> str:
        """``JPEG q75 (4:2:0, file), noise σ 5.1 before it, 0.4 left`` or ``no JPEG history, noise
        σ 1.2``. Compression removes most noise, so a compressed photo's pixels show only what it
        left; the σ before it is the learned estimate's (docs/photo.md, "The degradation estimate")."""
        if self.jpeg_quality is None:
            return f"no JPEG history, noise σ {self.noise_sigma:.1f}"
        detail = ", ".join(x for x in (self.chroma, self.jpeg_source) if x)
        jpeg = f"JPEG q{self.jpeg_quality} ({detail})"
        if self.noise_before_jpeg is None:
            return f"{jpeg}, noise left σ {self.noise_sigma:.1f}"
        return f"{jpeg}, noise σ {self.noise_before_jpeg:.1f} before it, {self.noise_sigma:.1f} left"

    def with_jpeg_quality(self, quality: int | None, rgb: np.ndarray) -> "DegradationEstimate":
        """This estimate with the JPEG history a user gave instead (``None``: never compressed;
        a quality: ``"given"``), the noise before compression re-estimated for it."""
        if quality is None:
            return DegradationEstimate(None, None, None, None, self.noise_sigma, self.seconds)
        return DegradationEstimate(quality, "given", self.chroma, self.grid, self.noise_sigma, self.seconds,
                                   round(noise_before_jpeg(rgb, quality), 2))


# ---------------------------------------------------------------------------------- JPEG files


def jpeg_file_quality(path: str | Path) -> tuple[int, str | None] | None:
    """(quality, chroma subsampling) of a JPEG file from its tables, or None if ``path`` is not a
    JPEG. The quality is the IJG quality whose luma table is nearest the file's (exact for files
    written by libjpeg at any quality; the nearest for other encoders' tables)."""
    from PIL import Image as PILImage
    from PIL import JpegImagePlugin

    try:
        with PILImage.open(path) as im:
            if im.format != "JPEG" or not getattr(im, "quantization", None):
                return None
            table = np.asarray(im.quantization[0], dtype=np.int64)
            chroma = _SAMPLING.get(JpegImagePlugin.get_sampling(im)) if im.mode == "RGB" else None
    except OSError:
        return None
    if table.size != 64:
        return None
    error = np.abs(np.log(_TABLES) - np.log(np.maximum(table, 1))).sum(axis=1)
    return int(np.argmin(error)) + 1, chroma


# ------------------------------------------------------------------------------ JPEG from pixels


def _luma(rgb: np.ndarray) -> np.ndarray:
    """JPEG's Y (0…255, level-shifted by −128) of float RGB in [0, 1]."""
    y = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114]) * 255.0
    return y - 128.0


def _dct_matrix() -> np.ndarray:
    n = np.arange(8)
    m = np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m


_DCT = _dct_matrix()


def _block_dct(y: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The 8×8 DCT (orthonormal, as JPEG's) of every whole block of ``y`` on the grid that starts
    at (dy, dx): N×64 coefficients, row-major frequencies."""
    h, w = (y.shape[0] - dy) // 8 * 8, (y.shape[1] - dx) // 8 * 8
    blocks = y[dy:dy + h, dx:dx + w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    return (_DCT @ blocks @ _DCT.T).reshape(-1, 64)


def _zero_share(coeffs: np.ndarray) -> float:
    """The share of AC coefficients quantised to zero (|c| < 0.75: only pixel rounding is left)."""
    return float((np.abs(coeffs[:, 1:]) < 0.75).mean())


def _fit(coeffs: np.ndarray, steps: np.ndarray) -> tuple[float, int]:
    """How far the coefficients lie from multiples of ``steps`` (64 per block): the mean residual
    as a share of the step, over the coefficients that the steps round to a non-zero multiple
    (zeros say nothing: any step fits them); and how many there were."""
    use = np.abs(coeffs) >= steps / 2
    use[:, 0] = False                 # DC: its level varies little across blocks of a smooth photo
    use &= steps[None, :] >= 2        # a step of one fits anything
    if not use.any():
        return 0.5, 0
    ratio = coeffs / steps
    residual = np.abs(ratio - np.round(ratio))
    return float(residual[use].mean()), int(use.sum())


def estimate_jpeg_from_pixels(rgb: np.ndarray, max_residual: float = 0.15,
                              min_coefficients: int = 200) -> tuple[int | None, tuple[int, int] | None]:
    """(IJG quality, grid offset) of the last JPEG compression the pixels went through, or
    (None, None) where they show none. ``max_residual``: the mean residual (share of a step)
    under which the coefficients count as quantised — unquantised ones leave about 0.25."""
    y = _luma(rgb)
    h, w = y.shape
    top, left = max(0, (h - _ANALYSIS_SIDE) // 2) // 8 * 8, max(0, (w - _ANALYSIS_SIDE) // 2) // 8 * 8
    y = y[top:top + _ANALYSIS_SIDE + 7, left:left + _ANALYSIS_SIDE + 7]
    if min(y.shape) < 8 * 4 + 7:
        return None, None
    shares = {(dy, dx): _zero_share(_block_dct(y, dy, dx)) for dy in range(8) for dx in range(8)}
    (dy, dx), best = max(shares.items(), key=lambda kv: kv[1])
    coeffs = _block_dct(y, dy, dx)
    if coeffs.shape[0] < _MIN_BLOCKS:
        return None, None
    # the lowest quality (largest steps) the coefficients fit is near the one they were quantised
    # with: smaller steps that divide the true ones fit too, larger ones do not. Just above it the
    # true table fits best, as a share of its steps (a divisor's residual is a larger share of it).
    fits = [_fit(coeffs, _TABLES[q - 1].astype(np.float64)) for q in range(1, 101)]
    fitting = [q for q, (residual, count) in enumerate(fits, 1) if count >= min_coefficients and residual < max_residual]
    if not fitting:
        return None, None
    near = range(fitting[0], min(fitting[0] + _REFINE, 100) + 1)
    quality = min((q for q in near if fits[q - 1][1] >= min_coefficients), key=lambda q: fits[q - 1][0])
    return quality, ((dy + top) % 8, (dx + left) % 8)


# ----------------------------------------------------------------------------------- noise


def _channel_noise(c: np.ndarray, patch: int, iterations: int) -> float:
    """σ of one channel (8-bit units) from its weakly textured patches."""
    from numpy.lib.stride_tricks import sliding_window_view

    h, w = c.shape
    step = max(1, math.ceil(math.sqrt(h * w / 20000)))       # at most 20,000 patches: the cost stays flat
    windows = sliding_window_view(c, (patch, patch))[::step, ::step]
    windows = windows.reshape(-1, patch * patch)
    grad = np.abs(np.diff(c, axis=0))[:, :-1] + np.abs(np.diff(c, axis=1))[:-1, :]
    texture = sliding_window_view(grad, (patch - 1, patch - 1))[::step, ::step].sum(axis=(-2, -1)).reshape(-1)
    windows = windows[: texture.size]
    keep = np.ones(windows.shape[0], bool)
    sigma = 0.0
    for _ in range(iterations):
        chosen = windows[keep]
        if chosen.shape[0] < patch * patch * 4:
            break
        sigma = float(np.sqrt(max(np.linalg.eigvalsh(np.cov(chosen, rowvar=False))[0], 0.0)))
        # weak texture: no more gradient than noise of this σ gives (E|N(0, 2σ²)| = 1.128σ per
        # difference, two differences a pixel), with a margin
        keep = texture <= (patch - 1) ** 2 * 2 * (1.1284 * sigma * 1.5 + 0.5)
    return sigma


def estimate_noise(rgb: np.ndarray, patch: int = 7, iterations: int = 3) -> float:
    """σ of the noise in 8-bit units: the mean over the colour channels of each one's estimate
    from its weakly textured patches."""
    a = rgb[..., :3].astype(np.float64) * 255.0
    if min(a.shape[:2]) < patch + 2:
        return 0.0
    return float(np.mean([_channel_noise(a[..., c], patch, iterations) for c in range(a.shape[-1])]))


# ---------------------------------------------------------------------------------- both


def estimate_degradation(rgb: np.ndarray, path: str | Path | None = None) -> DegradationEstimate:
    """The JPEG history (from the file at ``path`` when it is a JPEG, else from the pixels) and
    the noise σ of a photo (H×W×3 float in [0, 1])."""
    import time

    t0 = time.perf_counter()
    from_file = jpeg_file_quality(path) if path is not None else None
    if from_file is not None:
        quality, chroma = from_file
        source, grid = "file", (0, 0)
    else:
        quality, grid = estimate_jpeg_from_pixels(rgb)
        source, chroma = ("pixels" if quality is not None else None), None
    sigma = estimate_noise(rgb)
    before = None if quality is None else round(noise_before_jpeg(rgb, quality), 2)
    return DegradationEstimate(quality, source, chroma, grid, round(sigma, 2), round(time.perf_counter() - t0, 3),
                               before)
