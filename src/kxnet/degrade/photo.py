"""Degradations beyond the paper: camera noise and JPEG, after the paper's blur and decimation.

The paper's observation model (:func:`kxnet.degrade.degrade`) ends with white Gaussian noise
and 8-bit rounding. Photos as people have them went on through a camera's processing and a
JPEG encoder, so here, after the same blur and decimation:

1. noise: the paper's white Gaussian noise of σ (8-bit units), or **camera noise** — its
   variance grows with the signal (shot noise, ``σ² = read² + shot·v`` for a pixel value v in
   8-bit units) and it is correlated across the colour channels (demosaicing and colour
   correction mix the sensor's channels; ``corr`` is the correlation between any two);
2. 8-bit rounding, as the paper;
3. optionally **JPEG** at a quality, with 4:2:0 chroma subsampling as cameras and browsers
   write it (or 4:4:4), through Pillow's libjpeg.

Everything is drawn from the caller's ``torch.Generator``, so a sample stays a pure function
of its seed. With white noise and no JPEG, :func:`degrade_photo` is :func:`degrade` exactly
(the same draws, the same bytes). The protocol and the training mixture: ``docs/photo.md``.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from ..physics import blur_downsample

__all__ = ["CAMERA_PRESETS", "CameraNoise", "PhotoDegradation", "PhotoMix", "add_camera_noise",
           "degrade_photo", "jpeg_roundtrip", "parse_degradation"]

CHROMA = {"4:2:0": 2, "4:4:4": 0}   # Pillow's `subsampling` codes


@dataclass(frozen=True)
class CameraNoise:
    """Signal-dependent, channel-correlated noise: ``σ(v)² = read² + shot·v`` (8-bit units),
    the channels' noise correlated by ``corr`` ∈ [0, 1] (1: the same noise in R, G and B)."""

    read: float
    shot: float
    corr: float

    def __post_init__(self):
        if self.read < 0 or self.shot < 0:
            raise ValueError(f"camera noise needs read ≥ 0 and shot ≥ 0, got {self.read}, {self.shot}")
        if not 0.0 <= self.corr <= 1.0:
            raise ValueError(f"camera noise correlation must be in [0, 1], got {self.corr}")

    @property
    def tag(self) -> str:
        return f"cam{self.read:g}-{self.shot:g}-{self.corr:g}"

    def sigma_at(self, value: float) -> float:
        """The noise σ (8-bit units) at pixel value ``value`` (0…255)."""
        return math.sqrt(self.read ** 2 + self.shot * value)


# Named cells: "cam" is a phone or compact camera at a moderate ISO (σ 2 in the shadows,
# about 5.5 at mid-grey and 7.4 at white; luminance-dominated noise).
CAMERA_PRESETS = {"cam": CameraNoise(read=2.0, shot=0.2, corr=0.6)}


def add_camera_noise(lr: torch.Tensor, noise: CameraNoise, generator: torch.Generator | None = None) -> torch.Tensor:
    """``lr + σ(lr)·z`` with ``z`` unit-variance and channel-correlated; ``lr`` is B×C×H×W in
    [0, 1], σ evaluated on the clean (clamped) signal. Draws a B×1×H×W shared part, then B×C×H×W."""
    shared = torch.randn((lr.shape[0], 1, *lr.shape[2:]), generator=generator, dtype=torch.float32, device=lr.device)
    own = torch.randn(lr.shape, generator=generator, dtype=torch.float32, device=lr.device)
    z = math.sqrt(noise.corr) * shared + math.sqrt(1.0 - noise.corr) * own
    variance = (noise.read / 255.0) ** 2 + (noise.shot / 255.0) * lr.clamp(0.0, 1.0)
    return lr + variance.sqrt() * z


def jpeg_roundtrip(lr: torch.Tensor, quality: int, chroma: str = "4:2:0", grid: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Encode each image of ``lr`` (B×3×H×W on the 8-bit grid) as a baseline JPEG and decode it.

    ``grid`` shifts the 8×8 block grid by (rows, columns): the image is mirror-padded at the top
    and left by that much before encoding and the padding cut off after, so training patches do
    not always start on a block boundary as a whole photo does.
    """
    from PIL import Image as PILImage

    if chroma not in CHROMA:
        raise ValueError(f"JPEG chroma subsampling must be one of {list(CHROMA)}, got {chroma!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1…100, got {quality}")
    dy, dx = grid
    out = []
    for img in lr:
        a = torch.round(img.clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        if dy or dx:
            a = np.pad(a, ((dy, 0), (dx, 0), (0, 0)), mode="reflect")
        buf = io.BytesIO()
        PILImage.fromarray(a, "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=CHROMA[chroma],
                                          optimize=False, progressive=False)
        with PILImage.open(io.BytesIO(buf.getvalue())) as im:
            b = np.asarray(im.convert("RGB"))[dy:, dx:]
        out.append(torch.from_numpy(b.copy()).permute(2, 0, 1))
    return torch.stack(out).to(device=lr.device, dtype=torch.float32) / 255.0


@dataclass(frozen=True)
class PhotoDegradation:
    """What follows blur and decimation: white noise σ (the paper's) or camera noise, 8-bit
    rounding, then JPEG at ``jpeg`` quality (None: none)."""

    noise: float = 0.0
    camera: CameraNoise | None = None
    jpeg: int | None = None
    chroma: str = "4:2:0"
    grid: tuple[int, int] = field(default=(0, 0), compare=False)   # JPEG block-grid shift (training only)

    def __post_init__(self):
        if self.noise < 0:
            raise ValueError(f"noise level must be ≥ 0, got {self.noise}")
        if self.camera is not None and self.noise:
            raise ValueError("camera noise replaces the white noise: give one of them")
        if self.jpeg is not None and not 1 <= self.jpeg <= 100:
            raise ValueError(f"JPEG quality must be in 1…100, got {self.jpeg}")
        if self.chroma not in CHROMA:
            raise ValueError(f"JPEG chroma subsampling must be one of {list(CHROMA)}, got {self.chroma!r}")

    @property
    def is_paper(self) -> bool:
        """White noise only: the paper's degradation."""
        return self.camera is None and self.jpeg is None

    @property
    def spec(self) -> str:
        """The text :func:`parse_degradation` reads back: ``5``, ``5+jpeg75``, ``cam+jpeg90:444``."""
        named = {v: k for k, v in CAMERA_PRESETS.items()}
        parts = [named.get(self.camera, self.camera.tag) if self.camera else f"{self.noise:g}"]
        if self.jpeg is not None:
            parts.append(f"jpeg{self.jpeg}" + (":444" if self.chroma == "4:4:4" else ""))
        return "+".join(parts)

    @property
    def extra_tag(self) -> str:
        """The part of a file or cache name beyond the paper's noise tag ('' for the paper's)."""
        parts = [self.camera.tag] if self.camera else []
        if self.jpeg is not None:
            parts.append(f"jpeg{self.jpeg}" + ("c444" if self.chroma == "4:4:4" else ""))
        return "_".join(parts)

    def to_dict(self) -> dict:
        return {"noise": self.noise, "camera": None if self.camera is None else
                {"read": self.camera.read, "shot": self.camera.shot, "corr": self.camera.corr},
                "jpeg": self.jpeg, "chroma": self.chroma if self.jpeg is not None else None}

    def equivalent_sigma(self, lr: torch.Tensor) -> float:
        """One σ (8-bit units) for the noise: the white σ, or camera noise's RMS σ over ``lr``."""
        if self.camera is None:
            return float(self.noise)
        mean = float(lr.clamp(0, 1).mean()) * 255.0
        return math.sqrt(self.camera.read ** 2 + self.camera.shot * mean)


_SPEC_TERM = re.compile(r"^(?:(?P<noise>\d+(?:\.\d*)?)|(?P<cam>cam\w*)|(?P<camp>cam(?P<r>[\d.]+)-(?P<s>[\d.]+)-(?P<c>[\d.]+))"
                        r"|jpeg(?P<q>\d+)(?::(?P<ch>420|444))?)$")


def parse_degradation(text: str | float | int | PhotoDegradation) -> PhotoDegradation:
    """``"5"``, ``"5+jpeg75"``, ``"cam+jpeg90"``, ``"cam2-0.2-0.6+jpeg80:444"`` → a degradation.

    Terms joined by ``+``: a number is the white noise σ; ``cam`` (a preset of
    :data:`CAMERA_PRESETS`) or ``camREAD-SHOT-CORR`` is camera noise; ``jpegQ`` adds JPEG at
    quality Q with 4:2:0 chroma (``:444`` for none)."""
    if isinstance(text, PhotoDegradation):
        return text
    if isinstance(text, (int, float)):
        return PhotoDegradation(noise=float(text))
    kw: dict = {}
    for term in str(text).replace(" ", "").split("+"):
        m = _SPEC_TERM.match(term)
        if m is None:
            raise ValueError(f"degradation {text!r}: cannot read {term!r} (terms: a noise σ such as 5, "
                             f"{', '.join(CAMERA_PRESETS)} or camREAD-SHOT-CORR, jpegQ[:444], joined by +)")
        if m["noise"] is not None:
            key, value = "noise", float(m["noise"])
        elif m["camp"] is not None:
            key, value = "camera", CameraNoise(float(m["r"]), float(m["s"]), float(m["c"]))
        elif m["cam"] is not None:
            if m["cam"] not in CAMERA_PRESETS:
                raise ValueError(f"degradation {text!r}: unknown camera preset {m['cam']!r} "
                                 f"(known: {', '.join(CAMERA_PRESETS)}; or camREAD-SHOT-CORR)")
            key, value = "camera", CAMERA_PRESETS[m["cam"]]
        else:
            key, value = "jpeg", int(m["q"])
            if m["ch"] == "444":
                kw["chroma"] = "4:4:4"
        if key in kw:
            raise ValueError(f"degradation {text!r}: {key} given twice")
        kw[key] = value
    return PhotoDegradation(**kw)


def degrade_photo(hr: torch.Tensor, kernel: torch.Tensor, scale: int, how: PhotoDegradation,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``jpeg(quantise((modcrop(X) ⊗ K)↓s + noise))``: :func:`kxnet.degrade.degrade` followed
    by JPEG, with camera noise where ``how`` has it. Shapes and ranges as :func:`degrade`."""
    from . import degrade, modcrop, quantise

    if how.camera is None:
        lr = degrade(hr, kernel, scale, how.noise, generator)
    else:
        squeeze = hr.dim() == 3
        x = modcrop(hr.unsqueeze(0) if squeeze else hr, scale).to(torch.float32)
        k = kernel if kernel.dim() == 3 else kernel.unsqueeze(0).expand(x.shape[0], -1, -1)
        lr = blur_downsample(x, k.to(device=x.device, dtype=torch.float32), scale)
        lr = quantise(add_camera_noise(lr, how.camera, generator))
        lr = lr[0] if squeeze else lr
    if how.jpeg is None:
        return lr
    batched = lr if lr.dim() == 4 else lr.unsqueeze(0)
    out = jpeg_roundtrip(batched, how.jpeg, how.chroma, how.grid)
    return out if lr.dim() == 4 else out[0]


@dataclass
class PhotoMix:
    """The training mixture of degradations (``data.photo`` in a recipe).

    A ``clean`` share of samples is degraded as the paper does (the setting's kernel and white
    noise, nothing after), so clean inputs keep being learnt; the rest get white noise of
    σ ∈ ``white_sigma`` or (with probability ``camera``) camera noise drawn from the three
    ranges, then JPEG with probability ``jpeg`` at a quality drawn from ``jpeg_quality``,
    4:2:0 with probability ``chroma_420`` (else 4:4:4), its block grid shifted at random.
    """

    clean: float = 0.25
    white_sigma: tuple[float, float] = (0.0, 15.0)
    camera: float = 0.5
    read: tuple[float, float] = (0.5, 5.0)
    shot: tuple[float, float] = (0.0, 0.5)
    corr: tuple[float, float] = (0.0, 0.9)
    jpeg: float = 0.9
    jpeg_quality: tuple[int, int] = (30, 95)
    chroma_420: float = 0.75

    def check(self) -> list[tuple[str, str]]:
        """(key, problem) for every value out of range (empty when usable)."""
        bad = []
        for key in ("clean", "camera", "jpeg", "chroma_420"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                bad.append((key, f"a probability in [0, 1], got {getattr(self, key)}"))
        for key, lo in (("white_sigma", 0.0), ("read", 0.0), ("shot", 0.0), ("corr", 0.0), ("jpeg_quality", 1)):
            a, b = getattr(self, key)
            if not lo <= a <= b or (key == "corr" and b > 1) or (key == "jpeg_quality" and b > 100):
                bad.append((key, f"an increasing range within the allowed values, got {[a, b]}"))
        return bad

    def sample(self, generator: torch.Generator) -> PhotoDegradation | None:
        """One draw; None for a clean (paper) sample. Always draws the same 11 numbers, so the
        draws after it do not depend on which branch was taken."""
        u = torch.rand(11, generator=generator, dtype=torch.float64).tolist()

        def lerp(r, t):
            return r[0] + (r[1] - r[0]) * t

        if u[0] < self.clean:
            return None
        camera = None
        noise = lerp(self.white_sigma, u[2])
        if u[1] < self.camera:
            camera, noise = CameraNoise(lerp(self.read, u[3]), lerp(self.shot, u[4]), lerp(self.corr, u[5])), 0.0
        jpeg = None
        if u[6] < self.jpeg:
            lo, hi = self.jpeg_quality
            jpeg = min(hi, lo + int(u[7] * (hi - lo + 1)))
        chroma = "4:2:0" if u[8] < self.chroma_420 else "4:4:4"
        grid = (int(u[9] * 8), int(u[10] * 8))
        return PhotoDegradation(noise=noise, camera=camera, jpeg=jpeg, chroma=chroma, grid=grid)
