"""Physics of the degradation model ``Y = (X ⊗ K)↓s + N``: the one implementation of every
operator, used by synthesis, models, training and tests alike."""

from .operators import (
    back_project,
    back_project_normaliser,
    bicubic_upsample,
    blur,
    blur_downsample,
    blur_downsample_adjoint,
    downsample,
    kernel_gradient,
    lr_size,
    reflect_pad_adjoint,
)
from .fourier import otf2psf, psf2otf

__all__ = [
    "back_project",
    "back_project_normaliser",
    "bicubic_upsample",
    "blur",
    "blur_downsample",
    "blur_downsample_adjoint",
    "downsample",
    "kernel_gradient",
    "lr_size",
    "otf2psf",
    "psf2otf",
    "reflect_pad_adjoint",
]
