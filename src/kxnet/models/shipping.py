"""Shipping weights into the package: a trained model's file written into ``kxnet/weights``
through :func:`~kxnet.models.loading.save_model` and its entry in the manifest
(:mod:`kxnet.models.zoo`) rewritten — only when the cells improve (:func:`~kxnet.models.zoo.improved_cells`).
``scripts/ship_weights.py`` is its command line.

A module of its own, apart from :mod:`~kxnet.models.zoo` (the manifest, which the loader reads
to find a shipped name), so that reading weights never imports the code that writes them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from ..io import file_sha256
from . import zoo
from .loading import load_model, save_model
from .registry import architecture_of

__all__ = ["ship"]


def _same_tensors(path: Path, model: nn.Module, storage: str) -> bool:
    """Whether ``path`` already holds ``model`` as ``storage`` keeps it, compared after a round
    trip through ``save_model`` (the one place that rounds): re-shipping the same weights must
    not add a new blob to git."""
    if not path.is_file():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        stored = load_model(save_model(model, Path(tmp) / "w.safetensors", storage=storage)).state_dict()
    shipped = load_model(path).state_dict()
    return shipped.keys() == stored.keys() and all(torch.equal(shipped[k], v) for k, v in stored.items())


_STORAGE_TEXT = {"fp32": "safetensors, float32",
                 "fp16": "safetensors, float16 (loaded as float32)",
                 "int8": "safetensors, int8 convolution weights (a float32 scale per output channel), the rest "
                         "float16 (loaded as float32)"}


def ship(model: nn.Module, name: str, *, recipe: dict, iterations: int, cells: dict, hardware: str,
         training_data: str, storage: str = "fp16", training_hours: float | None = None, notes: dict | None = None,
         force: bool = False, manifest: str | os.PathLike | None = None) -> zoo.WeightsEntry:
    """Put ``model`` into the package as ``name``: its file replaced (never a second version
    beside it) and its manifest entry rewritten — only if :func:`~kxnet.models.zoo.improved_cells` says the
    complete cells it shares with the shipped entry improve (or ``force``). Raises
    ``ValueError`` when they do not."""
    manifest = Path(zoo.MANIFEST if manifest is None else manifest)
    folder = manifest.parent
    entries = zoo.read_manifest(manifest)
    old = entries.get(name)
    better = zoo.improved_cells(cells, old.benchmarks if old else {})
    if old is not None and not better and not force:
        raise ValueError(f"{name}: no complete benchmark cell improves on the shipped weights; not replaced")
    file_name = name.replace(".", "_") + ".safetensors"
    target = folder / file_name
    folder.mkdir(parents=True, exist_ok=True)
    if not _same_tensors(target, model, storage):
        save_model(model, target, storage=storage, extra_metadata={"name": name, "iterations": iterations})
    config = model.config
    notes = dict(notes or {})
    grown = zoo.grown_note(recipe, config)
    if grown:
        notes["grown"] = grown
    entry = zoo.WeightsEntry(
        name=name, folder=folder, file=file_name, sha256=file_sha256(target), bytes=target.stat().st_size,
        arch=architecture_of(model).name, config=config.to_dict(), parameters=sum(p.numel() for p in model.parameters()),
        storage=_STORAGE_TEXT[storage], iterations=iterations, hardware=hardware, training_data=training_data,
        recipe={k: recipe.get(k) for k in ("model", "data", "train")}, training_hours=training_hours,
        reduced=zoo.reduced_note(recipe, config, iterations), benchmarks=cells, improved_cells=better, notes=notes)
    if old is not None and old.file != file_name:
        (folder / old.file).unlink(missing_ok=True)
    entries[name] = entry
    zoo.write_manifest(entries, manifest)
    return entry
