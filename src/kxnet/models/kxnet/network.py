"""KXNet (Fu et al., ECCV 2022) as the official release computes it (docs/kxnet.md).

A pure architecture: no losses, optimisers or devices. Parameter names are the release's
(docs/kxnet.md, "Weights layout"), so its state dicts load with ``strict=True`` and no renaming. Every operator comes from
:mod:`kxnet.physics`; this module only wires them into the unrolled K-step / X-step stages.

Two modes share the weights and differ only in the X-step's back-projection:

* ``"official"`` — the release bit for bit: the zero-padded transposed convolution
  :func:`~kxnet.physics.back_project`, which is *not* the adjoint of the reflect-padded
  forward operator (Deviation 6). Use it with the published weights.
* ``"exact"`` — the true adjoint :func:`~kxnet.physics.blur_downsample_adjoint`, so the
  X-step sees the real gradient of the data term; the two differ within ``p//2 + 1`` HR
  pixels of the border.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...kernels import SCALES, auxiliary_bank, initial_kernel, kernel_size, setting_of_kernel_size
from ...physics import back_project, bicubic_upsample, blur_downsample, blur_downsample_adjoint, kernel_gradient
from ..output import SROutput
from ..config import MethodConfig
from ..architecture import count_indexed
from ..kenet.network import KENet, KENetConfig, infer_kenet_config

__all__ = [
    "MODES",
    "KXNetConfig",
    "KXNetOutput",
    "KXNet",
    "kernel_step_gradient",
    "image_step_gradient",
    "kxnet",
    "with_estimator",
    "with_restorer",
    "LRRestorer",
]

# The adjoint the X-step back-projects the residual with, per mode; both take (E, K, s, HR size).
_ADJOINTS = {"official": back_project, "exact": blur_downsample_adjoint}
MODES = tuple(_ADJOINTS)

# The release's constants (docs/kxnet.md); every other formulation of the network imports these.
NORMALISER_EPS = 1e-10      # release: G / (Dᵀ1 + 1e−10)
PROJECTION_EPS = 1e-5       # release: ReLU(K + 1e−5) / Σ
GAMMA_DIVISOR = 10          # release: K − γ/10 · G_K
RESIDUAL_SCALE = 0.1        # prox nets: z + 0.1·RB(z)


# The KENet fields a KXNet's K⁰ estimator may set; scale, setting and kernel size are the KXNet's.
_ESTIMATOR_FIELDS = ("channels", "fc")
_ESTIMATOR = "K_estimator"
# The fields of the LR restorer (an extension: docs/photo.md, "Restoring the LR first").
_RESTORER_FIELDS = ("channels", "blocks")
_RESTORER = "lr_restorer"


def _bank_scales(setting: int) -> dict[int, int]:
    """Kernel size → a scale whose auxiliary bank has that size (the bank depends on p only)."""
    return {kernel_size(setting, s): s for s in SCALES}


@dataclass
class KXNetConfig(MethodConfig):
    """Everything that shapes a KXNet; JSON-serialisable via :meth:`to_dict`.

    ``kernel_size`` defaults to the setting's (docs/protocol.md, "Kernels"). Another size is accepted when the
    setting has an auxiliary bank of that size at some scale (setting 2: 11, 15, 21), because
    the bank formulas depend on the size only. ``aux_k_channels`` other than 24 (the bank's
    length) is an extension: the channels cycle through the bank.

    ``estimator`` is an extension too: ``None`` (the release) starts every image from the
    fixed K⁰; a dict of :class:`~kxnet.models.kenet.KENetConfig` fields (``channels``, ``fc``)
    adds a KENet that reads the LR image and gives K⁰ per image, for the scales where the
    K-steps' data term alone does not find the kernel (×4: docs/history/study.md).

    ``restorer``, another extension: ``None`` (the release), or ``{"channels": C, "blocks": N}``
    for an :class:`LRRestorer` that cleans the LR image (JPEG blocks, noise) before the first
    stage sees it — every stage then works on the restored image.
    """

    stages: int = 19
    aux_x_channels: int = 32
    aux_k_channels: int = 24
    mode: str = "official"
    estimator: dict | None = None
    restorer: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        sizes = _bank_scales(self.setting)
        if self.kernel_size not in sizes:
            raise ValueError(f"setting {self.setting} has auxiliary banks of sizes {sorted(sizes)}, "
                             f"not {self.kernel_size}")
        self.require_positive("stages", "aux_x_channels", "aux_k_channels")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.estimator is not None:
            full = self.estimator_config().to_dict()
            self.estimator = {k: full[k] for k in _ESTIMATOR_FIELDS}
        if self.restorer is not None:
            r = self.restorer
            if not isinstance(r, dict) or set(r) != set(_RESTORER_FIELDS) or any(
                    not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in r.values()) or r["channels"] < 1:
                raise ValueError(f"restorer must be None or {{channels: C ≥ 1, blocks: N ≥ 0}}, got {r!r}")
            self.restorer = {k: r[k] for k in _RESTORER_FIELDS}

    def to_dict(self) -> dict:
        # the release's model (no extensions) keeps the exact config of files written before
        # the fields existed, so their metadata and manifest entries stay as they were
        d = super().to_dict()
        for extension in ("estimator", "restorer"):
            if d[extension] is None:
                del d[extension]
        return d

    def estimator_config(self):
        """The K⁰ estimator's :class:`~kxnet.models.kenet.KENetConfig` (its kernels are this
        model's size), or None."""
        if self.estimator is None:
            return None
        if not isinstance(self.estimator, dict) or set(self.estimator) - set(_ESTIMATOR_FIELDS):
            raise ValueError(f"estimator must be None or a dict of channels and fc, got {self.estimator!r}")
        return KENetConfig(scale=self.scale, setting=self.setting, kernel_size=self.kernel_size, **self.estimator)

    @property
    def image_channels(self) -> int:
        """C_x: PU(X) and PU(Ĝ) (3s² each), Y (3) and the auxiliary channels (docs/kxnet.md)."""
        return 6 * self.scale ** 2 + 3 + self.aux_x_channels

    @property
    def kernel_channels(self) -> int:
        """The kernel three times plus its auxiliary channels (docs/kxnet.md)."""
        return 3 + self.aux_k_channels


# The release returns [srs, kernels]; every method here returns the shared SROutput.
KXNetOutput = SROutput


def kernel_step_gradient(x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor, scale: int) -> torch.Tensor:
    """The K-step's data gradient (docs/kxnet.md, K-step 1–2): ∇_K ½‖D_K X − Y‖² divided by 3hw.

    The release's 1/(3hw) makes the step size independent of the image size.
    """
    residual = blur_downsample(x, kernel, scale) - y
    return (1.0 / residual[0].numel()) * kernel_gradient(x, residual, scale, kernel.shape[-1])


def image_step_gradient(x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor, scale: int,
                        mode: str = "official") -> torch.Tensor:
    """Ĝ = Dᵀ(D_K X − Y) / (Dᵀ1 + 1e−10) (docs/kxnet.md, X-step 1; paper Eq. 11), Dᵀ per ``mode``.

    Dividing by Dᵀ1 evens out how often strided kernels cover each HR pixel; in official
    mode Dᵀ1 is :func:`~kxnet.physics.back_project_normaliser`.
    """
    adjoint = _ADJOINTS[mode]
    hr_hw = (x.shape[-2], x.shape[-1])
    e = blur_downsample(x, kernel, scale) - y
    return adjoint(e, kernel, scale, hr_hw) / (adjoint(torch.ones_like(e), kernel, scale, hr_hw) + NORMALISER_EPS)


def _conv3x3(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size=3, padding=1)


class _ProxNet(nn.Module):
    """A learned proximal operator (docs/kxnet.md): four scaled residual blocks and a final skip from
    the *input*; C → C channels. Submodules are named ``{prefix}1…5`` as in the release."""

    def __init__(self, channels: int, prefix: str):
        super().__init__()
        self._names = [f"{prefix}{i}" for i in range(1, 6)]
        for name in self._names[:-1]:
            self.add_module(name, nn.Sequential(_conv3x3(channels), nn.ReLU(inplace=True), _conv3x3(channels)))
        self.add_module(self._names[-1], nn.Sequential(_conv3x3(channels)))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        z = u
        for name in self._names[:-1]:
            z = F.relu(z + RESIDUAL_SCALE * self._modules[name](z))
        return F.relu(u + RESIDUAL_SCALE * self._modules[self._names[-1]](z))


class _KernelStage(nn.Module):
    """K-net of one stage (docs/kxnet.md): gradient step, prox, projection onto {K > 0, ΣK = 1}.

    ``step_gradient`` is the data-gradient function; the reference model swaps in the paper's
    patch-matrix form of the same formula (:mod:`kxnet.models.reference`).
    """

    step_gradient = staticmethod(kernel_step_gradient)

    def __init__(self, scale: int, prox: nn.Module):
        super().__init__()
        self.scale = scale
        self.K_ProNet = prox

    def forward(self, x, y, kernel, aux, gamma):
        k = kernel - gamma / GAMMA_DIVISOR * self.step_gradient(x, y, kernel, self.scale)
        z = self.K_ProNet(torch.cat([k.unsqueeze(1).expand(-1, 3, -1, -1), aux], dim=1))
        k = F.relu(z[:, :3].mean(dim=1) + PROJECTION_EPS)
        return k / k.sum(dim=(-2, -1), keepdim=True), z[:, 3:]


class _ImageStage(nn.Module):
    """X-net of one stage (docs/kxnet.md): the prox net sees X and Ĝ space-to-depth at LR resolution
    (there is no explicit gradient step; ``eta_stage`` is unused, as in the release).
    ``step_gradient`` computes Ĝ; the reference and fast models swap in other forms of it."""

    step_gradient = staticmethod(image_step_gradient)

    def __init__(self, scale: int, mode: str, prox: nn.Module):
        super().__init__()
        self.scale = scale
        self.mode = mode
        self.X_ProNet = prox

    def forward(self, x, y, kernel, aux):
        s = self.scale
        g = self.step_gradient(x, y, kernel, s, self.mode)
        v = self.X_ProNet(torch.cat([F.pixel_unshuffle(x, s), F.pixel_unshuffle(g, s), y, aux], dim=1))
        # channels 3s² … 6s²+2 (where Ĝ and Y went in) are dropped, as in the release
        return F.pixel_shuffle(v[:, : 3 * s * s], s), v[:, 6 * s * s + 3:]


class LRRestorer(nn.Module):
    """``Y + R(Y)``: a residual network at LR resolution in front of the unfolding, for photos
    whose LR image carries more than the model's degradation (JPEG blocks, noise). Every stage's
    data term pulls the image estimate towards reproducing Y, blocks and noise included, however
    well the prox nets clean it; a restored Y moves what the data term pulls towards. ``R``'s
    last convolution starts at zero, so a model given a new restorer computes exactly what it
    computed without one (:func:`with_restorer`)."""

    def __init__(self, channels: int, blocks: int):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.ModuleList(nn.Sequential(_conv3x3(channels), nn.ReLU(inplace=True), _conv3x3(channels))
                                  for _ in range(blocks))
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.head(y))
        for block in self.body:
            z = F.relu(z + block(z))
        return y + self.tail(z)


class KXNet(nn.Module):
    """The unrolled kernel/image estimation network; ``forward(Y)`` → :class:`KXNetOutput`."""

    def __init__(self, config: KXNetConfig):
        super().__init__()
        self.config = config
        c = config
        # Registration order and names follow the release so state dicts list alike.
        self.X_stage = nn.ModuleList(_ImageStage(c.scale, c.mode, _ProxNet(c.image_channels, "resx"))
                                     for _ in range(c.stages))
        self.K_stage = nn.ModuleList(_KernelStage(c.scale, _ProxNet(c.kernel_channels, "resk"))
                                     for _ in range(c.stages))
        laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.AV_X_ker = nn.Parameter(laplacian.repeat(c.aux_x_channels, 3, 1, 1))
        bank = auxiliary_bank(c.setting, _bank_scales(c.setting)[c.kernel_size])
        bank = bank[torch.arange(c.aux_k_channels) % bank.shape[0]]
        # Frozen copy of the initial bank: never used, kept because the release saves it (docs/kxnet.md)
        # and so that parameter counts and state-dict keys match the published model.
        self.kernel_map0 = nn.Parameter(bank.clone(), requires_grad=False)
        self.kernel_map = nn.Parameter(bank.clone())
        self.gamma_stage = nn.Parameter(torch.ones(c.stages, 1))
        self.eta_stage = nn.Parameter(torch.ones(c.stages, 1))  # unused by the release's forward
        # K⁰ is a function of p only; a non-persistent buffer follows .to()/.double() and
        # stays out of the state dict (the release builds it per call).
        self.register_buffer("initial_kernel", initial_kernel(c.kernel_size), persistent=False)
        # registered last, so the release's keys keep their order in the state dict
        self.K_estimator = None if c.estimator is None else KENet(c.estimator_config())
        self.lr_restorer = None if c.restorer is None else LRRestorer(**c.restorer)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, y: torch.Tensor, kernel: torch.Tensor | None = None) -> KXNetOutput:
        """Super-resolve ``y`` (B×3×h×w, values in [0, 1]).

        ``kernel`` (B×p×p or p×p, any odd p) makes the model non-blind: the K-nets are skipped
        and this kernel is used, as given, by every stage's X-step (and reported as every
        stage's kernel). The release has no such mode (docs/kxnet.md, "Modes"); replacing
        every K^t, not only the last, is what "the kernel is known" means for the unrolled
        X-steps, and it saves the K-nets' cost.

        ``kernel`` may also be a list or tuple of T kernels (one per stage, each B×p×p or
        p×p): stage t's X-step then uses the t-th. Passing a blind run's ``stage_kernels``
        reproduces that run exactly — how tiled inference shares one kernel estimate
        across tiles (:mod:`kxnet.inference.upscaler`).
        """
        c = self.config
        if y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(f"expected a B×3×h×w image batch, got shape {tuple(y.shape)}")
        b, _, h, w = y.shape
        per_stage = None
        if isinstance(kernel, (list, tuple)):
            if len(kernel) != c.stages:
                raise ValueError(f"expected {c.stages} per-stage kernels, got {len(kernel)}")
            per_stage = [self._as_kernel_batch(k, y) for k in kernel]
        p = c.kernel_size if kernel is None else (per_stage or [kernel])[0].shape[-1]
        if c.scale * min(h, w) <= p // 2:
            raise ValueError(f"LR image {h}×{w} is too small for {p}×{p} kernels at ×{c.scale}")
        if self.lr_restorer is not None:
            y = self.lr_restorer(y)

        x = bicubic_upsample(y, c.scale)
        aux_x = F.conv2d(y, self.AV_X_ker, padding=1)
        if kernel is None:
            k = self.initial_kernel.expand(b, -1, -1) if self.K_estimator is None else self.K_estimator.estimate(y)
            aux_k = self.kernel_map.unsqueeze(0).expand(b, -1, -1, -1)
        elif per_stage is None:
            k = self._as_kernel_batch(kernel, y)

        images, kernels = [], []
        for t in range(c.stages):
            if kernel is None:
                k, aux_k = self.K_stage[t](x, y, k, aux_k, self.gamma_stage[t])
            elif per_stage is not None:
                k = per_stage[t]
            x, aux_x = self.X_stage[t](x, y, k, aux_x)
            images.append(x)
            kernels.append(k)
        return KXNetOutput(x, k, images, kernels)

    @staticmethod
    def _as_kernel_batch(kernel: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = kernel.to(device=y.device, dtype=y.dtype)
        return k.expand(y.shape[0], -1, -1) if k.dim() == 2 else k


def _rebuilt(model: KXNet, **changes) -> KXNet:
    """A fresh KXNet of ``model``'s config with ``changes``, on its device and dtype (weights
    freshly initialised: the caller copies what it keeps)."""
    like = next(model.parameters())
    return KXNet(KXNetConfig(**{**model.config.to_dict(), **changes})).to(device=like.device, dtype=like.dtype)


def grow_stages(model: KXNet, stages: int) -> KXNet:
    """A KXNet of ``stages`` stages whose first stages are ``model``'s and whose extra stages are
    copies of its last one: the stages are iterations of one solver, so a trained last
    iteration is a far better start for another iteration than random weights."""
    if not isinstance(model, KXNet):
        raise ValueError(f"growing stages needs KXNet weights, got a {type(model).__name__}")
    have = model.config.stages
    if stages < have:
        raise ValueError(f"cannot grow a {have}-stage KXNet to {stages} stages")
    grown = _rebuilt(model, stages=stages)
    state = model.state_dict()
    for key, t in grown.state_dict().items():
        if key in ("gamma_stage", "eta_stage"):
            t.copy_(torch.cat([state[key], state[key][-1:].expand(stages - have, -1)]))
            continue
        parts = key.split(".")
        if parts[0] in ("X_stage", "K_stage"):
            parts[1] = str(min(int(parts[1]), have - 1))
        t.copy_(state[".".join(parts)])
    return grown.train(model.training)


def with_estimator(model: KXNet, estimator: nn.Module, pass_kernel: bool = False) -> KXNet:
    """``model`` with ``estimator`` (a separately trained KENet of the same scale, setting and
    kernel size) giving K⁰; the trained stages are kept as they are.

    ``pass_kernel`` makes every K-step hand on the kernel it is given (its data step γ and its
    prox net's last convolution zeroed, so the prox is the identity up to the projection): K-nets
    trained from the fixed K⁰ can learn to map any K⁰ to one kernel (docs/history/study.md), which would
    throw the estimate away before any X-step sees it. Training then starts from the estimate."""
    if not isinstance(model, KXNet) or not isinstance(estimator, KENet):
        raise ValueError(f"needs KXNet and KENet weights, got a {type(model).__name__} and a "
                         f"{type(estimator).__name__}")
    c, e = model.config, estimator.config
    if (c.scale, c.setting, c.kernel_size) != (e.scale, e.setting, e.kernel_size):
        raise ValueError(f"KXNet is ×{c.scale} setting {c.setting} with {c.kernel_size}×{c.kernel_size} kernels, "
                         f"KENet ×{e.scale} setting {e.setting} with {e.kernel_size}×{e.kernel_size}")
    joined = _rebuilt(model, estimator={k: getattr(e, k) for k in _ESTIMATOR_FIELDS})
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(_ESTIMATOR + ".")}
    state.update({f"{_ESTIMATOR}.{k}": v for k, v in estimator.state_dict().items()})
    joined.load_state_dict(state)
    if pass_kernel:
        with torch.no_grad():
            joined.gamma_stage.zero_()
            for stage in joined.K_stage:
                for p in stage.K_ProNet.resk5.parameters():
                    p.zero_()
    return joined.train(model.training)


def with_restorer(model: KXNet, channels: int, blocks: int) -> KXNet:
    """``model`` with a new :class:`LRRestorer` in front, which starts as the identity: the
    result computes exactly what ``model`` did until the restorer is trained."""
    if not isinstance(model, KXNet):
        raise ValueError(f"an LR restorer goes in front of a KXNet, got a {type(model).__name__}")
    if model.config.restorer is not None:
        raise ValueError("the model has an LR restorer already")
    joined = _rebuilt(model, restorer={"channels": channels, "blocks": blocks})
    state = joined.state_dict()
    state.update(model.state_dict())
    joined.load_state_dict(state)
    return joined.train(model.training)


def kxnet(scale: int = 4, setting: int = 2, stages: int = 19, mode: str = "official", **config) -> KXNet:
    """KXNet at any scale and setting; ``config`` takes the other :class:`KXNetConfig` fields."""
    return KXNet(KXNetConfig(scale=scale, setting=setting, stages=stages, mode=mode, **config))



# ----------------------------------------------------------------- the authors' layout (docs/kxnet.md, "Weights layout")

_FIRST_X_CONV = "X_stage.0.X_ProNet.resx1.0.weight"


def _is_kxnet_state(state: dict) -> bool:
    return "kernel_map" in state or "AV_X_ker" in state or any(k.startswith("X_stage.") for k in state)


def _infer_kxnet_config(state: dict) -> KXNetConfig:
    """Hyper-parameters from shapes (docs/kxnet.md, "Weights layout").

    The setting is not stored: at ×2/×3 it follows from p (21 ⇒ setting 1); at ×4 both
    settings use 21×21 kernels and identical shapes, so setting 2 is assumed. The setting
    only chooses the initial bank, which the checkpoint's ``kernel_map`` overrides.
    """
    missing = [k for k in ("kernel_map", "AV_X_ker", _FIRST_X_CONV) if k not in state]
    if missing:
        raise ValueError(f"not a KXNet state dict (missing {', '.join(missing[:3])})")
    p = state["kernel_map"].shape[-1]
    aux_x = state["AV_X_ker"].shape[0]
    stages = state["gamma_stage"].shape[0] if "gamma_stage" in state else count_indexed(state, "X_stage")
    c_x = state[_FIRST_X_CONV].shape[0]
    s2 = (c_x - 3 - aux_x) / 6
    scale = round(math.sqrt(s2)) if s2 > 0 else 0
    if scale * scale != s2:
        raise ValueError(f"X-net width {c_x} matches no scale (expected 6s²+{3 + aux_x})")
    estimator = None
    if any(k.startswith(_ESTIMATOR + ".") for k in state):
        e = infer_kenet_config(state, prefix=_ESTIMATOR + ".")
        if e.kernel_size != p:
            raise ValueError(f"the K⁰ estimator gives {e.kernel_size}×{e.kernel_size} kernels, the K-nets {p}×{p}")
        estimator = {k: getattr(e, k) for k in _ESTIMATOR_FIELDS}
    restorer = None
    if f"{_RESTORER}.head.weight" in state:
        restorer = {"channels": state[f"{_RESTORER}.head.weight"].shape[0],
                    "blocks": count_indexed(state, f"{_RESTORER}.body")}
    try:
        setting = setting_of_kernel_size(scale, p)
        return KXNetConfig(scale=scale, setting=setting, kernel_size=p, stages=stages,
                           aux_x_channels=aux_x, aux_k_channels=state["kernel_map"].shape[0], estimator=estimator,
                           restorer=restorer)
    except ValueError as e:
        raise ValueError(f"unsupported KXNet shape ({e})") from e


@dataclass
class KXNetLoss:
    """The weights of Eq. 12, Σ_t α_t·L1(X^t, X) + β_t·L1(K^t, K): α_t is ``image_weight``
    for t < T and ``image_weight_last`` at T, β_t likewise. ``monotone_weight`` μ > 0 (an
    extension; 0 is the paper's loss) adds μ·Σ_t relu(L1(X^t) − L1(X^{t−1})) per sample with
    stage t−1 held fixed, charging a stage for every image it leaves worse (docs/training.md)."""

    image_weight: float = 0.1
    image_weight_last: float = 1.0
    kernel_weight: float = 0.1
    kernel_weight_last: float = 1.0
    monotone_weight: float = 0.0
