"""Blur kernels: Gaussian formulas, the settings' samplers and benchmark sets, auxiliary banks."""

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
    benchmark_kernels,
)
from .visualise import kernel_to_image

__all__ = [
    "SCALES",
    "SETTINGS",
    "KernelBatch",
    "BenchmarkKernel",
    "anisotropic_gaussian",
    "auxiliary_bank",
    "initial_kernel",
    "isotropic_gaussian",
    "kernel_size",
    "kernel_to_image",
    "sample_training_kernels",
    "benchmark_kernels",
]
