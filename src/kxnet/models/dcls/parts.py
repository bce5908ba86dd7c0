"""DCLS's two networks, with the release's parameter names (``dcls_arch.py``; docs/dcls.md).

* :class:`Estimator` — the dynamic deep linear kernel (DDLK): per-image filters of a few
  linear layers, collapsed into one LR-space kernel;
* :class:`Restorer` — deep constrained least squares in feature space
  (:func:`~.fourier.cls_deconvolve`) followed by the dual-path attention network (DPAN)
  and the upsampler.

All LeakyReLU slopes are 0.1. Initialisation follows the release (Kaiming-normal, fan-in).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fourier import cls_deconvolve

__all__ = ["Estimator", "Restorer"]

LEAKY_SLOPE = 0.1
ATTENTION_REDUCTION = 4     # release: every CALayer of the DPAN uses DPCAB's default reduction 4
FEATURE_BLOCKS = 3          # residual blocks of the Restorer's feature_block and the Estimator's body


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    """3×3, stride 1, "same" zero padding, with bias."""
    return nn.Conv2d(c_in, c_out, 3, 1, 1)


def _kaiming(modules, scale: float = 1.0) -> None:
    """The release's ``initialize_weights``: Kaiming-normal (fan-in) × ``scale``, zero bias."""
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            m.weight.data.mul_(scale)
            if m.bias is not None:
                m.bias.data.zero_()


class _ResBlock(nn.Module):
    """x + conv(LReLU(conv(x))) (the release's ``ResidualBlock_noBN``, initialised × 0.1)."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = _conv(nf, nf)
        self.conv2 = _conv(nf, nf)
        _kaiming([self.conv1, self.conv2], 0.1)

    def forward(self, x):
        return x + self.conv2(F.leaky_relu(self.conv1(x), LEAKY_SLOPE))


class _ChannelAttention(nn.Module):
    """Average-pool → 1×1 (c → c/r) → ReLU → 1×1 → sigmoid → rescale (release ``CALayer``)."""

    def __init__(self, channels: int, reduction: int = ATTENTION_REDUCTION):
        super().__init__()
        self.conv_du = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.conv_du(x.mean(dim=(-2, -1), keepdim=True))


class _DualPathBlock(nn.Module):
    """DPAB (release ``DPCAB``): the deblurred path (nf) is refined with attention over both
    paths' features, the primitive path (nf2) with attention over its own."""

    def __init__(self, nf: int, nf2: int):
        super().__init__()
        self.body1 = nn.Sequential(_conv(nf, nf), nn.LeakyReLU(LEAKY_SLOPE, inplace=True), _conv(nf, nf))
        self.body2 = nn.Sequential(_conv(nf2, nf2), nn.LeakyReLU(LEAKY_SLOPE, inplace=True), _conv(nf2, nf2))
        self.CA_body1 = nn.Sequential(nn.LeakyReLU(LEAKY_SLOPE), _conv(nf + nf2, nf), _ChannelAttention(nf))
        self.CA_body2 = _ChannelAttention(nf2)

    def forward(self, deblurred, primitive):
        f1, f2 = self.body1(deblurred), self.body2(primitive)
        return deblurred + self.CA_body1(torch.cat([f1, f2], dim=1)), primitive + self.CA_body2(f2)


class _DualPathGroup(nn.Module):
    """``nb`` DPABs. The release means a residual over the group but writes it after its blocks
    have updated the shared input list in place, so it computes ``out + out``: the group
    *doubles* its blocks' output. Kept, because the published weights were trained with it."""

    def __init__(self, nf: int, nf2: int, nb: int):
        super().__init__()
        self.body = nn.Sequential(*[_DualPathBlock(nf, nf2) for _ in range(nb)])

    def forward(self, deblurred, primitive):
        for block in self.body:
            deblurred, primitive = block(deblurred, primitive)
        return 2 * deblurred, 2 * primitive


class _CLS(nn.Module):
    """Deep constrained least squares in feature space (paper §3.3): reduce to nf2 channels,
    predict one zero-mean 3×3 regulariser per channel and image, deconvolve by k̂ (Eq. 16),
    expand back to nf. Features are replicate-padded by p for the FFT and cropped after."""

    def __init__(self, nf: int, nf2: int, eps: float):
        super().__init__()
        self.eps = eps
        self.reduce_feature = nn.Conv2d(nf, nf2, 1)
        self.grad_filter = nn.Sequential(
            nn.Conv2d(nf2, nf2, 3), nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(nf2, nf2, 3), nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(nf2, nf2, 3), nn.AdaptiveAvgPool2d((3, 3)), nn.Conv2d(nf2, nf2, 1))
        self.expand_feature = nn.Conv2d(nf2, nf, 1)

    def forward(self, x, kernel):
        g = self.reduce_feature(x)
        q = torch.exp(self.grad_filter(g))
        regulariser = q - q.mean(dim=(-2, -1), keepdim=True)
        p = kernel.shape[-1]
        padded = F.pad(g, (p, p, p, p), mode="replicate")
        deblurred = cls_deconvolve(padded, kernel, regulariser, self.eps)[..., p:-p, p:-p]
        return self.expand_feature(deblurred)


def _upsampler(nf: int, scale: int) -> nn.Sequential:
    """×4: two conv + PixelShuffle(2) stages; ×2/×3: one conv + PixelShuffle(s); then conv → 3."""
    if scale == 4:
        return nn.Sequential(_conv(nf, 4 * nf), nn.PixelShuffle(2), _conv(nf, 4 * nf), nn.PixelShuffle(2),
                             _conv(nf, 3))
    return nn.Sequential(_conv(nf, nf * scale ** 2), nn.PixelShuffle(scale), _conv(nf, 3))


class Restorer(nn.Module):
    """Non-blind SR given an LR-space kernel: features → (primitive, CLS-deblurred) → DPAN →
    fusion + global skip → upsampler, clamped to [0, 1] as the release does."""

    def __init__(self, scale: int, nf: int = 64, nf2: int = 16, nb: int = 10, ng: int = 5, cls_eps: float = 0.0):
        super().__init__()
        self.conv_first = _conv(3, nf)
        self.feature_block = nn.Sequential(*[_ResBlock(nf) for _ in range(FEATURE_BLOCKS)])
        self.head1 = _conv(nf, nf2)
        self.head2 = _CLS(nf, nf2, cls_eps)
        self.body = nn.Sequential(*[_DualPathGroup(nf, nf2, nb) for _ in range(ng)])
        self.fusion = _conv(nf + nf2, nf)
        self.upscale = _upsampler(nf, scale)

    def forward(self, y, kernel):
        f = self.conv_first(y)
        features = self.feature_block(f)
        primitive, deblurred = self.head1(features), self.head2(features, kernel)
        for group in self.body:
            deblurred, primitive = group(deblurred, primitive)
        f = self.fusion(torch.cat([primitive, deblurred], dim=1)) + f
        return self.upscale(f).clamp(0.0, 1.0)


class Estimator(nn.Module):
    """DDLK: image features → latent z → one Linear decoder per deep-linear layer gives that
    layer's per-image filters → collapsed into one p×p kernel (p = Σ(f − 1) + 1), flipped
    (correlation → convolution), averaged over the 3 channels and divided by its sum. No sign
    constraint, no guard on the sum (the release's)."""

    def __init__(self, filter_structures: list[int], nf: int = 64, input_para: int = 256, channels: int = 16):
        super().__init__()
        fs = self.filter_structures = list(filter_structures)
        self.kernel_size = sum(f - 1 for f in fs) + 1
        # (out, in) channels of each deep-linear layer: 3 → G → … → G → 3
        self.layer_channels = [(channels, 3)] + [(channels, channels)] * (len(fs) - 2) + [(3, channels)]
        self.head = nn.Sequential(nn.Conv2d(3, nf, 7, 1, 3))
        self.body = nn.Sequential(nn.Sequential(*[_ResBlock(nf) for _ in range(FEATURE_BLOCKS)]))
        self.tail = nn.Sequential(nn.Conv2d(nf, nf, 3), nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
                                  nn.Conv2d(nf, nf, 3), nn.AdaptiveAvgPool2d(1),
                                  nn.Conv2d(nf, input_para, 1), nn.Flatten())
        self.dec = nn.ModuleList(nn.Linear(input_para, o * i * f * f)
                                 for (o, i), f in zip(self.layer_channels, fs))
        _kaiming(self.modules())  # the release re-initialises the whole Estimator (residual blocks × 1)

    def forward(self, y):
        b = y.shape[0]
        f = self.head(y)
        z = self.tail(self.body(f) + f)
        # Collapse the deep linear kernel: push a 1×1 impulse per (image, channel) through
        # every layer (grouped per image); zero padding p−1 on the first layer makes the
        # sizes shrink to exactly p×p.
        k = y.new_ones(1, 3 * b, 1, 1)
        layers = zip(self.dec, self.layer_channels, self.filter_structures)
        for n, (dec, (c_out, c_in), size) in enumerate(layers):
            w = dec(z).reshape(b * c_out, c_in, size, size)
            k = F.conv2d(k, w, padding=self.kernel_size - 1 if n == 0 else 0, groups=b)
        p = self.kernel_size
        k = k.reshape(b, 3, p, p).flip(-2, -1).mean(dim=1, keepdim=True)
        return k / k.sum(dim=(-2, -1), keepdim=True)
