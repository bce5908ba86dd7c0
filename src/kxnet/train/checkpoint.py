"""Training checkpoints: full resumable state (``.state``) beside the weights (``.safetensors``).

A checkpoint of step ``n`` is ``checkpoints/step_{n:08d}.state`` — a ``torch.save`` of the
trainer's own :meth:`~kxnet.train.Trainer.state_dict` (model, optimiser, gradient scaler, EMA,
RNG states, step, CPU time, best validation score and the resolved config), which
:meth:`~kxnet.train.Trainer.load_state_dict` takes back after :func:`check_resumable` — and ``step_{n:08d}.safetensors`` with the weights alone (EMA weights when EMA is on)
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
    "check_resumable",
    "checkpoint_stem",
    "export_weights",
    "latest_checkpoint",
    "list_checkpoints",
    "load_state",
    "model_from_state",
    "prune_checkpoints",
    "restore_rng",
    "resume_point",
    "rng_state",
    "save_checkpoint",
    "save_state",
    "weights_metadata",
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


def restore_rng(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def weights_metadata(step: int, recipe: str | None, ema: bool, **extra) -> dict:
    """What a weights file written by training says about where it comes from."""
    return {"step": step, "recipe": recipe, "ema": ema, **extra}


def save_checkpoint(trainer, ckpt_dir: str | os.PathLike, keep_last: int) -> Path:
    """``step_{n}.safetensors`` (the weights, :meth:`Trainer.export`) then ``step_{n}.state``
    (written last: its presence marks a complete checkpoint); older ones pruned."""
    stem = Path(ckpt_dir) / checkpoint_stem(trainer.step)
    stem.parent.mkdir(parents=True, exist_ok=True)
    trainer.export(stem.with_suffix(".safetensors"))
    path = save_state(trainer.state_dict(), stem.with_suffix(".state"))
    prune_checkpoints(stem.parent, keep_last)
    return path


def model_from_state(state: dict, use_ema: bool = True):
    """The model a ``.state`` checkpoint holds, as it was built (the checkpoint's own model
    config, not a recipe's), with its EMA weights if present and ``use_ema``."""
    from ..models import factory_architecture
    from .config import config_from_dict

    name = config_from_dict(state["config"], "checkpoint").model.name
    arch = factory_architecture(name)
    if "model_config" in state:
        model = arch.model_class(arch.config_class.from_dict(state["model_config"]))
    else:  # a checkpoint from before model configs were recorded: its recipe built it
        from .config import build_model

        model = build_model(config_from_dict(state["config"], "checkpoint"))
    model.load_state_dict(state["ema"]["module"] if use_ema and state.get("ema") else state["model"])
    return model


def export_weights(state_path: str | os.PathLike, out: str | os.PathLike, storage: str = "fp32",
                   use_ema: bool = True) -> Path:
    """Write the weights of a ``.state`` checkpoint as a model file (EMA weights if present)."""
    from ..models import save_model

    state = load_state(state_path)
    ema = bool(use_ema and state.get("ema"))
    meta = weights_metadata(state["step"], state["config"].get("name"), ema)
    return save_model(model_from_state(state, use_ema), out, storage=storage, extra_metadata=meta)


def check_resumable(state: dict, model, optimizer, cfg, where) -> None:
    """Refuse (ValueError, naming ``where``) a checkpoint ``state`` that the ``model`` and
    ``optimizer`` a recipe ``cfg`` built cannot continue: another model config, or parameters
    grouped differently (``train.lr_mult``). :meth:`Trainer.load_state_dict` asks first."""
    from .config import config_from_dict
    from .optim import param_group_names

    built = model.config.to_dict()
    trained = config_from_dict(state["config"], str(where)).model
    # checkpoints record the built model's config; older ones only the recipe's model section
    if state.get("model_config", built) != built or ("model_config" not in state and trained != cfg.model):
        raise ValueError(f"{where}: was trained as {state.get('model_config') or trained}, the recipe builds {built}")
    groups, saved = param_group_names(model, optimizer), state.get("param_group_names")
    sizes = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
    if (saved is not None and saved != groups) or sizes != [len(g) for g in groups]:
        raise ValueError(f"{where}: train.lr_mult groups the parameters differently from the checkpoint's "
                         "optimiser; resume with the run's lr_mult")


def resume_point(resume, run_dir: Path) -> tuple[dict | None, Path | None, Path | None]:
    """``(state, its path, the run folder resumed)`` for ``resume`` (a run folder: its newest
    checkpoint; or a ``.state`` file); all None for a fresh start, which ``run_dir`` must allow."""
    if resume is None:
        if list_checkpoints(run_dir / "checkpoints"):
            raise FileExistsError(f"{run_dir}: already holds a run; resume it with --resume {run_dir} "
                                  "or choose another run_dir/name")
        return None, None, None
    resume = Path(resume)
    state_path = resume if resume.is_file() else latest_checkpoint(resume)
    if state_path is None:
        raise FileNotFoundError(f"{resume}: no checkpoint to resume from (checkpoints/step_*.state)")
    return load_state(state_path), state_path, resume.resolve() if resume.is_dir() else None
