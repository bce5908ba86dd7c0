"""Blur kernels: Gaussian formulas, the settings' samplers and benchmark sets, auxiliary banks,
and the PCA basis DAN codes kernels in."""

from .gaussian import anisotropic_gaussian, isotropic_gaussian
from .settings import (
    SCALES,
    SETTINGS,
    KernelBatch,
    BenchmarkKernel,
    auxiliary_bank,
    initial_kernel,
    kernel_size,
    sample_training_kernels,
    setting_of_kernel_size,
    benchmark_kernels,
)
from .pca import KernelPCA, explained_variance, kernel_pca
from .visualise import kernel_to_image

__all__ = [
    "SCALES",
    "SETTINGS",
    "KernelBatch",
    "KernelPCA",
    "BenchmarkKernel",
    "anisotropic_gaussian",
    "explained_variance",
    "auxiliary_bank",
    "initial_kernel",
    "isotropic_gaussian",
    "kernel_pca",
    "kernel_size",
    "kernel_to_image",
    "sample_training_kernels",
    "setting_of_kernel_size",
    "benchmark_kernels",
]
