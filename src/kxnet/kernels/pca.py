"""A PCA basis of a setting's training kernels: how DAN represents a blur kernel by a short code.

DAN (docs/dan.md) never handles a kernel spatially: a p×p kernel ``k`` is the code
``vec(k)ᵀ P`` (row-major ``vec``, **no** mean subtraction), where ``P`` (p²×c) holds the first c
principal directions of kernels drawn from the training distribution. The mean kernel is not in
their span, so turning a code back into a kernel needs the mean as well
(:meth:`kxnet.models.DAN.decode`). The release fitted ``P`` on 30,000 kernels of *its* sampler;
the project's protocol (docs/dan.md) refits it on the project's own sampler
(:func:`~kxnet.kernels.sample_training_kernels`, fixed seed), once per (setting, scale).

The basis is the eigenvectors of the p²×p² sample covariance in float64: the same subspace as
the release's SVD of the p²×n centred data matrix, over ten times faster (docs/dan.md).
Eigenvectors have arbitrary signs; each column's
sign is fixed by a seeded probe vector so that the basis, and hence every code a model is
trained on, is the same on every run.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from .settings import sample_training_kernels

__all__ = ["KernelPCA", "kernel_pca", "explained_variance", "PCA_SAMPLES", "PCA_COMPONENTS"]

PCA_SAMPLES = 30_000        # kernels the release's creat_PCA.py fits on
PCA_COMPONENTS = 10         # DANv1's code length
_SIGN_PROBE_SEED = 12345    # any fixed seed: only makes the sign convention reproducible


class KernelPCA(NamedTuple):
    """``matrix``: p²×c float64, orthonormal columns, strongest direction first; ``mean``: the
    p² mean of the fit kernels (float64); ``explained``: the fraction of the fit kernels'
    (centred) variance the c directions hold."""

    matrix: torch.Tensor
    mean: torch.Tensor
    explained: float


def _flat(kernels: torch.Tensor) -> torch.Tensor:
    return kernels.detach().to("cpu", torch.float64).reshape(kernels.shape[0], -1)


def _fixed_signs(matrix: torch.Tensor) -> torch.Tensor:
    """Flip columns so each has a positive dot product with one seeded random vector.

    A data-derived rule (e.g. "largest entry positive") is ambiguous for the antisymmetric
    directions of symmetric kernel families, whose largest entries come in ± pairs.
    """
    probe = torch.randn(matrix.shape[0], generator=torch.Generator().manual_seed(_SIGN_PROBE_SEED),
                        dtype=torch.float64)
    signs = torch.sign(probe @ matrix)
    signs[signs == 0] = 1.0
    return matrix * signs


@functools.lru_cache(maxsize=8)
def _fit(setting: int, scale: int, n: int, components: int, seed: int) -> KernelPCA:
    kernels = sample_training_kernels(setting, scale, n, torch.Generator().manual_seed(seed)).kernels
    x = _flat(kernels)
    if not 1 <= components <= x.shape[1]:
        raise ValueError(f"components must lie in 1…{x.shape[1]} for {kernels.shape[-1]}×{kernels.shape[-1]} "
                         f"kernels, got {components}")
    mean = x.mean(dim=0)
    x = x - mean
    eigenvalues, eigenvectors = torch.linalg.eigh(x.T @ x)           # ascending order
    top = eigenvectors[:, -components:].flip(1)
    explained = float(eigenvalues[-components:].sum() / eigenvalues.sum())
    return KernelPCA(_fixed_signs(top).contiguous(), mean, explained)


def kernel_pca(setting: int, scale: int, n: int = PCA_SAMPLES, components: int = PCA_COMPONENTS,
               seed: int = 0) -> KernelPCA:
    """The first ``components`` principal directions of ``n`` training kernels of the setting
    (drawn with ``torch.Generator().manual_seed(seed)``); deterministic.

    Results are cached in-process (building several DANs fits once); the returned matrix is a
    copy, so callers may modify it.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 kernels, got {n}")
    fit = _fit(int(setting), int(scale), int(n), int(components), int(seed))
    return KernelPCA(fit.matrix.clone(), fit.mean.clone(), fit.explained)


def explained_variance(matrix: torch.Tensor, kernels: torch.Tensor) -> float:
    """The fraction of the centred variance of ``kernels`` (B×p×p) that the columns of
    ``matrix`` (p²×c, orthonormal) hold — use fresh kernels to see how well a basis generalises."""
    x = _flat(kernels)
    x = x - x.mean(dim=0)
    p = matrix.detach().to("cpu", torch.float64)
    return float((x @ p).square().sum() / x.square().sum())
