"""KXNet's static-shape graphs, for ONNX (:func:`kxnet.export.export_onnx`) and OpenVINO
(:mod:`.engine`): the descriptor's ``export`` hook.

ONNX wants static shapes where KXNet uses data as convolution weights (the per-image blur
kernel in ``D_K`` / ``Dᵀ_K``, the residual in the kernel gradient). :class:`ExportableKXNet`
is therefore the blind forward of :class:`~kxnet.models.KXNet` (docs/kxnet.md, "The network")
rewritten for a fixed LR size with every shape a Python constant, using the same arithmetic as
the fast path: fused strided blur, the patch-free kernel gradient (one dilated convolution),
``Dᵀ`` by output phases with the normaliser as one extra channel, and prox nets with the 0.1
residual scale folded into the weights. It shares no code with the model's forward, so the
export is always checked against the PyTorch model (:func:`kxnet.export.export_onnx` does it
and reports the largest difference).

Tiled inference needs two more graphs of the same forward (:mod:`.engine` builds them): the
blind one also returning the per-stage kernels K¹…K^T (``ExportableKXNet(..., stage_kernels=True)``),
and :class:`NonBlindExportableKXNet`, which takes those kernels as an input and runs only the
X-steps, as ``KXNet.forward(y, kernel=[K¹…K^T])`` does.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fast import folded_prox_params
from .network import GAMMA_DIVISOR, NORMALISER_EPS, PROJECTION_EPS, KXNet

__all__ = ["ExportableKXNet", "NonBlindExportableKXNet", "export_graph"]


class _FoldedProxNet(nn.Module):
    """A prox net (§3.4) with 0.1 folded into the second convolution of each block and the
    last one; out-of-place ops only (ONNX Runtime fuses Conv+Add+Relu itself)."""

    def __init__(self, prox: nn.Module):
        super().__init__()
        self.convs = nn.ModuleList()
        with torch.no_grad():
            for w, b in folded_prox_params(prox):
                c = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
                c.weight.copy_(w)
                c.bias.copy_(b)
                self.convs.append(c)

    def forward(self, u):
        z = u
        for i in range(4):
            z = F.relu(z + self.convs[2 * i + 1](F.relu(self.convs[2 * i](z))))
        return F.relu(u + self.convs[8](z))


class _StaticShapeStages(nn.Module):
    """What the blind and non-blind graphs share: the physics operators for one LR size
    ``(h, w)``, batch 1 and ``p``×``p`` kernels, and the X-step of every stage."""

    def __init__(self, model: KXNet, size: tuple[int, int], kernel_size: int):
        super().__init__()
        c = model.config
        self.scale, self.p, self.mode, self.stages = c.scale, int(kernel_size), c.mode, c.stages
        self.h, self.w = int(size[0]), int(size[1])
        if c.scale * min(self.h, self.w) <= self.p // 2:
            raise ValueError(f"LR size {self.h}×{self.w} is too small for {self.p}×{self.p} kernels at ×{c.scale}")
        with torch.no_grad():
            self.register_buffer("av_x_ker", model.AV_X_ker.detach().clone())
        self.x_prox = nn.ModuleList(_FoldedProxNet(st.X_ProNet) for st in model.X_stage)
        # the LR restorer (static-shape convolutions) runs first, as in the model's forward
        self.restorer = None if model.lr_restorer is None else copy.deepcopy(model.lr_restorer).eval()

    # ---- operators with constant shapes (batch 1, three colour channels)

    def _blur_downsample(self, x, k):
        s, p, r = self.scale, self.p, self.p // 2
        hh, ww = s * self.h, s * self.w
        xp = F.pad(x, (r, r, r, r), mode="reflect").reshape(3, 1, hh + 2 * r, ww + 2 * r)
        return F.conv2d(xp, k.reshape(1, 1, p, p), stride=s).reshape(1, 3, self.h, self.w)

    def _kernel_gradient(self, x, residual):
        s, p, r = self.scale, self.p, self.p // 2
        xp = F.pad(x, (r, r, r, r), mode="reflect")
        g = F.conv2d(xp, residual.reshape(1, 3, self.h, self.w), dilation=s)
        return g[0, :, :p, :p] * (1.0 / (3 * self.h * self.w))

    def _adjoint(self, e, k, channels):
        """``Dᵀ_K`` by output phases (see :func:`kxnet.models.fast.back_project_phases`)."""
        s, p, r = self.scale, self.p, self.p // 2
        hh, ww = s * self.h, s * self.w
        j = -(-p // s)
        pad = r if self.mode == "official" else 0
        out_h, out_w = (hh, ww) if self.mode == "official" else (hh + 2 * r, ww + 2 * r)
        kp = F.pad(k.reshape(1, p, p), (0, j * s - p, 0, j * s - p))
        idx = torch.arange(j - 1, -1, -1)   # flip as a gather: exports everywhere
        sub = kp.reshape(j, s, j, s).permute(1, 3, 0, 2)[:, :, idx][:, :, :, idx].reshape(s * s, 1, j, j)
        rows, cols = -(-(out_h + pad) // s), -(-(out_w + pad) // s)
        ep = F.pad(e, (j - 1, max(cols - self.w, 0), j - 1, max(rows - self.h, 0)))
        q_h, q_w = max(rows, self.h), max(cols, self.w)   # rows/columns of each phase plane
        out = F.conv2d(ep.reshape(channels, 1, q_h + j - 1, q_w + j - 1), sub)
        full = F.pixel_shuffle(out, s).reshape(1, channels, q_h * s, q_w * s)
        full = full[:, :, pad:pad + out_h, pad:pad + out_w]
        return full if self.mode == "official" else self._reflect_pad_adjoint(full, r)

    @staticmethod
    def _reflect_pad_adjoint(z, r):
        """Out-of-place adjoint of reflect padding (fold the borders back), for export."""
        if r == 0:
            return z
        for dim in (2, 3):
            n = z.shape[dim] - 2 * r
            idx = torch.arange(r - 1, -1, -1)
            left = z.narrow(dim, 0, r).index_select(dim, idx)        # source pixels 1 … r
            right = z.narrow(dim, r + n, r).index_select(dim, idx)   # source pixels n−1−r … n−2
            centre = z.narrow(dim, r, n)
            shape = list(centre.shape)
            shape[dim] = 1
            zeros1 = centre.new_zeros(shape)
            shape[dim] = n - 1 - r
            zeros_mid = centre.new_zeros(shape)
            add_left = torch.cat([zeros1, left, zeros_mid], dim=dim)
            shape[dim] = n - 1 - r
            zeros_a = centre.new_zeros(shape)
            add_right = torch.cat([zeros_a, right, zeros1], dim=dim)
            z = centre + add_left + add_right
        return z

    # ---- stages

    def _image_step(self, t, x, y, k, aux_x):
        s = self.scale
        n = 3 * s * s
        e = self._blur_downsample(x, k) - y
        both = self._adjoint(torch.cat([e, torch.ones(1, 1, self.h, self.w)], dim=1), k, 4)
        g = both[:, :3] / (both[:, 3:] + NORMALISER_EPS)
        v = self.x_prox[t](torch.cat([F.pixel_unshuffle(x, s), F.pixel_unshuffle(g, s), y, aux_x], dim=1))
        return F.pixel_shuffle(v[:, :n], s), v[:, 2 * n + 3:]

    def _restored(self, y):
        return y if self.restorer is None else self.restorer(y)

    def _start(self, y):
        return (F.interpolate(y, scale_factor=self.scale, mode="bicubic", align_corners=False),
                F.conv2d(y, self.av_x_ker, padding=1))


class ExportableKXNet(_StaticShapeStages):
    """The blind KXNet forward for one LR size ``(h, w)`` and batch 1, with static shapes:
    ``forward(lr)`` → ``(sr, kernel)`` (1×3×sh×sw, 1×p×p), and with ``stage_kernels`` also
    K¹…K^T as a third output (1×T×p×p). Weights are copied from ``model``."""

    def __init__(self, model: KXNet, size: tuple[int, int], stage_kernels: bool = False):
        super().__init__(model, size, model.config.kernel_size)
        self.stage_kernels = stage_kernels
        with torch.no_grad():
            self.register_buffer("kernel_map", model.kernel_map.detach().clone())
            self.register_buffer("gamma", model.gamma_stage.detach().clone())
            self.register_buffer("initial_kernel", model.initial_kernel.detach().clone())
        # K⁰ from the LR image where the model has an estimator (a KENet: static-shape layers only)
        self.estimator = None if model.K_estimator is None else copy.deepcopy(model.K_estimator).eval()
        if self.estimator is not None:
            self.estimator.check_size(self.h, self.w)
        self.k_prox = nn.ModuleList(_FoldedProxNet(st.K_ProNet) for st in model.K_stage)

    def forward(self, y):
        p = self.p
        y = self._restored(y)
        x, aux_x = self._start(y)
        k = self.initial_kernel.reshape(1, p, p) if self.estimator is None else self.estimator.estimate(y)
        aux_k = self.kernel_map.unsqueeze(0)
        kernels = []
        for t in range(self.stages):
            residual = self._blur_downsample(x, k) - y
            k = k - self.gamma[t] / GAMMA_DIVISOR * self._kernel_gradient(x, residual)
            z = self.k_prox[t](torch.cat([k.unsqueeze(1).expand(1, 3, p, p), aux_k], dim=1))
            k = F.relu(z[:, :3].mean(dim=1) + PROJECTION_EPS)
            k = k / k.sum(dim=(-2, -1), keepdim=True)
            aux_k = z[:, 3:]
            x, aux_x = self._image_step(t, x, y, k, aux_x)
            kernels.append(k)
        return (x, k, torch.stack(kernels, dim=1)) if self.stage_kernels else (x, k)


class NonBlindExportableKXNet(_StaticShapeStages):
    """The non-blind KXNet forward for one LR size and batch 1: ``forward(lr, kernels)`` with
    ``kernels`` 1×T×p×p (stage t's X-step uses ``kernels[:, t]``, the K-steps are skipped) →
    ``sr`` (1×3×sh×sw). As ``KXNet.forward(lr, kernel=[K¹…K^T])``; a single kernel is every
    stage's when repeated T times. ``kernel_size`` defaults to the model's."""

    def __init__(self, model: KXNet, size: tuple[int, int], kernel_size: int | None = None):
        p = model.config.kernel_size if kernel_size is None else int(kernel_size)
        if p < 1 or p % 2 != 1:
            raise ValueError(f"kernels must be odd-sized, got {p}×{p}")
        super().__init__(model, size, p)

    def forward(self, y, kernels):
        y = self._restored(y)
        x, aux_x = self._start(y)
        for t in range(self.stages):
            x, aux_x = self._image_step(t, x, y, kernels[:, t], aux_x)
        return x


def export_graph(model: KXNet, size: tuple[int, int], blind: bool = True, kernel_size: int | None = None) -> nn.Module:
    """The descriptor's ``export`` hook: blind, :class:`ExportableKXNet` (``lr → (sr, kernel)``);
    otherwise :class:`NonBlindExportableKXNet` (``(lr, kernels) → sr``, kernels 1×T×p×p)."""
    if blind:
        return ExportableKXNet(model, size)
    return NonBlindExportableKXNet(model, size, kernel_size)
