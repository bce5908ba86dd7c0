"""Training checkpoints: full resumable state (``.state``) beside the weights (``.safetensors``).

A checkpoint of step ``n`` is ``checkpoints/step_{n:08d}.state`` — a ``torch.save`` of model,
optimiser, scheduler, gradient scaler, EMA, RNG states, best validation score and the resolved
config — and ``step_{n:08d}.safetensors`` with the weights alone (EMA weights when EMA is on)
in the model format :func:`kxnet.models.load_model` reads. Both are written atomically; the
``.state`` is written last, so its presence marks a complete checkpoint.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path

__all__ = [
    "STATE_FORMAT",
    "checkpoint_stem",
    "list_checkpoints",
    "latest_checkpoint",
    "save_state",
    "load_state",
    "prune_checkpoints",
    "rng_state",
    "set_rng_state",
    "export_weights",
]

STATE_FORMAT = "kxnet-train-state/1"
_STEM = re.compile(r"^step_(\d+)$")


def checkpoint_stem(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``ckpt_dir`` as ``(step, .state path)``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.glob("step_*.state"):
        m = _STEM.match(p.stem)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest ``.state`` of a run folder (or None)."""
    found = list_checkpoints(Path(run_dir) / "checkpoints")
    return found[-1][1] if found else None


def save_state(state: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_state(path: str | os.PathLike) -> dict:
    """Read a ``.state`` file (tensors and plain containers only: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt files surface as many exception types
        text = " ".join(str(e).split())[:160]
        raise ValueError(f"{path}: unreadable training checkpoint ({type(e).__name__}: {text})") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a kxnet training checkpoint")
    return state


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep_last: int) -> list[int]:
    """Delete all but the newest ``keep_last`` checkpoints; returns the deleted steps."""
    found = list_checkpoints(ckpt_dir)
    deleted = []
    for step, state_path in found[:max(0, len(found) - keep_last)]:
        state_path.unlink(missing_ok=True)
        state_path.with_suffix(".safetensors").unlink(missing_ok=True)
        deleted.append(step)
    return deleted


def rng_state() -> dict:
    """Every RNG a training step could touch (the data pipeline uses none of them)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def export_weights(state_path: str | os.PathLike, out: str | os.PathLike, storage: str = "fp32",
                   use_ema: bool = True) -> Path:
    """Write the weights of a ``.state`` checkpoint as a model file (EMA weights if present)."""
    from ..models import create_model, save_model
    from .config import config_from_dict

    state = load_state(state_path)
    m = config_from_dict(state["config"], str(state_path)).model
    weights = state["ema"]["module"] if use_ema and state.get("ema") else state["model"]
    model = create_model(m.name, **m.factory_kwargs())
    model.load_state_dict(weights)
    meta = {"step": state["step"], "recipe": state["config"].get("name"), "ema": bool(use_ema and state.get("ema"))}
    return save_model(model, out, storage=storage, extra_metadata=meta)
