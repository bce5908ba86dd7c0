"""Inference-optimised KXNet: :func:`optimize` returns a model with the same outputs (float
tolerance) that runs faster.

What it changes, and why: ¾ or more of a forward is the 9 C×C 3×3 convolutions of every
prox net (C = 6s²+35: 59 / 89 / 131 channels for ×2 / ×3 / ×4). Each prox net is replaced by
a :class:`FusedProxNet` that

* folds the residual scale 0.1 into the second convolution of each block and into the last
  one (``0.1·(W∗z + b) = (0.1W)∗z + 0.1b``: float rounding only);
* on CPU (float32, oneDNN available) runs every convolution as one fused oneDNN primitive:
  ``ReLU(conv(z) + b)`` and ``ReLU(z + conv'(t) + b')`` (bias, residual add and ReLU in the
  convolution's epilogue), with the weights re-ordered once into oneDNN's blocked layout
  (no per-call weight reorder) and activations in channels_last (NHWC) — no NCHW↔blocked
  reorders around each convolution;
* elsewhere (GPU, other dtypes) uses ``F.conv2d`` in channels_last with in-place add/ReLU,
  optionally with the channels zero-padded to a multiple of 8 or 16 (tensor-core friendly).

The X-stages are replaced too (``fast_stages``): ``Dᵀ_K`` as s² stride-1 correlations
instead of a strided transposed convolution (much faster in oneDNN), the normaliser
``Dᵀ_K(1)`` as one extra channel of the same call, the prox input written straight into its
NHWC buffer, and the last prox convolution computing only the channels the stage keeps
(``V[0:3s²]`` and ``V[6s²+3:]``; the release discards the rest — exact, 4 % fewer FLOPs).

Why each choice, with the measurements behind it: docs/speed.md.

Channel padding keeps results exact: padded input channels are zero, padded output
channels have zero weights and bias, so they stay zero through ReLU and the residuals, and
are sliced off at the end. It is off unless asked for (``pad_channels="auto"`` pads to 8 on
CUDA only): on the CPU it did not pay.

The whole forward runs under :func:`torch.inference_mode` (no autograd bookkeeping), and
optionally under CUDA autocast (bf16/fp16: *changes* outputs beyond float32 tolerance, so
off by default), :func:`torch.compile`, or CUDA graphs (replayed per input shape).

The optimised model wraps a converted :class:`KXNet` (its forward is KXNet's own, so
non-blind and per-stage kernels work) and is inference-only: no gradients, and its prox-net
weights live in packed form outside the state dict — save the original model, not this one.
"""

from __future__ import annotations

import copy
import warnings
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...physics import back_project_phases, blur_downsample, blur_downsample_adjoint_phases
from .network import NORMALISER_EPS, RESIDUAL_SCALE, KXNet, _ImageStage

__all__ = [
    "FusedProxNet",
    "folded_prox_params",
    "OptimizedKXNet",
    "image_step_gradient_fast",
    "mkldnn_fusion_available",
    "optimize",
    "prox_nets",
]

_BLOCKS = 4             # residual blocks before the final convolution


def mkldnn_fusion_available() -> bool:
    """Whether the oneDNN fused-convolution ops exist in this PyTorch build (CPU)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _prox_convs(prox: nn.Module) -> list[nn.Conv2d]:
    convs = [m for m in prox.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != 2 * _BLOCKS + 1:
        raise ValueError(f"expected a prox net of {2 * _BLOCKS + 1} convolutions, found {len(convs)}")
    c = convs[0].in_channels
    for m in convs:
        if (m.in_channels, m.out_channels, m.kernel_size, m.padding, m.stride, m.dilation, m.groups) != \
                (c, c, (3, 3), (1, 1), (1, 1), (1, 1), 1) or m.bias is None:
            raise ValueError("prox-net convolutions must all be C→C, 3×3, padding 1, stride 1, with bias")
    return convs


def folded_prox_params(prox: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The prox net's (weight, bias) pairs with the 0.1 residual scale folded into the second
    convolution of each block and the last one: ``z + 0.1·conv(·)`` is ``z + conv′(·)``."""
    convs = _prox_convs(prox)
    params = []
    with torch.no_grad():
        for i, conv in enumerate(convs):
            second = i % 2 == 1 or i == len(convs) - 1  # 2nd conv of a block, and the last
            scale = RESIDUAL_SCALE if second else 1.0
            params.append((conv.weight * scale, conv.bias * scale))
    return params


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


class FusedProxNet(nn.Module):
    """A :class:`~kxnet.models.kxnet._ProxNet` re-packed for inference; same function.

    ``backend="mkldnn"`` (CPU float32): fused oneDNN convolutions with pre-packed weights;
    ``backend="conv"``: ``F.conv2d`` (any device) with in-place add/ReLU. ``pad_channels``
    zero-pads the channel count to a multiple of 8 or 16; ``channels_last`` runs in NHWC.
    ``kept_outputs`` (channel ranges ``[(start, stop), …]``) enables :meth:`forward_kept`,
    whose last convolution computes only those output channels (the X-stage drops the
    others). Weights are copied at construction (later changes to ``prox`` are not seen).
    """

    def __init__(self, prox: nn.Module, backend: str = "mkldnn", pad_channels: int | None = None,
                 channels_last: bool = True, prepack: bool = True,
                 kept_outputs: list[tuple[int, int]] | None = None):
        super().__init__()
        if backend not in ("mkldnn", "conv"):
            raise ValueError(f"backend must be 'mkldnn' or 'conv', got {backend!r}")
        if pad_channels not in (None, 8, 16):
            raise ValueError(f"pad_channels must be None, 8 or 16, got {pad_channels!r}")
        convs = _prox_convs(prox)
        self.channels = convs[0].in_channels
        self.padded_channels = _round_up(self.channels, pad_channels)
        self.backend = backend
        self.channels_last = channels_last
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        c, cp = self.channels, self.padded_channels
        weights, biases = [], []
        with torch.no_grad():
            for folded_w, folded_b in folded_prox_params(prox):
                w = folded_w.new_zeros(cp, cp, 3, 3)
                w[:c, :c] = folded_w
                b = folded_b.new_zeros(cp)
                b[:c] = folded_b
                weights.append(w.contiguous(memory_format=fmt))
                biases.append(b)
            self.kept_outputs = [(int(a), int(b)) for a, b in kept_outputs] if kept_outputs else None
            if self.kept_outputs:
                index = torch.cat([torch.arange(a, b) for a, b in self.kept_outputs]).to(weights[-1].device)
                if index.numel() and (index.min() < 0 or index.max() >= c):
                    raise ValueError(f"kept_outputs {kept_outputs} outside 0…{c}")
                weights.append(weights[-1][index].contiguous(memory_format=fmt))
                biases.append(biases[-1][index].contiguous())
        if backend == "mkldnn":
            if not mkldnn_fusion_available():
                raise RuntimeError("this PyTorch build has no oneDNN fused convolutions; use backend='conv'")
            if weights[0].device.type != "cpu" or weights[0].dtype != torch.float32:
                raise ValueError("backend='mkldnn' needs float32 weights on the CPU")
            if prepack:  # oneDNN's blocked layout, once; an opaque tensor (kept off the state dict)
                weights = [torch.ops.mkldnn._reorder_convolution_weight(w, [1, 1], [1, 1], [1, 1], 1)
                           for w in weights]
            self._packed = list(zip(weights, biases))
        else:
            for i, (w, b) in enumerate(zip(weights, biases)):
                self.register_buffer(f"weight{i}", w)
                self.register_buffer(f"bias{i}", b)

    def extra_repr(self) -> str:
        return (f"{self.channels}→{self.channels} (padded to {self.padded_channels}), backend={self.backend}, "
                f"channels_last={self.channels_last}")

    def _prepare(self, u: torch.Tensor) -> torch.Tensor:
        if u.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {u.shape[1]}")
        if self.padded_channels != self.channels:
            u = F.pad(u, (0, 0, 0, 0, 0, self.padded_channels - self.channels))
        if self.channels_last:
            u = u.contiguous(memory_format=torch.channels_last)
        return u

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        out = self.forward_padded(self._prepare(u))
        return out[:, : self.channels] if self.padded_channels != self.channels else out

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The prox net on an input already padded to ``padded_channels`` (zeros) and in the
        chosen memory format; returns all ``padded_channels`` (the padding stays zero)."""
        return self._last(self._blocks(x), x, 2 * _BLOCKS)

    def forward_kept(self, x: torch.Tensor) -> torch.Tensor:
        """Like :meth:`forward_padded` but returns only the ``kept_outputs`` channels, in order
        (the last convolution computes nothing else): same values as those channels of the full
        output."""
        if not self.kept_outputs:
            raise RuntimeError("built without kept_outputs")
        skip = torch.cat([x[:, a:b] for a, b in self.kept_outputs], dim=1)
        if self.channels_last:
            skip = skip.contiguous(memory_format=torch.channels_last)
        return self._last(self._blocks(x), skip, 2 * _BLOCKS + 1)

    def _weights(self, i: int):
        if self.backend == "mkldnn":
            return self._packed[i]
        return getattr(self, f"weight{i}"), getattr(self, f"bias{i}")

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        if self.backend == "mkldnn":
            conv_relu = torch.ops.mkldnn._convolution_pointwise.default
            conv_add_relu = torch.ops.mkldnn._convolution_pointwise.binary
            one = [1, 1]
            for i in range(_BLOCKS):
                (w1, b1), (w2, b2) = self._weights(2 * i), self._weights(2 * i + 1)
                t = conv_relu(z, w1, b1, one, one, one, 1, "relu", [], "")
                z = conv_add_relu(t, z, w2, b2, one, one, one, 1, "add", 1.0, "relu", [], "")
            return z
        for i in range(_BLOCKS):
            (w1, b1), (w2, b2) = self._weights(2 * i), self._weights(2 * i + 1)
            t = F.conv2d(z, w1, b1, padding=1).relu_()
            z = F.conv2d(t, w2, b2, padding=1).add_(z).relu_()
        return z

    def _last(self, z: torch.Tensor, skip: torch.Tensor, i: int) -> torch.Tensor:
        """ReLU(skip + conv_i(z)): the final convolution and the skip from the input."""
        w, b = self._weights(i)
        if self.backend == "mkldnn":
            one = [1, 1]
            return torch.ops.mkldnn._convolution_pointwise.binary(z, skip, w, b, one, one, one, 1, "add", 1.0,
                                                                  "relu", [], "")
        return F.conv2d(z, w, b, padding=1).add_(skip).relu_()


# ------------------------------------------------------------------------ the X-step's physics

_FAST_ADJOINTS = {"official": back_project_phases, "exact": blur_downsample_adjoint_phases}


def image_step_gradient_fast(x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor, scale: int,
                             mode: str = "official") -> torch.Tensor:
    """:func:`kxnet.models.kxnet.image_step_gradient`, faster: ``Dᵀ(E)`` and the normaliser
    ``Dᵀ(1)`` in one call (the normaliser is the same for every colour channel, so it is one
    extra channel, not three), each by output phases."""
    b, c = y.shape[:2]
    e = blur_downsample(x, kernel, scale) - y
    both = _FAST_ADJOINTS[mode](torch.cat([e, e.new_ones(b, 1, e.shape[-2], e.shape[-1])], dim=1), kernel,
                                scale, (x.shape[-2], x.shape[-1]))
    return both[:, :c] / (both[:, c:] + NORMALISER_EPS)


class _FastImageStage(_ImageStage):
    """X-net of one stage (docs/kxnet.md) for a :class:`FusedProxNet`: the fast X-step gradient, and the
    prox input assembled straight into one channels-last (NHWC), channel-padded buffer."""

    step_gradient = staticmethod(image_step_gradient_fast)

    def forward(self, x, y, kernel, aux):
        s = self.scale
        prox = self.X_ProNet
        b, _, hh, ww = x.shape
        h, w = y.shape[-2:]
        if not prox.channels_last or not prox.kept_outputs or (hh, ww) != (s * h, s * w):
            return super().forward(x, y, kernel, aux)
        g = self.step_gradient(x, y, kernel, s, self.mode)
        n, c = 3 * s * s, prox.channels
        buf = x.new_empty(b, h, w, prox.padded_channels)
        # pixel_unshuffle written in place: channel c·s² + di·s + dj ← HR pixel (s·i + di, s·j + dj)
        buf[..., :n].view(b, h, w, 3, s, s).copy_(x.reshape(b, 3, h, s, w, s).permute(0, 2, 4, 1, 3, 5))
        buf[..., n:2 * n].view(b, h, w, 3, s, s).copy_(g.reshape(b, 3, h, s, w, s).permute(0, 2, 4, 1, 3, 5))
        buf[..., 2 * n:2 * n + 3].copy_(y.permute(0, 2, 3, 1))
        buf[..., 2 * n + 3:c].copy_(aux.permute(0, 2, 3, 1))
        if prox.padded_channels > c:
            buf[..., c:].zero_()
        # only V[0:3s²] (→ X) and V[6s²+3:C] (→ A_X) are used: the last conv computes only those
        v = prox.forward_kept(buf.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)     # NHWC view
        x_new = v[..., :n].reshape(b, h, w, 3, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, hh, ww)
        return x_new, v[..., n:].permute(0, 3, 1, 2)


def prox_nets(model: KXNet) -> Iterable[tuple[nn.Module, str]]:
    """(stage module, attribute) of every prox net of ``model``: K-nets then X-nets."""
    for stage in model.K_stage:
        yield stage, "K_ProNet"
    for stage in model.X_stage:
        yield stage, "X_ProNet"


class OptimizedKXNet(nn.Module):
    """What :func:`optimize` returns: a wrapper around a KXNet converted for inference (fused
    prox nets, fast X-stages) that runs its forward under inference mode — and, where asked,
    under CUDA autocast, :func:`torch.compile` or CUDA graphs. ``net`` is the converted KXNet
    (its forward is KXNet's own, so non-blind and per-stage kernels work); it cannot train."""

    def __init__(self, net: KXNet, autocast: torch.dtype | None = None, compile: bool = False,
                 cuda_graphs: bool = False):
        super().__init__()
        self.net = net
        self._autocast_dtype = autocast
        self._compiled = torch.compile(net.forward, dynamic=False) if compile else None
        self._graphs: dict | None = {} if cuda_graphs else None

    @property
    def config(self):
        return self.net.config

    @property
    def scale(self) -> int:
        return self.net.config.scale

    def forward(self, y: torch.Tensor, kernel=None):
        if self._graphs is not None and kernel is None and y.is_cuda:
            return self._graph_forward(y)
        return self._run(y, kernel)

    def _run(self, y, kernel=None):
        fn = self._compiled if self._compiled is not None else self.net
        with torch.inference_mode():
            if self._autocast_dtype is not None and y.is_cuda:
                with torch.autocast("cuda", dtype=self._autocast_dtype):
                    out = fn(y, kernel)
                return out._replace(sr=out.sr.float(), kernel=out.kernel.float())
            return fn(y, kernel)

    def _graph_forward(self, y: torch.Tensor):
        """Replay a CUDA graph captured for this input shape (blind mode only)."""
        key = (tuple(y.shape), y.dtype, y.device)
        entry = self._graphs.get(key)
        if entry is None:
            static_in = y.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up outside the graph (allocator, cuDNN autotune)
                    self._run(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._run(static_in)
            entry = self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = entry
        static_in.copy_(y)
        graph.replay()
        return type(static_out)(static_out.sr.clone(), static_out.kernel.clone(),
                                [t.clone() for t in static_out.stage_images],
                                [t.clone() for t in static_out.stage_kernels])

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("an optimize()d KXNet is inference-only; train the original model")
        return super().train(False)


def optimize(model: KXNet, channels_last: bool = True, pad_channels: int | None | str = None,
             compile: bool = False, fuse: bool | None = None, prepack: bool = True,
             autocast: torch.dtype | None = None, cuda_graphs: bool = False, fast_stages: bool = True,
             inplace: bool = False) -> OptimizedKXNet:
    """An inference-optimised copy of ``model`` with the same outputs (float tolerance).

    ``fuse`` (default: on for float32 CPU models when oneDNN is available) runs the prox nets
    as fused oneDNN convolutions with pre-packed weights; otherwise they use ``F.conv2d``.
    ``channels_last`` runs them in NHWC. ``pad_channels`` (None, 8, 16 or ``"auto"`` = 8 on
    CUDA, none on CPU) zero-pads their channel count. ``compile`` wraps the forward in
    :func:`torch.compile`. On CUDA only: ``autocast`` (``torch.bfloat16``/``torch.float16``)
    runs under autocast — outputs then differ beyond float32 tolerance — and ``cuda_graphs``
    captures one CUDA graph per input shape for blind calls. ``fast_stages`` replaces the
    X-stages by ones that compute ``Dᵀ`` by output phases (with the normaliser as one extra
    channel) and assemble the prox input straight into its NHWC buffer. ``inplace`` converts ``model``
    itself instead of a deep copy (saves memory; ``model`` is then inference-only too).
    """
    if not isinstance(model, KXNet):
        raise TypeError(f"optimize takes a KXNet, got {type(model).__name__}")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    if pad_channels == "auto":
        pad_channels = 8 if device.type == "cuda" else None
    if fuse is None:
        fuse = device.type == "cpu" and dtype == torch.float32 and mkldnn_fusion_available()
    if (autocast is not None or cuda_graphs) and device.type != "cuda":
        warnings.warn("autocast and CUDA graphs apply to CUDA models only; ignored", stacklevel=2)
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    backend = "mkldnn" if fuse else "conv"
    s, c = model.config.scale, model.config.image_channels
    for stage, name in list(prox_nets(model)):
        kept = [(0, 3 * s * s), (6 * s * s + 3, c)] if (fast_stages and name == "X_ProNet") else None
        fused = FusedProxNet(getattr(stage, name), backend=backend, pad_channels=pad_channels,
                             channels_last=channels_last, prepack=prepack, kept_outputs=kept)
        setattr(stage, name, fused.to(device))
    if fast_stages:
        model.X_stage = nn.ModuleList(_FastImageStage(stage.scale, stage.mode, stage.X_ProNet) for stage in model.X_stage)
    for p in model.parameters():
        p.requires_grad_(False)
    on_cuda = device.type == "cuda"
    return OptimizedKXNet(model, autocast=autocast if on_cuda else None, compile=compile,
                          cuda_graphs=cuda_graphs and on_cuda)
