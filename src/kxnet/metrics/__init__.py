"""Metrics: the benchmark protocol's Y-channel PSNR/SSIM (docs/protocol.md, "Metrics"), kernel accuracy and
the ground-truth-free LR-consistency score."""

from .image import (
    ImageMetrics,
    crop_border,
    image_metrics,
    image_psnr,
    lr_consistency_psnr,
    psnr,
    rgb_to_y,
    ssim,
)
from .kernel import (
    FIT_CONVENTION,
    fit_label,
    gaussian_fit,
    kernel_fit_errors,
    kernel_l1,
    kernel_mae,
    kernel_psnr,
    match_kernel_size,
)

__all__ = [
    "FIT_CONVENTION",
    "ImageMetrics",
    "crop_border",
    "fit_label",
    "gaussian_fit",
    "image_metrics",
    "image_psnr",
    "kernel_fit_errors",
    "kernel_l1",
    "kernel_mae",
    "kernel_psnr",
    "lr_consistency_psnr",
    "match_kernel_size",
    "psnr",
    "rgb_to_y",
    "ssim",
]
