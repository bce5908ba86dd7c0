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
    "reflect_pad_adjoint",
]
