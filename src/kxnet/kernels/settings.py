"""The two experimental settings of the paper (docs/protocol.md, "Kernels") as data.

Setting 1: isotropic Gaussians, 21×21 at every scale, no noise.
Setting 2: anisotropic Gaussians, 11/15/21 at ×2/×3/×4, Gaussian noise.
Everything a sampler, a test set or a model needs to know about a setting lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .gaussian import anisotropic_gaussian, degrees, isotropic_gaussian

SCALES = (2, 3, 4)
SETTINGS = (1, 2)

_ISO_TRAIN_MAX_SIGMA = {2: 2.0, 3: 3.0, 4: 4.0}
_GAUSSIAN8_RANGE = {2: (0.8, 1.6), 3: (1.35, 2.40), 4: (1.8, 3.2)}
_ANISO_SIZE = {2: 11, 3: 15, 4: 21}
ANISO_TRAIN_SIGMA = (0.6, 5.0)
ANISO_TRAIN_NOISE = (0.0, 25.0)
# (λ1, λ2) × θ in degrees: the 8 setting-2 test kernels, the same at every scale
_ANISO_TEST = [(0.8, 1.6, t) for t in (0.0, 45.0, 90.0, 135.0)] + [(2.0, 4.0, t) for t in (0.0, 45.0, 90.0, 135.0)]
INITIAL_KERNEL_SIGMA = 1.0


def _check(setting: int, scale: int) -> None:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be 1 or 2, got {setting}")
    if scale not in SCALES:
        raise ValueError(f"scale must be 2, 3 or 4, got {scale}")


def kernel_size(setting: int, scale: int) -> int:
    _check(setting, scale)
    return 21 if setting == 1 else _ANISO_SIZE[scale]


@dataclass(frozen=True)
class BenchmarkKernel:
    """One fixed benchmark kernel with the name the release's file names use."""

    tag: str
    params: dict = field(hash=False)
    kernel: np.ndarray = field(hash=False, repr=False)


def benchmark_kernels(setting: int, scale: int) -> list[BenchmarkKernel]:
    """The 8 benchmark kernels: Gaussian8 (setting 1) or the 8 anisotropic ones (setting 2)."""
    _check(setting, scale)
    p = kernel_size(setting, scale)
    out = []
    if setting == 1:
        lo, hi = _GAUSSIAN8_RANGE[scale]
        for sigma in np.linspace(lo, hi, 8):  # both end points, as the release does
            k = isotropic_gaussian(p, float(sigma)).numpy()
            out.append(BenchmarkKernel(f"sig{float(sigma)}", {"type": "isotropic", "sigma": float(sigma), "size": p}, k))
    else:
        for l1, l2, t in _ANISO_TEST:
            k = anisotropic_gaussian(p, l1, l2, degrees(t)).numpy()
            out.append(BenchmarkKernel(f"sig{l1}-{l2}_theta{t}", {"type": "anisotropic", "sigma_x": l1, "sigma_y": l2,
                                                             "theta_deg": t, "size": p}, k))
    return out


def initial_kernel(size: int) -> torch.Tensor:
    """K⁰: the isotropic Gaussian of σ = 1 (OpenCV ``getGaussianKernel(p, 1)`` outer product)."""
    return isotropic_gaussian(size, INITIAL_KERNEL_SIGMA)


def auxiliary_bank(setting: int, scale: int) -> torch.Tensor:
    """The 24-kernel bank that initialises the K-net's auxiliary channels (docs/protocol.md, "Kernels"), 24×p×p."""
    p = kernel_size(setting, scale)
    if setting == 1:
        return isotropic_gaussian(p, torch.linspace(0.2, 4.0, 24, dtype=torch.float64))
    params = [(sx, sy, t) for sx in (1.0, 2.5, 4.0) for sy in (3.5, 5.0) for t in (0.0, 45.0, 90.0, 135.0)]
    sx, sy, th = (torch.tensor(v, dtype=torch.float64) for v in zip(*params))
    return anisotropic_gaussian(p, sx, sy, th * math.pi / 180.0)


@dataclass
class KernelBatch:
    """Random training degradations: one kernel and one noise level (8-bit units) per image."""

    kernels: torch.Tensor          # B×p×p float32, each sums to 1
    noise_sigma: torch.Tensor      # B, float32, 0 for setting 1
    params: dict[str, torch.Tensor]


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def sample_training_kernels(setting: int, scale: int, batch: int, generator: torch.Generator) -> KernelBatch:
    """Draw ``batch`` kernels (and noise levels) from the setting's training distribution (docs/protocol.md, "Kernels")."""
    _check(setting, scale)
    p = kernel_size(setting, scale)
    if setting == 1:
        sigma = _uniform(batch, 0.2, _ISO_TRAIN_MAX_SIGMA[scale], generator)
        return KernelBatch(isotropic_gaussian(p, sigma), torch.zeros(batch), {"sigma": sigma})
    sx = _uniform(batch, *ANISO_TRAIN_SIGMA, generator)
    sy = _uniform(batch, *ANISO_TRAIN_SIGMA, generator)
    th = _uniform(batch, -math.pi, math.pi, generator)
    noise = _uniform(batch, *ANISO_TRAIN_NOISE, generator).float()
    return KernelBatch(anisotropic_gaussian(p, sx, sy, th), noise, {"sigma_x": sx, "sigma_y": sy, "theta": th})


def setting_of_kernel_size(scale: int, size: int) -> int:
    """The setting a model's kernel size implies, for weights that do not store it: setting 1
    uses 21×21 at every scale, setting 2 11/15/21 at ×2/×3/×4, so p = 21 means setting 1 at ×2
    and ×3; at ×4 (and for any other size) it is taken as setting 2, which only chooses defaults
    (training kernels, validation set) — the weights carry everything else."""
    return 1 if size == kernel_size(1, scale) != kernel_size(2, scale) else 2
