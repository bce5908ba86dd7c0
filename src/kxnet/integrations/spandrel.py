"""kxnet's models in spandrel, the model loader of ComfyUI and chaiNNer (docs/integrations.md).

    import spandrel
    from kxnet.integrations.spandrel import install

    install()                                # once per process; calling it again changes nothing
    descriptor = spandrel.ModelLoader().load_from_file("kxnet_x4_setting2.safetensors")
    sr = descriptor(lr)                      # 1×3×h×w in [0, 1] → 1×3×4h×4w in [0, 1]
    descriptor.model.last_kernel             # the blind kernel estimate of that call: 1×21×21

spandrel knows a model by its state dict's keys alone. Each kxnet method that super-resolves
from the image alone becomes one spandrel :class:`~spandrel.Architecture` (id ``kxnet.<name>``):
its ``detect`` is kxnet's own recognition (:func:`kxnet.models.detect_architecture`, which knows
our files and the authors' ``.pth`` layouts) and its ``load`` is kxnet's loader (hyper-parameters
from tensor shapes, int8 and fp16 files restored to float32, every tensor checked). They are
added after spandrel's own architectures, so a file any of those detects loads as before.

What spandrel does not pass on: our safetensors metadata (spandrel reads the tensors only). The
config is read from the shapes, as for an authors' file; at ×4 the blur setting is not in the
shapes and setting 2 is assumed (for a KXNet it only names the unused initial bank).

Not installed: KENet alone (a kernel estimator: its image is bicubic), USRNet alone (it needs the
kernel as an input) and bicubic (no weights), as their descriptors say (``not_upscaler``, ``blind``).
Their files stay unsupported, as without install().
"""

from __future__ import annotations

import torch
import torch.nn as nn

try:
    import spandrel
    from spandrel import (ArchRegistry, ArchSupport, Architecture, ImageModelDescriptor, ModelTiling,
                          SizeRequirements, StateDict)
except ImportError as e:  # spandrel missing, or spandrel 0.4 without an importable torchvision
    raise ImportError(f"kxnet.integrations.spandrel needs spandrel ({e}): pip install --no-deps "
                      "\"spandrel==0.4.2\", then kxnet's \"spandrel\" extra (pip install \".[spandrel]\" in "
                      "a checkout); spandrel 0.4 also imports torchvision (docs/integrations.md)") from e

from ..models import KENet, architectures, detect_architecture
from ..models import Architecture as KxArchitecture
from ..models.loading import ModelLoadError, _dequantize_int8, _infer, _load_state

__all__ = ["BlindUpscaler", "KXNetSpandrelArch", "install", "supports"]

# What the loaded model is said to be when there is no file name to say it
_SOURCE = "state dict given to spandrel"


def _reduced_precision(arch: KxArchitecture, net: nn.Module) -> bool:
    """Whether ``net`` runs cast to float16 and to bfloat16 (spandrel's ``supports_half`` and
    ``supports_bfloat16``): its descriptor's ``half_precision``, as measured on the CPU
    (tests/test_spandrel_hub.py): KXNet's and DAN's convolutions do, within 0.02 of float32 on
    the shipped KXNets; a KENet's K⁰ (its softmax kept in float32) does not enter a
    half-precision K-net; DCLS and USRNet work in the Fourier domain, which torch's FFT does not
    compute in half precision on the CPU (nor cuFFT in bfloat16)."""
    return bool(arch.half_precision(net.config))


def _minimum_side(arch: KxArchitecture, net: nn.Module) -> int:
    """The smallest LR side the model is given: what kxnet's own Upscaler pads smaller images
    to (``min_input_side``), and no less than the network needs — a KENet's three poolings
    (``KENet.MIN_SIDE``), and s·side > p // 2 for p×p kernels at ×s."""
    side = arch.min_input_side
    c = net.config
    if getattr(c, "kernel_size", None):
        side = max(side, c.kernel_size // 2 // c.scale + 1)
    if any(isinstance(m, KENet) for m in net.modules()):
        side = max(side, KENet.MIN_SIDE)
    return side


class BlindUpscaler(nn.Module):
    """A kxnet model as spandrel's image models are: ``forward(x)`` takes B×3×h×w in [0, 1] and
    returns B×3×sh×sw clamped to [0, 1].

    ``last_kernel`` is the side channel for the blind estimate: after each call, the B×p×p HR
    blur kernel the model estimated (each summing to 1), or None for a method that estimates
    no HR kernel (DCLS: its estimate is an LR-space kernel). ``net`` is the kxnet model itself
    (its ``config``, its full :class:`~kxnet.models.SROutput`).
    """

    def __init__(self, net: nn.Module, estimates_kernel: bool):
        super().__init__()
        self.net = net
        self.estimates_kernel = estimates_kernel
        self.last_kernel: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        self.last_kernel = out.kernel.detach() if self.estimates_kernel and out.kernel is not None else None
        return out.sr.clamp(0.0, 1.0)


class KXNetSpandrelArch(Architecture[BlindUpscaler]):
    """One kxnet method as a spandrel architecture: kxnet's detection and kxnet's loader."""

    def __init__(self, arch: KxArchitecture):
        self.kxnet_architecture = arch
        super().__init__(id=f"kxnet.{arch.name}", name=arch.label or arch.name, detect=self._detect)

    def _detect(self, state_dict: StateDict) -> bool:
        # the architecture kxnet's loader would pick for these keys (highest detect_priority first)
        if not all(isinstance(k, str) for k in state_dict):
            return False
        return detect_architecture(state_dict) is self.kxnet_architecture

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[BlindUpscaler]:
        not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
        if not_tensors:
            raise ModelLoadError(f"{_SOURCE}: entries that are not tensors: {', '.join(not_tensors[:3])}")
        state = _dequantize_int8(dict(state_dict), _SOURCE)
        arch, config = _infer(state, _SOURCE)
        if arch is not self.kxnet_architecture:   # detect() said otherwise: a bug, not a file problem
            raise ModelLoadError(f"{_SOURCE}: a {arch.name} state dict given to {self.id}")
        net = arch.model_class(config)
        _load_state(net, arch, state, _SOURCE)
        model = BlindUpscaler(net.eval(), arch.estimates_kernel)
        half = _reduced_precision(arch, net)
        return ImageModelDescriptor(
            model,
            model.state_dict(),   # spandrel loads it into the model again: the checked, float32 tensors
            architecture=self,
            purpose="SR",
            tags=[self.name, *(t for t in arch.summary(config).split(", ") if t)],
            supports_half=half,
            supports_bfloat16=half,
            scale=config.scale,
            input_channels=3,
            output_channels=3,
            size_requirements=SizeRequirements(minimum=_minimum_side(arch, net), multiple_of=1),
            # A blind model estimates one kernel per image: each tile would get its own estimate
            # from less of the image, and neighbouring tiles' images could disagree. kxnet's own
            # Upscaler shares one estimate across tiles (kxnet.super_resolve); spandrel cannot.
            tiling=ModelTiling.DISCOURAGED,
        )


_ARCHES: dict[str, KXNetSpandrelArch] = {}


def supports() -> list[ArchSupport]:
    """One :class:`~spandrel.ArchSupport` per kxnet method that upscales from the image alone
    (the same objects on every call). No ``before``: they come after every architecture
    already in the registry."""
    for arch in architectures():
        if arch.blind and not arch.not_upscaler and arch.name not in _ARCHES:
            _ARCHES[arch.name] = KXNetSpandrelArch(arch)
    return [ArchSupport.from_architecture(a) for a in _ARCHES.values()]


def install(registry: ArchRegistry | None = None) -> list[ArchSupport]:
    """Add kxnet's architectures to ``registry`` (default: ``spandrel.MAIN_REGISTRY``, the one
    ``spandrel.ModelLoader()`` uses); returns those added — none when they are there already,
    so a second call is harmless."""
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    return registry.add(*supports(), ignore_duplicates=True)
