"""DAN (DANv1, Luo et al., NeurIPS 2020): the Deep Alternating Network (docs/dan.md).

Blind SR by unrolling an alternation between a **Restorer** (non-blind SR conditioned on a
kernel code) and an **Estimator** (the code from the LR image and the current SR), with shared
weights across the iterations::

    c⁰ = vec(dirac)ᵀ P
    for t = 1…T:  SRᵗ = Restorer(y, stopgrad(cᵗ⁻¹));  cᵗ = Estimator(stopgrad(SRᵗ), y)

A kernel is only ever a c-long code in the basis ``P`` (p²×c, :mod:`kxnet.kernels.pca`),
stored as the buffer ``encoder`` so that a checkpoint carries the basis its codes mean.
Module and buffer names follow the release (``DANv1/models/modules/dan_arch.py``), so
``torch.save(model.state_dict())`` of a release-configured DAN is the release's layout and the
release's state dicts load without renaming. A pure architecture: the loss lives in
:mod:`kxnet.models.dan.loss`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ...kernels import kernel_pca, kernel_size, setting_of_kernel_size
from ..output import SROutput
from ..config import MethodConfig
from ..architecture import count_indexed

__all__ = ["DANConfig", "DAN", "Restorer", "Estimator", "dan"]

LEAKY_SLOPE = 0.2           # every activation of DANv1 (the channel attention's too)
CA_REDUCTION = 16           # channel attention squeezes nf → nf/16


@dataclass
class DANConfig(MethodConfig):
    """Everything that shapes a DAN; JSON-serialisable via :meth:`to_dict`.

    Defaults are the release's (nf 64, 40 Restorer blocks, 10-long codes, a 32-wide Estimator
    of 5 blocks, 4 iterations). ``kernel_size`` must be the setting's (docs/protocol.md: 21 in setting 1;
    11/15/21 at ×2/×3/×4 in setting 2), because a fresh model's basis is fitted on that
    setting's training kernels. ``loops`` is not stored in weights; the release trains and
    tests with 4 (the paper's Fig. 6 raises it at test time without harm).
    """

    loops: int = 4
    nf: int = 64
    nb: int = 40
    code_length: int = 10
    estimator_nf: int = 32
    estimator_blocks: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        p = kernel_size(self.setting, self.scale)
        if self.kernel_size != p:
            raise ValueError(f"setting {self.setting} at ×{self.scale} uses {p}×{p} kernels, not "
                             f"{self.kernel_size}×{self.kernel_size} (the PCA basis is fitted on them)")
        self.require_positive("loops", "nb", "code_length", "estimator_blocks")
        self.require_positive("nf", "estimator_nf", minimum=CA_REDUCTION)  # channel attention divides by it
        if self.code_length > p * p:
            raise ValueError(f"code_length {self.code_length} exceeds the {p * p} taps of a {p}×{p} kernel")


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class _ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global mean → 1×1 nf→nf/16 → LeakyReLU → 1×1 → sigmoid → scale."""

    def __init__(self, nf: int):
        super().__init__()
        self.body = nn.Sequential(_conv(nf, nf // CA_REDUCTION, 1), nn.LeakyReLU(LEAKY_SLOPE),
                                  _conv(nf // CA_REDUCTION, nf, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.body(x.mean(dim=(-2, -1), keepdim=True))


class _CRB(nn.Module):
    """Conditional residual block: ``f + CA(conv(LReLU(conv([f, cond]))))``; the condition
    passes through unchanged (it is the caller's to reuse)."""

    def __init__(self, nf: int, cond: int):
        super().__init__()
        self.body = nn.Sequential(_conv(nf + cond, nf + cond), nn.LeakyReLU(LEAKY_SLOPE),
                                  _conv(nf + cond, nf), _ChannelAttention(nf))

    def forward(self, f: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return f + self.body(torch.cat([f, cond], dim=1))


def _upsampler(nf: int, scale: int) -> nn.Sequential:
    """Sub-pixel upsampling without activations: ×4 as two ×2 steps, ×2/×3 in one."""
    steps = [2, 2] if scale == 4 else [scale]
    layers: list[nn.Module] = []
    for s in steps:
        layers += [_conv(nf, nf * s * s), nn.PixelShuffle(s)]
    return nn.Sequential(*layers, _conv(nf, 3))


class Restorer(nn.Module):
    """Non-blind SR of ``y`` given a code: the code is stretched to a c×h×w map that every
    block sees; no global residual and no clamp (both as the release)."""

    def __init__(self, nf: int, nb: int, scale: int, code_length: int):
        super().__init__()
        self.head = _conv(3, nf)
        self.body = nn.ModuleList(_CRB(nf, code_length) for _ in range(nb))
        self.fusion = _conv(nf, nf)
        self.upscale = _upsampler(nf, scale)

    def forward(self, y: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        b, _, h, w = y.shape
        code_map = code.reshape(b, -1, 1, 1).expand(-1, -1, h, w)
        f = self.head(y)
        for block in self.body:
            f = block(f, code_map)
        return self.upscale(self.fusion(f))


class Estimator(nn.Module):
    """The code from ``y`` and an SR estimate: the SR is brought to LR size by a 9×9 stride-s
    convolution and conditions blocks on the LR features; a 3×3 convolution to c channels,
    averaged over the image, is the code."""

    def __init__(self, nf: int, blocks: int, scale: int, code_length: int):
        super().__init__()
        self.head_LR = _conv(3, nf, 1)
        self.head_HR = _conv(3, nf, 9, stride=scale)
        self.body = nn.ModuleList(_CRB(nf, nf) for _ in range(blocks))
        self.out = _conv(nf, code_length)

    def forward(self, sr: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f, cond = self.head_LR(y), self.head_HR(sr)
        for block in self.body:
            f = block(f, cond)
        return self.out(f).mean(dim=(-2, -1))


class DAN(nn.Module):
    """DANv1; ``forward(y)`` → :class:`~kxnet.models.SROutput` (see :meth:`forward`)."""

    def __init__(self, config: DANConfig):
        super().__init__()
        self.config = c = config
        self.Restorer = Restorer(c.nf, c.nb, c.scale, c.code_length)
        self.Estimator = Estimator(c.estimator_nf, c.estimator_blocks, c.scale, c.code_length)
        # A fresh model fits the basis on its setting's training kernels (cached per process);
        # loading weights then replaces it with the checkpoint's, which its codes refer to.
        pca = kernel_pca(c.setting, c.scale, components=c.code_length)
        p = c.kernel_size
        dirac = torch.zeros(1, p, p)
        dirac[0, p // 2, p // 2] = 1.0
        # The release's buffers, names and shapes (1×p²×c, 1×p×p, 1×c): part of the state dict.
        self.register_buffer("encoder", pca.matrix.float()[None])
        self.register_buffer("init_kernel", dirac)
        self.register_buffer("init_ker_map", self.encode(dirac))
        # Only decode() needs the mean; the release has none, so it stays out of the state dict
        # (a function of the setting and scale, like KXNet's initial kernel).
        self.register_buffer("kernel_mean", pca.mean.float().reshape(p, p), persistent=False)

    @property
    def scale(self) -> int:
        return self.config.scale

    def encode(self, kernels: torch.Tensor) -> torch.Tensor:
        """B×p×p kernels → B×c codes ``vec(k)ᵀ P`` (no mean subtraction, as the release)."""
        return kernels.reshape(kernels.shape[0], -1) @ self.encoder[0].to(kernels.dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """B×c codes → B×p×p kernels: the least-squares reconstruction in the PCA subspace.

        Codes are plain projections ``Pᵀk`` (no mean subtracted), so ``decode(encode(k))`` is
        the orthogonal projection of ``k`` onto the affine PCA subspace ``m + span(P)``:
        ``m + P(code − Pᵀm)``, with ``m`` the mean of the kernels the basis was fitted on
        (``kernel_mean``). ``P·code`` alone would be the projection onto ``span(P)``, which
        misses most of the mean kernel: with exact codes of fresh setting-2 ×4 training kernels
        it leaves 62 % relative error, against 10 % here (tests/test_dan.py measures both). The
        result need not be non-negative nor sum to one: DANv1 never decodes inside its loop;
        this is how its estimate is shown and scored. For an authors' checkpoint ``m`` is this
        project's mean for the setting (the release stores none).
        """
        p = self.config.kernel_size
        basis = self.encoder[0].to(codes.dtype)
        mean = self.kernel_mean.to(codes.dtype).reshape(1, -1)
        return (mean + (codes - mean @ basis) @ basis.T).reshape(codes.shape[0], p, p)

    def forward(self, y: torch.Tensor, kernel: torch.Tensor | None = None) -> SROutput:
        """Super-resolve ``y`` (B×3×h×w RGB in [0, 1]).

        Blind (``kernel=None``): the release's ``loops`` alternations with its ``.detach()``
        gradient blocking (each module is trained by its own loss term only). ``stage_images``
        are SR¹…SRᵀ (``sr`` = SRᵀ), ``stage_kernels`` the decoded codes c¹…cᵀ (``kernel`` =
        decode(cᵀ)), and ``condition`` is cᵀ, the final code (B×c).

        Non-blind: ``kernel`` is either a true HR kernel (B×p×p, or p×p for the whole batch),
        whose code the Restorer is run with once (the oracle row of the paper's Table 3), or a
        code (B×c, or c) such as a blind run's ``condition`` — how tiled inference shares one
        estimate. A 2-D p×p tensor is a kernel; a 2-D tensor whose last side is c is a code.
        The single stage's kernel, ``kernel`` and ``condition`` are then that code's.
        """
        c = self.config
        if y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(f"expected a B×3×h×w image batch, got shape {tuple(y.shape)}")
        if kernel is not None:
            code = self._as_code(kernel, y)
            sr = self.Restorer(y, code)
            k = self.decode(code)
            return SROutput(sr, k, [sr], [k], condition=code)

        code = self.init_ker_map.to(y.dtype).expand(y.shape[0], -1)
        images, codes = [], []
        for _ in range(c.loops):
            sr = self.Restorer(y, code.detach())
            code = self.Estimator(sr.detach(), y)
            images.append(sr)
            codes.append(code)
        kernels = [self.decode(k) for k in codes]
        return SROutput(images[-1], kernels[-1], images, kernels, condition=codes[-1])

    def _as_code(self, kernel: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A given kernel or code as a B×c code batch (see :meth:`forward`)."""
        c = self.config
        p, b = c.kernel_size, y.shape[0]
        t = torch.as_tensor(kernel).to(device=y.device, dtype=y.dtype)
        if t.shape[-2:] == (p, p) and t.dim() in (2, 3):
            code = self.encode(t.reshape(-1, p, p))
        elif t.shape[-1] == c.code_length and t.dim() in (1, 2):
            code = t.reshape(-1, c.code_length)
        else:
            raise ValueError(f"expected a {p}×{p} kernel (B×{p}×{p} or {p}×{p}) or a {c.code_length}-long code "
                             f"(B×{c.code_length} or {c.code_length}), got shape {tuple(t.shape)}")
        if code.shape[0] not in (1, b):
            raise ValueError(f"{code.shape[0]} kernels or codes for a batch of {b} images")
        return code.expand(b, -1)


def dan(scale: int = 4, setting: int = 2, **config) -> DAN:
    """DANv1 at any scale and setting; ``config`` takes the other :class:`DANConfig` fields."""
    return DAN(DANConfig(scale=scale, setting=setting, **config))



# ------------------------------------------------------------------ the authors' layout

def _is_dan_state(state: dict) -> bool:
    # init_ker_map and Estimator.head_LR are DAN's own names (DCLS also has Restorer/Estimator)
    return "init_ker_map" in state or "Estimator.head_LR.weight" in state




def _infer_dan_config(state: dict) -> DANConfig:
    """Hyper-parameters from shapes: p and c from ``encoder`` (1×p²×c), nf from the head, the
    scale from the upsampler (three convolutions = ×4; else its first has nf·s² outputs), the
    block counts from the keys.

    The setting is not stored: p decides it where the settings differ (×2: 21 ⇒ setting 1,
    11 ⇒ setting 2; ×3: 21 or 15); at ×4 both use 21×21 kernels, so setting 2 is assumed. The
    setting only chooses the basis a *fresh* model fits; a loaded model uses the file's.
    """
    needed = ["encoder", "Restorer.head.weight", "Restorer.upscale.0.weight", "Estimator.head_LR.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"not a complete DAN state dict (missing {', '.join(missing)})")
    enc = state["encoder"]
    if enc.dim() != 3 or enc.shape[0] != 1:
        raise ValueError(f"encoder has shape {tuple(enc.shape)}, expected 1×p²×c")
    p = math.isqrt(enc.shape[1])
    if p * p != enc.shape[1] or p % 2 != 1:
        raise ValueError(f"encoder has {enc.shape[1]} rows, not the taps of an odd p×p kernel")
    nf = state["Restorer.head.weight"].shape[0]
    if "Restorer.upscale.4.weight" in state:
        scale = 4
    else:
        s2 = state["Restorer.upscale.0.weight"].shape[0] / nf
        scale = round(math.sqrt(s2))
        if scale * scale != s2:
            raise ValueError(f"upsampler width {state['Restorer.upscale.0.weight'].shape[0]} matches no scale "
                             f"(expected {nf}·s²)")
    try:
        setting = setting_of_kernel_size(scale, p)
        return DANConfig(scale=scale, setting=setting, kernel_size=p, nf=nf,
                         nb=count_indexed(state, "Restorer.body"), code_length=enc.shape[2],
                         estimator_nf=state["Estimator.head_LR.weight"].shape[0],
                         estimator_blocks=count_indexed(state, "Estimator.body"))
    except ValueError as e:
        raise ValueError(f"unsupported DAN shape ({e})") from e


@dataclass
class DANLoss:
    """The release's loss on the last iteration: ``image_weight_last``·L1(SRᵀ, X) +
    ``code_weight``·L1(cᵀ, c_gt), 1 : 1 (docs/dan.md)."""

    image_weight_last: float = 1.0
    code_weight: float = 1.0
