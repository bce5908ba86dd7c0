"""What OpenVINO needs to run a KXNet: the descriptor's ``fast_engine`` hook.

:class:`kxnet.inference.openvino.OpenVINORunner` compiles and caches graphs for any method; this
says which graphs a KXNet's are (:mod:`.export`'s static-shape forward) and how the model's
arguments map onto them. The upscaler needs two: a photo larger than a tile is run blind once on
a centre crop (:class:`~.export.ExportableKXNet` with the per-stage kernels K¹…K^T as a third
output), then every tile non-blind with that crop's kernels (:class:`~.export.NonBlindExportableKXNet`,
stage t's X-step given K^t, the K-steps skipped), as ``KXNet.forward(y, kernel=[K¹…K^T])``.

In bf16 only the X-steps' prox nets (nearly all of the FLOPs) run in bf16, as under
``torch.autocast``; the physics, the K-steps and KENet stay f32, so the kernel estimate is
computed as on the exact path (docs/speed.md, "Backends"). :meth:`KXNetEngine.keep_precise`
marks every other node with OpenVINO's "precise" runtime attribute.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..output import SROutput
from .export import ExportableKXNet, NonBlindExportableKXNet
from .network import KXNet

__all__ = ["KXNetEngine"]

_BF16_SCOPE = "__module.x_prox."   # node names the PyTorch frontend gives the X-steps' prox nets
_PROX_CONVS = 9


class KXNetEngine:
    """A KXNet's graphs for a compiled engine (any scale, stage count and mode, with or without
    a KENet K⁰ estimator). ``model`` is float32 on the CPU."""

    def __init__(self, model: KXNet):
        self.model = model
        self.config = model.config
        self.scale = model.config.scale
        self.kernel_size = model.config.kernel_size

    def check(self, h: int, w: int, kernel_size: int, blind: bool) -> None:
        """Refuse an LR size the forward refuses (before any padding to a graph's size)."""
        if self.scale * min(h, w) <= kernel_size // 2:
            raise ValueError(f"LR image {h}×{w} is too small for {kernel_size}×{kernel_size} kernels at ×{self.scale}")
        if blind and self.model.K_estimator is not None:
            self.model.K_estimator.check_size(h, w)

    def condition(self, kernel, b: int) -> np.ndarray:
        """``kernel`` as ``KXNet.forward`` takes it → the non-blind graph's second input, a
        B×T×p×p float32 array (p names the graph)."""
        t_count = self.config.stages
        if isinstance(kernel, (list, tuple)):
            if len(kernel) != t_count:
                raise ValueError(f"expected {t_count} per-stage kernels, got {len(kernel)}")
            per_stage = [self._kernel_batch(k, b) for k in kernel]
            if len({k.shape for k in per_stage}) != 1:
                raise ValueError("per-stage kernels must all have the same size")
        else:
            per_stage = [self._kernel_batch(kernel, b)] * t_count
        return torch.stack(per_stage, dim=1).numpy()

    @staticmethod
    def _kernel_batch(k, b: int) -> torch.Tensor:
        k = torch.as_tensor(k).detach().to("cpu", torch.float32)
        if k.dim() == 2:
            k = k.unsqueeze(0)
        if k.dim() != 3 or k.shape[-1] != k.shape[-2] or k.shape[-1] % 2 != 1 or k.shape[0] not in (1, b):
            raise ValueError(f"a kernel must be p×p or B×p×p with odd p (B = {b}), got shape {tuple(k.shape)}")
        if not torch.isfinite(k).all():
            raise ValueError("kernel has non-finite values (NaN or ±inf)")
        return k.expand(b, -1, -1).contiguous()

    def graph(self, size: tuple[int, int], blind: bool, kernel_size: int):
        """``(module, example inputs)`` to trace for LR ``size``: blind ``lr → (sr, kernel,
        K¹…K^T)``, non-blind ``(lr, K¹…K^T) → sr``."""
        y = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
        if blind:
            return ExportableKXNet(self.model, size, stage_kernels=True), (y,)
        k = torch.full((1, self.config.stages, kernel_size, kernel_size), 1.0 / (kernel_size * kernel_size))
        return NonBlindExportableKXNet(self.model, size, kernel_size), (y, k)

    def output(self, sr: torch.Tensor, condition: torch.Tensor) -> SROutput:
        """The model's output from the graph's: ``condition`` is B×T×p×p, the blind graph's
        last output or the kernels given."""
        stages = list(condition.unbind(dim=1))
        return SROutput(sr, stages[-1], [], stages)

    @staticmethod
    def int8_float_kept() -> list[str]:
        """What stays float32 in int8 (regular expressions of node names, NNCF ``IgnoredScope``
        patterns): every node outside the X-steps' prox nets, and in each prox net the first
        convolution and the two residual additions that take its input. That input joins the
        image estimate to the auxiliary channels under one quantiser range whose 256 levels are
        3–6 grey levels of the image; NNCF's accuracy control gave back exactly that quantiser
        (docs/speed.md, "int8 with accuracy control")."""
        prox = _BF16_SCOPE.replace(".", r"\.")
        return [rf"^(?!{prox}).*", rf"^{prox}\d+\.convs\.0/.*", rf"^{prox}\d+/aten::add/Add(_4)?$"]

    def keep_precise(self, model) -> None:
        """Mark every node but the X-steps' prox nets "precise": a bf16 compile keeps them f32.

        Set from Python the mark is a plain string; ``save_model`` turns it into OpenVINO's
        attribute, so it works only on a model read back from its saved IR."""
        stages = self.config.stages
        convs = [n for n in model.get_ordered_ops()
                 if n.get_type_name() == "Convolution" and n.get_friendly_name().startswith(_BF16_SCOPE)]
        if len(convs) != _PROX_CONVS * stages:
            warnings.warn(f"found {len(convs)} of the {_PROX_CONVS * stages} X-prox convolutions by name in the "
                          "converted graph (this OpenVINO names nodes differently): a bf16 compile will run "
                          "the whole graph in bf16", RuntimeWarning, stacklevel=3)
            return
        for node in model.get_ordered_ops():
            if not node.get_friendly_name().startswith(_BF16_SCOPE):
                node.get_rt_info()["precise_0"] = ""
