"""Exponential moving average of a model's weights (what is validated and exported when on)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """``ema ← decay·ema + (1 − decay)·θ`` after every optimiser step; buffers and frozen
    tensors are copied. ``module`` is an eval-mode deep copy of the model."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_state = self.module.state_dict()
        averaged, targets, copies = [], [], []
        for name, v in model.state_dict().items():
            e = ema_state[name]
            if e.is_floating_point():
                averaged.append(e)
                targets.append(v.detach().to(e.dtype))
            else:
                copies.append((e, v))
        if averaged:
            torch._foreach_lerp_(averaged, targets, 1.0 - self.decay)
        for e, v in copies:
            e.copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.module.load_state_dict(state["module"])
