"""What one request of the demo page does, with no Gradio in it.

:class:`DemoService` keeps the last resolved model (resolving is the slow part), refuses what
the page cannot take — a file that is not an image, a photo too large for an interactive run,
a wrong kernel or weights file — with one :class:`DemoError` line, and runs a photo through
:func:`kxnet.inference.job.run_job` and :func:`~kxnet.inference.job.write_job` into a folder of
its own: the files and the sidecar of ``kxnet sr --save-kernel --stages``. The page's own
drawings (the input enlarged for the slider, the kernel with its fitted ellipse) go into a
``view/`` folder beside them, so the downloads are exactly what ``kxnet sr`` writes.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "MAX_MEGAPIXELS",
    "DemoError",
    "DemoService",
    "Outcome",
    "example_images",
    "image_size",
    "model_choices",
]

# 1000×1000 LR px take 666 s at ×4 on one core of the development machine (docs/speed.md,
# "Memory"); a page that makes someone wait much longer than a few minutes on a laptop is the
# wrong tool, and `kxnet sr` has resumable folder runs and a progress line for them.
MAX_MEGAPIXELS = 1.0
KEEP_REQUESTS = 8        # request folders kept on disk: Gradio copies the outputs before the next run
LARGE_INPUT_HINT = "for larger photos run: kxnet sr --tile 256 {name}"


class DemoError(ValueError):
    """A bad input or choice on the page, as the one line the page shows."""


@dataclass
class Outcome:
    """One run: ``files`` are what ``kxnet sr --save-kernel --stages`` writes (result first,
    sidecar second); ``before`` is the input enlarged by pixel replication to the result's
    size (the slider's left side); ``kernel_view`` the kernel drawn large with its fit."""

    folder: Path
    result: Path
    sidecar_path: Path
    sidecar: dict
    before: Path
    kernel_view: Path | None = None
    kernel_map: Path | None = None
    stages: Path | None = None
    files: list[Path] = field(default_factory=list)


def model_choices(entries: dict | None = None) -> list[tuple[str, str]]:
    """``(label, name)`` of every shipped model, by scale then name; the label carries the
    complete Set5 σn 0 cell, e.g. ``kxnet_x4.setting2 — ×4, Set5 28.84 dB (bicubic 24.35)``."""
    from ..models.zoo import read_manifest

    entries = read_manifest() if entries is None else entries
    out = []
    for name, entry in sorted(entries.items(), key=lambda kv: (kv[1].config.get("scale", 0), kv[0])):
        label = f"{name} — ×{entry.config.get('scale')}"
        cell = entry.reference_cell()
        if cell and cell.get("psnr") is not None:
            label += f", Set5 {cell['psnr']:.2f} dB"
            if cell.get("bicubic_psnr") is not None:
                label += f" (bicubic {cell['bicubic_psnr']:.2f})"
        out.append((label, name))
    return out


def example_images() -> list[Path]:
    """The bundled example photos (shipped inside the package, so installed copies have them)."""
    folder = Path(__file__).resolve().parent.parent / "examples"
    return sorted(folder.glob("*.png"))


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` from the file's header, without decoding its pixels; None when the
    header cannot be read (then :func:`kxnet.io.read_image` says what is wrong with the file).

    Raises :class:`DemoError` for a header beyond Pillow's decompression-bomb limit."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)   # the size guard follows
            with PILImage.open(path) as im:   # lazy: reads the header only
                return im.size
    except PILImage.DecompressionBombError as e:
        raise DemoError(f"{Path(path).name}: refused without decoding — {' '.join(str(e).split())}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    try:    # deep TIFFs (float, many samples) that Pillow cannot identify are read by tifffile
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tif.pages[0].shape
            return (int(shape[1]), int(shape[0])) if len(shape) >= 2 else None
    except Exception:   # not a TIFF either: read_image gives the message
        return None


class DemoService:
    """The page's state: the device, the last resolved model and the request folders.

    ``run`` is called by one request at a time (the page's queue allows one job), but the
    model is still kept under a lock so that a second caller from Python cannot race it.
    """

    def __init__(self, device="auto", max_megapixels: float = MAX_MEGAPIXELS, root: str | os.PathLike | None = None,
                 backend: str = "auto"):
        from ..inference.upscaler import resolve_device

        self.device = resolve_device(device)
        self.backend = backend
        self.max_pixels = int(max_megapixels * 1_000_000)
        self.root = Path(tempfile.mkdtemp(prefix="kxnet-demo-", dir=root))
        self._folders: deque[Path] = deque()
        self._lock = threading.Lock()
        self._key = None
        self._model = None

    # -- model ---------------------------------------------------------------------

    def model(self, spec: str, scale: int):
        """The resolved model for a shipped name or a weights file, kept until another is asked."""
        from ..models import ModelLoadError, ScaleMismatchError, resolve

        try:    # a weights file may be rewritten (a training run saving): its time stamp is part of the key
            path = Path(spec).expanduser()
            key = (str(path.resolve()), path.stat().st_mtime_ns) if path.is_file() else spec
        except (OSError, ValueError):   # not a usable path: resolve says what is wrong with it
            path, key = None, spec
        with self._lock:
            if key != self._key:
                self._key = self._model = None      # the old model's memory is freed before the next loads
                try:
                    self._model = resolve(str(path) if isinstance(key, tuple) else spec, device=self.device)
                except ModelLoadError as e:
                    raise DemoError(" ".join(str(e).split())) from None
                self._key = key
            resolved = self._model
        if resolved.scale != scale:
            e = ScaleMismatchError(spec, resolved.scale, scale)
            raise DemoError(f"{e.source} is a ×{e.model_scale} model but ×{e.asked} is chosen: "
                            f"choose ×{e.model_scale}, or a ×{e.asked} model")
        return resolved

    # -- a request -----------------------------------------------------------------

    def check_size(self, path, name: str) -> None:
        """Refuse a photo above the page's size limit from its header, before decoding it."""
        size = image_size(path)
        if size is not None and size[0] * size[1] > self.max_pixels:
            self._too_large(name, *size)

    def _too_large(self, name: str, w: int, h: int):
        raise DemoError(f"{name}: {w}×{h} is {w * h / 1e6:.1f} megapixels; this page takes photos up to "
                        f"{self.max_pixels / 1e6:g} MP — {LARGE_INPUT_HINT.format(name=name)}")

    def run(self, image_path, name: str | None = None, *, scale: int = 4, model: str | None = None,
            kernel_path=None, kernel_name: str | None = None, regions: str = "auto",
            progress: bool = False) -> Outcome:
        """Super-resolve the photo at ``image_path`` (``name``: its name as the user knows it)
        with ``model`` (a shipped name or a weights file; None: the default for ``scale``),
        blind or with the kernel file at ``kernel_path``; ``regions`` auto / on / off.
        Every bad input is a :class:`DemoError`; on any failure the request folder is removed."""
        folder = self._new_folder()
        try:
            return self._run(folder, Path(image_path), name or Path(image_path).name, scale, model,
                             kernel_path, kernel_name, regions, progress)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _run(self, folder, image_path, name, scale, model, kernel_path, kernel_name, regions, progress) -> Outcome:
        from ..inference.job import run_job, side_paths, write_job
        from ..inference.upscaler import MIN_INPUT_SIDE, REGION_MODES, Upscaler
        from ..io import ImageError, read_image
        from ..inference.routing import Router

        if regions not in REGION_MODES:
            raise DemoError(f"regions must be one of {', '.join(REGION_MODES)}, got {regions!r}")
        self.check_size(image_path, name)
        try:
            img = read_image(image_path, min_size=MIN_INPUT_SIDE)
        except ImageError as e:
            raise DemoError(f"{name}: {e.problem}") from None
        if img.width * img.height > self.max_pixels:    # a format whose header Pillow could not read
            self._too_large(name, img.width, img.height)

        def upscaler(name):
            return Upscaler(self.model(name, scale), self.device, progress=progress, regions=regions,
                            backend=self.backend)

        # without a model chosen, the photo's degradation estimate chooses (inference.routing)
        route = Router(scale, upscaler, forced=upscaler(model) if model else None).pick(img)
        resolved = route.upscaler.resolved
        kernel = None
        if kernel_path:
            kernel_name = kernel_name or Path(kernel_path).name
            kernel = self._kernel(kernel_path, kernel_name, resolved.config.kernel_size)
        if kernel is not None and not route.upscaler.takes_hr_kernel:
            raise DemoError(f"a {resolved.arch.name} model takes no HR blur kernel: run it without a kernel file")

        job = run_job(None, img, kernel, keep_stages=True, kernel_source=kernel_name if kernel is not None else None,
                      route=route)
        out = folder / f"{Path(name).stem or 'image'}_x{resolved.scale}.png"
        record = write_job(job, out, name, save_kernel=True, stages=True)
        side = side_paths(out)
        files = [out, side["json"], *(Path(p) for p in record["files"].values() if p)]

        view = folder / "view"
        before = self._before(job.source, resolved.scale, view / "before.png")
        kernel_view = None
        if job.kernel is not None:
            kernel_view = _write_kernel_view(job.kernel, record["kernel"], view / "kernel.png")
        return Outcome(folder=folder, result=out, sidecar_path=side["json"], sidecar=record, before=before,
                       kernel_view=kernel_view,
                       kernel_map=side["kernel_map"] if record["files"]["kernel_map"] else None,
                       stages=side["stages"] if record["files"]["stages"] else None, files=files)

    @staticmethod
    def _kernel(path, name: str, size: int):
        from ..inference.upscaler import load_kernel
        from ..io import ImageError

        try:
            return load_kernel(path, size)
        except ImageError as e:
            raise DemoError(f"kernel file {name}: {e.problem}") from None
        except ValueError as e:     # prepare_kernel names the file by its (temporary) path
            raise DemoError("kernel file " + " ".join(str(e).replace(str(path), name).split())) from None

    @staticmethod
    def _before(source, scale: int, path: Path) -> Path:
        """The input with each pixel repeated scale×scale: the result's size, nothing invented."""
        from ..io import Image, write_image

        grow = lambda a: np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
        big = Image(rgb=grow(source.rgb), alpha=None if source.alpha is None else grow(source.alpha),
                    mode=source.mode, bit_depth=8)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_image(path, big)

    def _new_folder(self) -> Path:
        while len(self._folders) >= KEEP_REQUESTS:
            shutil.rmtree(self._folders.popleft(), ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="run-", dir=self.root))
        self._folders.append(folder)
        return folder

    def close(self) -> None:
        """Remove every request folder."""
        shutil.rmtree(self.root, ignore_errors=True)
        self._folders.clear()


def _write_kernel_view(kernel: np.ndarray, fit: dict, path: Path, size: int = 336) -> Path:
    """The kernel drawn large (peak white) with the 2σ ellipse of its Gaussian fit in orange:
    what σ₁, σ₂ and θ mean, on the taps they were fitted to."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    from ..io import write_image
    from ..kernels import kernel_to_image

    grey = kernel_to_image(kernel, size=size)
    im = PILImage.fromarray(grey).convert("RGB")
    p = kernel.shape[-1]
    rep = grey.shape[0] / p
    if fit.get("sigma_x"):
        dx, dy = fit.get("centre_offset") or (0.0, 0.0)
        cx, cy = (p // 2 + 0.5 + dx) * rep, (p // 2 + 0.5 + dy) * rep
        a, b = 2 * fit["sigma_x"] * rep, 2 * fit["sigma_y"] * rep
        t = math.radians(fit["theta_deg"])     # clockwise on screen: x right, y down
        pts = [(cx + a * math.cos(u) * math.cos(t) - b * math.sin(u) * math.sin(t),
                cy + a * math.cos(u) * math.sin(t) + b * math.sin(u) * math.cos(t))
               for u in np.linspace(0, 2 * math.pi, 97)]
        ImageDraw.Draw(im).line(pts, fill=(255, 140, 0), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, np.asarray(im))
