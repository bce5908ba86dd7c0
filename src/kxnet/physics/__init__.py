"""Physics of the degradation model ``Y = (X ⊗ K)↓s + N``: the one implementation of every
operator, used by synthesis, models, training and tests alike."""

from .fft import (
    SFoldSystem,
    circular_blur_downsample,
    psf_of_kernel,
    sfold_solve,
    sfold_system,
    zero_upsample,
)
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
from .phases import back_project_phases, blur_downsample_adjoint_phases

__all__ = [
    "SFoldSystem",
    "back_project",
    "back_project_normaliser",
    "back_project_phases",
    "bicubic_upsample",
    "blur",
    "blur_downsample",
    "blur_downsample_adjoint",
    "blur_downsample_adjoint_phases",
    "circular_blur_downsample",
    "downsample",
    "kernel_gradient",
    "lr_size",
    "otf2psf",
    "psf2otf",
    "psf_of_kernel",
    "reflect_pad_adjoint",
    "sfold_solve",
    "sfold_system",
    "zero_upsample",
]
