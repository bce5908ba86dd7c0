"""Training batches: random HR crops degraded on the fly (docs/protocol.md, "Test sets").

Determinism by construction: sample ``index`` of the global batch of optimisation step
``step`` is a pure function of ``(seed, step, index)`` — its own ``torch.Generator`` is seeded
from a hash of the three and draws, in order, the image, the crop, the flips, the kernel (and
noise level) and the noise. Nothing depends on earlier samples, on the number of DataLoader
workers or on the number of DDP ranks, so a run resumed at step ``n`` or split over ranks sees
exactly the batches an uninterrupted single-process run would.

The blur and noise are :func:`kxnet.degrade.degrade` and the kernels
:func:`kxnet.kernels.sample_training_kernels` — the same code that makes the test sets.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..degrade import degrade
from ..degrade.photo import PhotoMix, degrade_photo
from ..io import list_images, read_image, to_uint8
from ..kernels import sample_training_kernels

__all__ = [
    "HRImagePool",
    "TrainingSamples",
    "StepBatchSampler",
    "build_loader",
    "recipe_samples",
    "sample_seed",
    "rank_slice",
]

log = logging.getLogger(__name__)


def sample_seed(seed: int, step: int, index: int) -> int:
    """A 63-bit generator seed from (seed, step, index); a hash, so nearby keys are unrelated."""
    digest = hashlib.blake2b(f"kxnet-train:{seed}:{step}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header when Pillow can read it, else by decoding."""
    try:
        from PIL import Image as PILImage

        with PILImage.open(path) as im:
            w, h = im.size
        return h, w
    except Exception:  # formats Pillow cannot parse (some deep TIFFs): decode fully
        rgb = read_image(path).rgb
        return rgb.shape[0], rgb.shape[1]


class HRImagePool:
    """The HR training images, decoded (and cached) on demand.

    Images whose short side is below the HR crop are mirror-padded up to it when they are at
    least half the crop (``small_images="pad"``) and skipped otherwise (or always, with
    ``"skip"``). Decoded images are kept as uint8 (16-bit sources as float32) while they fit
    in ``cache_bytes``; :meth:`preload` decodes everything up front when the whole set fits,
    so DataLoader workers forked afterwards share the pixels.
    """

    def __init__(self, hr_dirs, crop: int, small_images: str = "pad", recursive: bool = True,
                 cache_bytes: int = 0):
        hr_dirs = [hr_dirs] if isinstance(hr_dirs, (str, Path)) else list(hr_dirs)
        for d in hr_dirs:
            if not Path(d).exists():
                raise FileNotFoundError(f"{d}: no such folder of HR images")
        paths = list_images(hr_dirs, recursive=recursive)
        if not paths:
            raise FileNotFoundError(f"no images found in {', '.join(map(str, hr_dirs))}")
        self.crop = crop
        self.cache_bytes = cache_bytes
        self.paths: list[Path] = []
        self.sizes: list[tuple[int, int]] = []
        self.skipped: list[Path] = []
        self.padded = 0
        min_side = crop if small_images == "skip" else (crop + 1) // 2
        for p in paths:
            h, w = _image_size(p)
            if min(h, w) < min_side:
                self.skipped.append(p)
                continue
            self.padded += min(h, w) < crop
            self.paths.append(p)
            self.sizes.append((h, w))
        if not self.paths:
            raise ValueError(f"all {len(paths)} HR images are smaller than the {crop}×{crop} HR crop "
                             f"(need a side ≥ {min_side}); lower data.lr_patch")
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.paths)

    def nbytes_estimate(self) -> int:
        return sum(3 * max(h, self.crop) * max(w, self.crop) for h, w in self.sizes)

    def preload(self, progress: bool = False) -> bool:
        """Decode every image now if the set fits the cache budget; returns whether it did."""
        if self.nbytes_estimate() > self.cache_bytes:
            return False
        from tqdm import tqdm

        for i in tqdm(range(len(self)), desc="decoding HR images", unit="img", disable=not progress):
            self.get(i)
        return True

    def _decode(self, i: int) -> np.ndarray:
        img = read_image(self.paths[i])
        arr = to_uint8(img.rgb) if img.bit_depth == 8 else img.rgb.astype(np.float32)
        h, w = arr.shape[:2]
        if h < self.crop or w < self.crop:
            ph, pw = max(0, self.crop - h), max(0, self.crop - w)
            arr = np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")
        return arr

    def get(self, i: int) -> np.ndarray:
        """Image ``i`` as H×W×3 (uint8 or float32), at least crop×crop."""
        arr = self._cache.get(i)
        if arr is not None:
            return arr
        arr = self._decode(i)
        if self._cached_bytes + arr.nbytes <= self.cache_bytes:
            self._cache[i] = arr
            self._cached_bytes += arr.nbytes
        return arr


class TrainingSamples(Dataset):
    """``dataset[(step, index)]`` → ``{"lr", "hr", "kernel", "noise"}`` for one training sample.

    ``hr`` is 3×(s·P)×(s·P) float32 in [0, 1], ``lr`` 3×P×P on the 8-bit grid, ``kernel`` p×p
    (sums to 1), ``noise`` the σn used (8-bit units; camera noise's RMS σ). With ``photo`` (a
    :class:`~kxnet.degrade.photo.PhotoMix`) the noise and what follows it are drawn from that
    mixture after the kernel; without it a sample is the paper's, draw for draw.
    """

    def __init__(self, pool: HRImagePool, scale: int, setting: int, lr_patch: int, seed: int = 0,
                 hflip: bool = True, vflip: bool = True, transpose: bool = True, photo: PhotoMix | None = None):
        if pool.crop != lr_patch * scale:
            raise ValueError(f"pool crop {pool.crop} != lr_patch·scale = {lr_patch * scale}")
        self.pool = pool
        self.scale = scale
        self.setting = setting
        self.lr_patch = lr_patch
        self.seed = seed
        self.flips = (hflip, vflip, transpose)
        self.photo = photo

    def __len__(self) -> int:  # sampled by key, not by position
        return len(self.pool)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        step, index = key
        return self.sample(step, index)

    def sample(self, step: int, index: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(sample_seed(self.seed, step, index))
        crop = self.pool.crop
        i = int(torch.randint(len(self.pool), (1,), generator=gen))
        arr = self.pool.get(i)
        h, w = arr.shape[:2]
        top = int(torch.randint(h - crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - crop + 1, (1,), generator=gen))
        patch = np.ascontiguousarray(arr[top:top + crop, left:left + crop].transpose(2, 0, 1))
        hr = torch.from_numpy(patch)
        hr = hr.float() / 255.0 if hr.dtype == torch.uint8 else hr.float()
        draws = torch.rand(3, generator=gen)  # always drawn, so the flags never shift later draws
        hflip, vflip, transpose = (bool(d < 0.5) and on for d, on in zip(draws, self.flips))
        if hflip:
            hr = hr.flip(-1)
        if vflip:
            hr = hr.flip(-2)
        if transpose:
            hr = hr.transpose(-1, -2)
        hr = hr.contiguous()
        kb = sample_training_kernels(self.setting, self.scale, 1, gen)
        how = self.photo.sample(gen) if self.photo is not None else None
        if how is None:
            lr = degrade(hr.unsqueeze(0), kb.kernels, self.scale, kb.noise_sigma, gen)[0]
            noise = kb.noise_sigma[0]
        else:
            lr = degrade_photo(hr.unsqueeze(0), kb.kernels, self.scale, how, gen)[0]
            noise = torch.tensor(how.equivalent_sigma(lr), dtype=torch.float32)
        return {"lr": lr, "hr": hr, "kernel": kb.kernels[0], "noise": noise}

    def batch(self, step: int, indices) -> dict[str, torch.Tensor]:
        """The samples ``indices`` of ``step``, collated (what the DataLoader yields)."""
        samples = [self.sample(step, i) for i in indices]
        return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def rank_slice(global_batch: int, rank: int, world_size: int) -> range:
    """The indices of the global batch that ``rank`` computes (contiguous, equal sizes)."""
    if global_batch % world_size:
        raise ValueError(f"train.batch {global_batch} is not divisible by the {world_size} processes")
    per = global_batch // world_size
    return range(rank * per, (rank + 1) * per)


class StepBatchSampler(Sampler):
    """Yields, for steps ``first … last`` (inclusive), this rank's keys ``[(step, index), …]``."""

    def __init__(self, first: int, last: int, global_batch: int, rank: int = 0, world_size: int = 1):
        self.first, self.last = first, last
        self.indices = rank_slice(global_batch, rank, world_size)

    def __iter__(self):
        for step in range(self.first, self.last + 1):
            yield [(step, i) for i in self.indices]

    def __len__(self) -> int:
        return max(0, self.last - self.first + 1)


def _worker_init(_worker_id: int) -> None:
    import signal

    torch.set_num_threads(1)
    # Ctrl-C in a terminal, `pkill -f`, `kill -- -PGID` and a scheduler's preemption signal the
    # whole process group; the trainer stops with a checkpoint and shuts its workers down itself,
    # whereas a worker dying first would abort the step in flight without one.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)


def build_loader(dataset: TrainingSamples, first: int, last: int, global_batch: int, rank: int = 0,
                 world_size: int = 1, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over steps ``first … last``; batches arrive in step order whatever ``workers``."""
    sampler = StepBatchSampler(first, last, global_batch, rank, world_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      worker_init_fn=_worker_init if workers else None,
                      prefetch_factor=2 if workers else None)


def recipe_samples(cfg, say=lambda msg: None, progress: bool = False) -> TrainingSamples:
    """The training samples a recipe describes (``data`` section), its photos decoded into
    memory up front when they fit ``data.cache_mb``."""
    d, m, t = cfg.data, cfg.model, cfg.train
    crop = d.lr_patch * m.scale
    pool = HRImagePool(d.hr_dirs, crop, d.small_images, d.recursive, d.cache_mb * 2 ** 20 if d.cache_in_memory else 0)
    if pool.skipped or pool.padded:
        say(f"HR images: {len(pool)} used ({pool.padded} mirror-padded to {crop}×{crop}), "
            f"{len(pool.skipped)} skipped as too small")
    if d.cache_in_memory:
        pool.preload(progress=progress)
    return TrainingSamples(pool, m.scale, m.setting, d.lr_patch, t.seed, d.hflip, d.vflip, d.transpose, d.photo)
