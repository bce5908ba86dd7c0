"""Which engine runs the network: PyTorch (the architecture's optimised path) or OpenVINO.

``choose(resolved, "auto")`` picks OpenVINO in bf16 where it measured faster at the same
answers — a CPU with bf16 arithmetic (AVX-512 BF16, AMX), the ``openvino`` extra installed, a
method whose descriptor has a ``fast_engine`` (KXNet). On a CPU without bf16 it picks OpenVINO's
int8 graphs for a shipped model whose int8 recipe measured within ``INT8_COST_DB`` on every
complete cell (its manifest entry says), and PyTorch's optimised path everywhere else, OpenVINO's
float32 included, which measured no faster than it (docs/speed.md, "Backends" and "int8 with
accuracy control"). ``"torch"``, ``"openvino"`` and ``"openvino-int8"`` force one. What was
chosen goes into every report.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

# by module: the CPU's flags and the extra's presence are read when asked (tests patch them there)
from .. import hardware
from ..models.zoo import int8_close
from . import openvino

__all__ = ["BACKENDS", "Backend", "choose", "openvino_bf16_possible", "openvino_int8_possible", "int8_recipe_of"]

BACKENDS = ("auto", "torch", "openvino", "openvino-int8")
SNAP = 32    # OpenVINO pads tiles to multiples of this, so that a photo's tiles need few graphs


@dataclass
class Backend:
    """The module inference calls, and what it is (``name``, ``precision``) for reports."""

    module: nn.Module
    name: str
    precision: str

    def describe(self) -> dict:
        return {"name": self.name, "precision": self.precision}


def choose(resolved, backend: str = "auto", device: torch.device | str = "cpu", threads: int | None = None) -> Backend:
    """The backend for ``resolved`` (a :class:`~kxnet.models.ResolvedModel`) on ``device``.
    OpenVINO runs ``threads`` threads, by default PyTorch's count (``OMP_NUM_THREADS``; one per
    process under ``torchrun``), so that both engines fill the same cores."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend in ("openvino", "openvino-int8"):
        on_cpu = torch.device(device).type == "cpu"
        if not (on_cpu and resolved.arch.fast_engine is not None):
            able = openvino.engine_methods()
            raise ValueError(f"the OpenVINO backend runs {'on the CPU' if not on_cpu else able + ' models'} only "
                             f"({resolved.arch.name} on {device})")
        if not openvino.openvino_available():
            raise ValueError("the OpenVINO backend needs the extra: pip install 'kxnet[openvino]'")
        if backend == "openvino":
            return _openvino(resolved, "auto", threads)
        if not (resolved.entry is not None and resolved.entry.int8):
            raise ValueError(f"{resolved.name} has no int8 recipe (shipped models only: kxnet models lists them)")
        return _openvino(resolved, "int8", threads)
    if backend == "auto" and openvino_bf16_possible(resolved, device):
        return _openvino(resolved, "bf16", threads)
    if backend == "auto" and openvino_int8_possible(resolved, device):
        return _openvino(resolved, "int8", threads)
    optimized = resolved.runner is not resolved.model
    return Backend(resolved.runner, "torch", "fp32 " + ("optimized" if optimized else "plain"))


def openvino_bf16_possible(resolved, device: torch.device | str = "cpu") -> bool:
    """Whether ``auto`` can take OpenVINO in bf16 for ``resolved`` on ``device``: the CPU, a
    method with a compiled engine (``fast_engine``), bf16 arithmetic and the ``openvino`` extra."""
    return (torch.device(device).type == "cpu" and resolved.arch.fast_engine is not None and hardware.cpu_has_bf16()
            and openvino.openvino_available())


def openvino_int8_possible(resolved, device: torch.device | str = "cpu") -> bool:
    """Whether ``auto`` can take OpenVINO's int8 graphs for ``resolved`` on ``device``: the CPU,
    without bf16 arithmetic (where bf16 is the faster choice at a smaller cost), a method with a
    compiled engine, the ``openvino`` extra, and a manifest entry whose int8 recipe measured
    within ``INT8_COST_DB`` on every complete cell it was scored on."""
    return (torch.device(device).type == "cpu" and resolved.arch.fast_engine is not None
            and not hardware.cpu_has_bf16() and int8_close(resolved.entry) and openvino.openvino_available())


def int8_recipe_of(entry):
    """The :class:`~kxnet.inference.int8.Int8Recipe` a manifest entry names, its SHA-256 checked."""
    from ..models.loading import verified_file
    from .int8 import load_recipe

    return load_recipe(verified_file(entry.folder / entry.int8["file"], entry.int8["sha256"],
                                     f"the int8 recipe of {entry.name!r} is"))


def _openvino(resolved, precision: str, threads: int | None) -> Backend:
    threads = torch.get_num_threads() if threads is None else threads
    recipe = int8_recipe_of(resolved.entry) if precision == "int8" else None
    runner = openvino.OpenVINORunner(resolved.model, precision=precision, threads=threads, snap=SNAP, int8=recipe)
    return Backend(runner, "openvino", runner.precision)
