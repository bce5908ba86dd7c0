"""DCLS (Luo et al., CVPR 2022, "Deep Constrained Least Squares for Blind Image
Super-Resolution") as the authors' release ``megvii-research/DCLS-SR`` computes it
(docs/dcls.md).

Single pass: the **Estimator** (a dynamic deep linear kernel, DDLK) predicts an *LR-space*
kernel k̂ (B×1×p×p, sum 1) from the LR image; the **Restorer** deconvolves LR features by k̂
with a learned constrained-least-squares filter (:func:`~.fourier.cls_deconvolve`), fuses
them with the primitive features in a dual-path attention network (DPAN) and upsamples. The
Restorer sees k̂ detached, so each half learns from its own loss term only.

Parameter names are the release's, so its state dicts load with no renaming. A pure
architecture: the training target (:func:`~.fourier.reformulated_kernel`) and loss live in
:mod:`kxnet.models.dcls.loss`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ...kernels import SCALES, setting_of_kernel_size
from .fourier import reformulated_kernel
from .parts import ATTENTION_REDUCTION, Estimator, Restorer
from ..output import SROutput
from ..config import MethodConfig
from ..architecture import count_indexed

__all__ = ["DCLS", "DCLSConfig", "FILTER_STRUCTURES", "dcls"]

# Estimator filter sizes per kernel size: the release's 21, 11 and 31, and ours for 15
# (docs/dcls.md). Collapsing them gives a p×p kernel when p = Σ (f − 1) + 1.
FILTER_STRUCTURES = {21: [11, 7, 5, 1], 11: [7, 3, 3, 1], 31: [11, 9, 7, 5, 3], 15: [7, 5, 5, 1]}


@dataclass
class DCLSConfig(MethodConfig):
    """Everything that shapes a DCLS; JSON-serialisable via :meth:`to_dict`. Defaults are the
    released network (``nf 64, nb 10, ng 5, input_para 256``).

    ``kernel_size`` defaults to the setting's (21; setting 2: 11/15/21 at ×2/×3/×4) and picks
    ``filter_structures`` from :data:`FILTER_STRUCTURES` unless they are given.
    ``input_para`` is the release's name of the latent length the kernel decoders read;
    ``kernel_channels`` its ``G_chan`` (hidden channels of the deep linear kernel).
    ``cls_eps`` is added to the CLS denominator: 0 is the release's formula (so its weights
    reproduce); the training recipes set 1e-8, which bounds the deconvolution's gain by
    1/(2√ε) = 5·10³ where the kernel's and the regulariser's spectra both vanish (without it
    that is 0/0 = NaN) and changes nothing where the denominator is of order one (docs/dcls.md).
    """

    nf: int = 64
    nb: int = 10
    ng: int = 5
    reduction: int = 4
    input_para: int = 256
    kernel_channels: int = 16
    filter_structures: list[int] | None = None
    cls_eps: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        p = self.kernel_size
        if self.filter_structures is None:
            if p not in FILTER_STRUCTURES:
                raise ValueError(f"no DDLK filter structure for {p}×{p} kernels (known: "
                                 f"{sorted(FILTER_STRUCTURES)}); give filter_structures")
            self.filter_structures = list(FILTER_STRUCTURES[p])
        fs = self.filter_structures = [int(f) for f in self.filter_structures]
        if len(fs) < 2 or any(f < 1 or f % 2 == 0 for f in fs) or sum(f - 1 for f in fs) + 1 != p:
            raise ValueError(f"filter_structures {fs} must be ≥ 2 odd sizes with Σ(f − 1) + 1 = {p}")
        if p < 7:  # the target's post-processing keeps the 41 largest taps
            raise ValueError(f"kernel_size must be an odd number ≥ 7, got {p}")
        self.require_positive("nf", "nb", "ng", "reduction", "input_para", "kernel_channels")
        if self.nf % self.reduction or self.nf // self.reduction < ATTENTION_REDUCTION:
            raise ValueError(f"nf ({self.nf}) must be a multiple of reduction ({self.reduction}) "
                             f"with nf/reduction ≥ {ATTENTION_REDUCTION}")
        try:
            self.cls_eps = float(self.cls_eps)  # YAML reads "1e-8" (no dot) as a string
        except (TypeError, ValueError):
            raise ValueError(f"cls_eps must be a number, got {self.cls_eps!r}") from None
        if not self.cls_eps >= 0:
            raise ValueError(f"cls_eps must be ≥ 0, got {self.cls_eps!r}")

    @property
    def primitive_channels(self) -> int:
        """nf2 = nf / reduction: the primitive path and the CLS run at this width."""
        return self.nf // self.reduction


# ------------------------------------------------------------------------------- model

class DCLS(nn.Module):
    """Blind SR with an LR-space kernel; ``forward(y)`` → :class:`~kxnet.models.SROutput`.

    The output's ``kernel`` is None: k̂ lives in LR space (``y ≈ x↓ ⊛ k̂``), not the HR blur
    kernel, so HR-kernel metrics would be meaningless. It is exposed as ``condition``
    (B×1×p×p) — the form ``forward(y, kernel=condition)`` takes back.
    """

    def __init__(self, config: DCLSConfig):
        super().__init__()
        self.config = config
        c = config
        self.Restorer = Restorer(c.scale, c.nf, c.primitive_channels, c.nb, c.ng, c.cls_eps)
        self.Estimator = Estimator(c.filter_structures, c.nf, c.input_para, c.kernel_channels)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, y: torch.Tensor, kernel: torch.Tensor | None = None) -> SROutput:
        """Super-resolve ``y`` (B×3×h×w in [0, 1]; h, w ≥ 7).

        ``kernel`` (B×p×p, B×1×p×p or p×p, any odd p) makes it non-blind: the Restorer runs
        with this LR-space kernel instead of the Estimator's — the oracle path with
        :meth:`oracle_condition`, or a blind run's ``condition`` for another crop of the photo.
        """
        if y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(f"expected a B×3×h×w image batch, got shape {tuple(y.shape)}")
        if min(y.shape[-2:]) < 7:  # the CLS regulariser net has three unpadded 3×3 convs
            raise ValueError(f"LR image {y.shape[-2]}×{y.shape[-1]} is too small for DCLS (needs ≥ 7×7)")
        if kernel is None:
            k = self.Estimator(y)
            return SROutput(self.Restorer(y, k.detach()), None, [], [], condition=k)
        k = kernel.to(device=y.device, dtype=y.dtype)
        if k.dim() == 2:
            k = k[None, None]
        elif k.dim() == 3:
            k = k[:, None]
        if (k.dim() != 4 or k.shape[1] != 1 or k.shape[0] not in (1, y.shape[0])
                or k.shape[-1] != k.shape[-2] or k.shape[-1] % 2 == 0):
            raise ValueError(f"kernel must be p×p, B×p×p or B×1×p×p with p odd and B = {y.shape[0]}, "
                             f"got shape {tuple(kernel.shape)}")
        k = k.expand(y.shape[0], -1, -1, -1)
        return SROutput(self.Restorer(y, k), None, [], [], condition=k)

    def oracle_condition(self, hr: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """The true LR-space kernel (B×1×p×p) of ``hr`` (B×3×H×W, clean, H and W multiples of
        the scale) blurred by ``kernel`` (B×p'×p' HR blur) — the training target, for the
        oracle row: ``model(lr, kernel=model.oracle_condition(hr, k))``."""
        return reformulated_kernel(hr, kernel, self.config.scale, self.config.kernel_size)


def dcls(scale: int = 4, setting: int = 2, **config) -> DCLS:
    """DCLS at any scale and setting; ``config`` takes the other :class:`DCLSConfig` fields."""
    return DCLS(DCLSConfig(scale=scale, setting=setting, **config))



# ----------------------------------------------------------------- the authors' layout

_MARKERS = ("Estimator.dec.0.weight", "Restorer.head2.grad_filter.0.weight")


def _is_dcls_state(state: dict) -> bool:
    """DCLS's own keys (DAN's state dicts also have ``Restorer.*`` and ``Estimator.*``)."""
    return all(k in state for k in _MARKERS)


def _filter_sizes(state: dict, layers: int, g: int) -> list[int] | None:
    """Each decoder's filter side given G hidden channels, or None if some is not an odd integer."""
    sizes = []
    for n in range(layers):
        c_in_out = g * g if 0 < n < layers - 1 else 3 * g
        area, rest = divmod(state[f"Estimator.dec.{n}.weight"].shape[0], c_in_out)
        side = math.isqrt(area)
        if rest or side * side != area or side % 2 == 0:
            return None
        sizes.append(side)
    return sizes


def _infer_dcls_config(state: dict) -> DCLSConfig:
    """Hyper-parameters from shapes: nf from ``conv_first``, nf2 from ``head1``, ng/nb by
    counting, the latent length and filter sizes from the decoders (trying the release's 16
    hidden channels first), p = Σ(f − 1) + 1, the scale from the upsampler.

    The setting is not stored: p equal to the project's setting-2 size at that scale
    (11/15/21 at ×2/×3/×4) or the release's setting-2 ×4 size 31 means setting 2, p = 21 at
    ×2/×3 means setting 1. It only chooses defaults (training kernels, validation set).
    """
    needed = ["Restorer.conv_first.weight", "Restorer.head1.weight", "Restorer.upscale.0.weight", *_MARKERS]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"not a DCLS state dict (missing {', '.join(missing[:3])})")
    nf = state["Restorer.conv_first.weight"].shape[0]
    nf2 = state["Restorer.head1.weight"].shape[0]
    if nf2 == 0 or nf % nf2:
        raise ValueError(f"primitive width {nf2} does not divide the feature width {nf}")
    up = state["Restorer.upscale.0.weight"].shape[0]
    if "Restorer.upscale.4.weight" in state:
        scale = 4 if up == 4 * nf else 0
    else:
        scale = math.isqrt(up // nf) if up % nf == 0 else 0
        scale = scale if scale * scale * nf == up else 0
    if scale not in SCALES:
        raise ValueError(f"upsampler width {up} (features {nf}) matches no scale in {SCALES}")
    layers = count_indexed(state, "Estimator.dec")
    if layers < 2:
        raise ValueError(f"expected at least 2 kernel decoders, found {layers}")
    for g in [16, *range(1, 65)]:
        sizes = _filter_sizes(state, layers, g)
        if sizes is not None:
            break
    else:
        raise ValueError("kernel decoder shapes match no deep linear kernel of odd filters")
    p = sum(f - 1 for f in sizes) + 1
    setting = setting_of_kernel_size(scale, p)
    try:
        return DCLSConfig(scale=scale, setting=setting, kernel_size=p, nf=nf, reduction=nf // nf2,
                          nb=count_indexed(state, "Restorer.body.0.body"),
                          ng=count_indexed(state, "Restorer.body"),
                          input_para=state["Estimator.dec.0.weight"].shape[1], kernel_channels=g,
                          filter_structures=sizes)
    except ValueError as e:
        raise ValueError(f"unsupported DCLS shape ({e})") from e


@dataclass
class DCLSLoss:
    """The release's 1 : 1 loss: ``image_weight_last``·L1(SR, HR) + ``kernel_weight_last``·L1(k̂, k_l)
    with k_l the reformulated LR-space kernel (docs/dcls.md)."""

    image_weight_last: float = 1.0
    kernel_weight_last: float = 1.0
