"""Reading and writing the weights of every registered architecture.

Our format is a safetensors file whose metadata carries ``format = "kxnet"``, the
architecture's name (``arch``; files written before there was more than one lack it and are
KXNets) and its config as JSON. The authors' ``.pth`` state dicts load too: the architecture
is recognised from the keys and its hyper-parameters inferred from tensor shapes, not from the
file name (spandrel's way), so a file of no known architecture — or of the wrong scale — fails
with one clear :class:`ModelLoadError` instead of producing garbage later.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..io import atomic_path, file_sha256
from .registry import Architecture, architecture, architecture_of, architectures, detect_architecture
from .zoo import read_manifest

__all__ = ["ModelLoadError", "STORAGES", "save_model", "quantize_int8", "load_model", "load_weights_into", "verified_file",
           "convert_checkpoint", "resolve_weights", "locate_weights", "weights_fingerprint"]

FORMAT = "kxnet"
_CHECKPOINT_SUFFIXES = {".pth", ".pt", ".ckpt", ".safetensors"}
# Keys a training framework may nest the state dict under (the release itself never nests).
_NESTING_KEYS = ("state_dict", "params", "model")
# An int8-stored tensor ``k`` has its per-output-channel scales beside it as ``k + INT8_SCALE``.
INT8_SCALE = ".int8_scale"
# Only convolution weights this large go to int8: they are the file, while the small tensors
# (the initial kernel K⁰, the kernel basis, step sizes) cost ×2 0.12 dB on Set5 when quantised.
INT8_MIN_NUMEL = 4096
# How a weights file stores its floating tensors (the file's ``storage`` metadata says which).
STORAGES = ("fp32", "fp16", "int8")


class ModelLoadError(ValueError):
    """A file or name that cannot be turned into a model; the message names it and says why."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


# ---------------------------------------------------------------------------------- saving

def save_model(model: nn.Module, path: str | os.PathLike, storage: str = "fp32",
               extra_metadata: dict | None = None) -> Path:
    """Write ``model`` as a safetensors file, atomically (a crash never leaves half a file).

    ``storage`` is one of :data:`STORAGES`: ``"fp16"`` halves the file by storing floating
    tensors as float16; ``"int8"`` quarters it (:func:`quantize_int8`: every convolution weight
    of at least ``INT8_MIN_NUMEL`` values as int8 with a float32 scale per output channel, the
    rest float16). :func:`load_model` restores float32 from any. ``extra_metadata`` values that
    are not strings are stored as JSON.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    arch = architecture_of(model)  # TypeError for a model no loader could rebuild
    path = Path(path)
    int8, half = storage == "int8", storage != "fp32"
    tensors = {}
    for key, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if int8 and t.is_floating_point() and t.dim() == 4 and t.numel() >= INT8_MIN_NUMEL:
            tensors[key], tensors[key + INT8_SCALE] = quantize_int8(t)
            continue
        tensors[key] = (t.half() if half and t.is_floating_point() else t).contiguous()
    metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra_metadata or {}).items()}
    metadata.update(format=FORMAT, arch=arch.name, config=json.dumps(model.config.to_dict()),
                    storage=storage)

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scale)``: symmetric int8 per output channel, ``weight ≈ q * scale[:, None, …]``.

    Each channel's largest magnitude maps to ±127, so the rounding error is at most half a
    step, ``max|w| / 254``, of that channel; a channel of zeros keeps scale 1 (exactly zero).
    """
    flat = weight.detach().to(torch.float32).reshape(weight.shape[0], -1)
    amax = flat.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(weight.shape).contiguous(), scale


def _dequantize_int8(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, t in state.items():
        if key.endswith(INT8_SCALE):
            continue
        scale = state.get(key + INT8_SCALE)
        if scale is not None:
            if t.dtype != torch.int8 or scale.shape != (t.shape[0],):
                raise ModelLoadError(f"{path}: {key} is {t.dtype} {tuple(t.shape)} with scales "
                                     f"{tuple(scale.shape)}, not int8 with one scale per output channel")
            t = t.to(torch.float32) * scale.to(torch.float32).reshape(-1, *([1] * (t.dim() - 1)))
        out[key] = t
    orphans = [k for k in state if k.endswith(INT8_SCALE) and k[:-len(INT8_SCALE)] not in state]
    if orphans:
        raise ModelLoadError(f"{path}: int8 scales without their tensor: {_few(orphans)}")
    return out


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of the architecture, its config and every tensor's bytes: the
    same weights give the same fingerprint whatever file or name they came from (the benchmark's
    cache of cells and OpenVINO's cache of compiled graphs are keyed by it)."""
    h = hashlib.sha256(json.dumps([type(model).__name__, model.config.to_dict()], sort_keys=True).encode())
    for key, t in model.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------- reading

def resolve_weights(name: str) -> Path:
    """The file of a shipped weights entry (:mod:`~kxnet.models.zoo`), its SHA-256 checked so
    a corrupted install fails here."""
    entries = read_manifest()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none (no weights are installed)"
        raise ModelLoadError(f"unknown model name {name!r}; known: {known}")
    return verified_file(entries[name].path, entries[name].sha256, f"weights of {name!r} are")


def verified_file(path: Path, sha256: str, what: str) -> Path:
    """``path``, a file the manifest lists (``what``, e.g. "weights of 'x' are"), installed and
    with the manifest's SHA-256, so a corrupted install fails here."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: {what} listed in the manifest but not installed")
    digest = file_sha256(path)
    if digest != sha256:
        raise ModelLoadError(f"{path}: SHA-256 {digest} does not match the manifest's {sha256}")
    return path


def locate_weights(path_or_name: str | os.PathLike) -> tuple[Path, str | None]:
    """``(file, shipped name or None)`` for a weights file or a shipped name.

    An existing file wins; a string that is not a path and has no checkpoint suffix is looked
    up in the manifest (SHA-256 verified); anything else is a missing file.
    """
    path = Path(path_or_name)
    if path.is_file():
        return path, None
    if path.exists():
        raise ModelLoadError(f"{path}: not a file")
    looks_like_name = isinstance(path_or_name, str) and os.sep not in path_or_name \
        and path.suffix not in _CHECKPOINT_SUFFIXES
    if looks_like_name:
        return resolve_weights(path_or_name), path_or_name
    raise ModelLoadError(f"{path}: no such file")


def _read_safetensors(path: Path) -> tuple[dict, tuple[Architecture, object] | None]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ModelLoadError(f"{path}: unreadable safetensors file ({_one_line(e)})") from e
    if metadata.get("format") != FORMAT:
        return state, None  # e.g. a converted official state dict: infer like a .pth
    state = _dequantize_int8(state, path)
    try:
        arch = architecture(metadata.get("arch", "kxnet"))
    except ValueError as e:
        raise ModelLoadError(f"{path}: {e}") from e
    try:
        return state, (arch, arch.config_class.from_dict(json.loads(metadata["config"])))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{path}: invalid {arch.name} config in the metadata ({_one_line(e)})") from e


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    """The flat state dict inside a flat, nested or ``module.``-prefixed checkpoint."""
    for _ in range(4):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if not isinstance(obj, dict):
            raise ModelLoadError(f"{path}: holds a {type(obj).__name__}, not a state dict")
        key = next((k for k in _NESTING_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
            key = next(iter(obj))
        if key is None:
            raise ModelLoadError(f"{path}: not a state dict (keys: {_few(sorted(map(str, obj)))})")
        obj = obj[key]
    else:
        raise ModelLoadError(f"{path}: no state dict found in the nesting")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load surfaces corrupt input as many unrelated exception types
        raise ModelLoadError(f"{path}: not a model checkpoint ({_one_line(e)})") from e
    return _unwrap(obj, path)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], tuple[Architecture, object] | None]:
    """Dispatch on content: a safetensors file starts with an 8-byte header length and ``{``."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({_one_line(e)})") from e
    if not head:
        raise ModelLoadError(f"{path}: empty file")
    if head[8:9] == b"{":
        return _read_safetensors(path)
    return _read_torch(path), None


def _infer(state: dict[str, torch.Tensor], path: Path) -> tuple[Architecture, object]:
    """The architecture a state dict in the authors' layout belongs to, and its config."""
    arch = detect_architecture(state)
    if arch is None:
        known = ", ".join(a.name for a in architectures())
        raise ModelLoadError(f"{path}: not a state dict of any known architecture ({known}); "
                             f"keys: {_few(sorted(state))}")
    try:
        return arch, arch.infer_config(state)
    except ValueError as e:
        raise ModelLoadError(f"{path}: {e}") from e


def _load_state(model: nn.Module, arch: Architecture, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise ModelLoadError(f"{path}: unexpected tensors for a {arch.name} ({arch.summary(model.config)}): "
                             f"{_few(unknown)}")
    missing = sorted(set(expected) - set(state) - arch.optional_keys)
    if missing:
        raise ModelLoadError(f"{path}: missing tensors {_few(missing)}")
    for key, t in state.items():
        if t.shape != expected[key].shape or t.is_floating_point() != expected[key].is_floating_point():
            kind = "floating" if expected[key].is_floating_point() else str(expected[key].dtype)
            raise ModelLoadError(f"{path}: {key} is {t.dtype} {tuple(t.shape)}, "
                                 f"expected {kind} {tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=False)  # copies upcast float16 files to float32


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu",
               expected_scale: int | None = None) -> nn.Module:
    """A model in eval mode from our safetensors, an authors' ``.pth``, or a shipped name.

    ``expected_scale`` turns a checkpoint of another scale into an error rather than a
    model that would silently super-resolve by the wrong factor.
    """
    path, _ = locate_weights(path_or_name)
    state, found = _read(path)
    arch, config = found if found is not None else _infer(state, path)
    if expected_scale is not None and config.scale != expected_scale:
        raise ModelLoadError(f"{path}: a ×{config.scale} model, but ×{expected_scale} was asked for")
    model = arch.model_class(config)
    _load_state(model, arch, state, path)
    return model.to(device).eval()


def _growable() -> str:
    """The methods whose models grow (``Architecture.grow``), for messages."""
    return ", ".join(a.label or a.name for a in architectures() if a.grow is not None)


def load_weights_into(model: nn.Module, path_or_name: str | os.PathLike, grow: bool = False) -> nn.Module:
    """Copy the weights of a file (or shipped name) into ``model``, which keeps its own config.

    Fields that do not shape the weights (KXNet's mode, DAN's loops) may differ; anything else
    is a :class:`ModelLoadError` naming the fields that differ. ``grow`` lets a file of a
    shallower model of the same method fill a deeper one, by the method's ``grow`` hook (KXNet:
    the extra stages copies of its last, :func:`~kxnet.models.kxnet.grow_stages`)."""
    src = load_model(path_or_name)
    if grow:
        arch = architecture_of(model)
        if arch.grow is None:
            raise ModelLoadError(f"{path_or_name}: growing stages applies to {_growable()}, not to a "
                                 f"{type(model).__name__}")
        try:
            src = arch.grow(src, getattr(model.config, arch.depth))
        except ValueError as e:
            raise ModelLoadError(f"{path_or_name}: {e}") from None
    if type(src) is not type(model):
        raise ModelLoadError(f"{path_or_name}: weights of a {type(src).__name__}, the model is a {type(model).__name__}")
    ours, given = model.state_dict(), src.state_dict()
    if set(ours) != set(given) or any(ours[k].shape != given[k].shape for k in ours):
        mine, theirs = model.config.to_dict(), src.config.to_dict()
        diff = ", ".join(f"{k}={theirs.get(k)}" for k in mine if mine[k] != theirs.get(k))
        wanted = ", ".join(f"{k}={mine[k]}" for k in mine if mine[k] != theirs.get(k))
        raise ModelLoadError(f"{path_or_name}: weights have {diff or 'other shapes'}, the model has {wanted or '…'}")
    model.load_state_dict(given)
    return model


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, storage: str = "fp32",
                       stages: int | None = None, estimator: str | os.PathLike | None = None,
                       pass_kernel: bool = False, restorer: tuple[int, int] | None = None):
    """Rewrite any checkpoint :func:`load_model` reads in our format; returns its config.

    ``stages`` grows the model to that depth by its method's ``grow`` hook (KXNet: that many
    stages, the extra ones copies of its last, :func:`~kxnet.models.kxnet.grow_stages`);
    ``estimator`` (a KENet checkpoint) gives it K⁰ per image (:func:`~kxnet.models.kxnet.with_estimator`; ``pass_kernel`` makes its
    K-steps start by handing that K⁰ on); ``restorer`` (channels, blocks) puts an LR restorer in
    front that starts as the identity (:func:`~kxnet.models.kxnet.with_restorer`)."""
    from .kxnet import with_estimator, with_restorer

    model = load_model(src)
    try:
        if stages is not None:
            arch = architecture_of(model)
            if arch.grow is None:
                raise ValueError(f"growing stages needs {_growable()} weights, got a {type(model).__name__}")
            model = arch.grow(model, stages)
        if estimator is not None:
            model = with_estimator(model, load_model(estimator), pass_kernel=pass_kernel)
        if restorer is not None:
            model = with_restorer(model, *restorer)
    except ValueError as e:
        raise ValueError(f"{src}: {e}") from None
    save_model(model, dst, storage=storage, extra_metadata={"source": Path(src).name})
    return model.config
