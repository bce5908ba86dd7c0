"""The optimiser and the learning-rate schedule of a recipe.

The rate of every step is a pure function of the recipe and the step (:func:`lr_factor`), so a
resumed run needs no scheduler state and an edited schedule takes effect on resume: an
open-ended constant-rate run is annealed for a release by resuming it with a cosine.
"""

from __future__ import annotations

import fnmatch
import math

import torch
import torch.nn as nn

from .config import Config

__all__ = ["build_optimizer", "freeze_parameters", "lr_factor", "lr_multiplier", "param_group_names",
           "param_groups", "set_schedule"]


def lr_factor(t, step: int) -> float:
    """The learning rate of step ``step + 1`` relative to ``train.lr``. ``multistep`` is the
    release's MultiStepLR (docs/training.md); ``cosine`` holds ``lr`` until ``decay_start`` and
    then decays to ``min_lr`` at ``iterations`` (warm-up, stable, decay); ``warmup`` steps of
    linear ramp come first in any schedule."""
    factor = min(1.0, (step + 1) / t.warmup) if t.warmup else 1.0
    if t.schedule == "multistep":
        factor *= t.gamma ** sum(step >= m for m in t.milestones)
    elif t.schedule == "cosine":
        floor = t.min_lr / t.lr
        progress = min(1.0, max(0.0, step - t.decay_start) / max(1, t.iterations - 1 - t.decay_start))
        factor *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def lr_multiplier(cfg: Config, name: str) -> float:
    """The ``train.lr_mult`` of parameter ``name``: the first matching shell pattern's, else 1."""
    return float(next((m for pat, m in cfg.train.lr_mult.items() if fnmatch.fnmatch(name, pat)), 1.0))


def freeze_parameters(cfg: Config, model: nn.Module) -> int:
    """Stop the gradient of every parameter whose ``train.lr_mult`` is 0 (a rate of 0 would still
    pay for its weight gradients, a third of the backward pass of a held sub-network); returns
    how many tensors were frozen."""
    frozen = 0
    for name, p in model.named_parameters():
        if p.requires_grad and lr_multiplier(cfg, name) == 0.0:
            p.requires_grad_(False)
            frozen += 1
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("train.lr_mult freezes every parameter; nothing would be trained")
    return frozen


def param_groups(cfg: Config, model: nn.Module) -> list[dict]:
    """Trainable parameters grouped by learning rate: ``train.lr_mult`` maps shell patterns of
    parameter names to multipliers of ``train.lr`` (first match wins); the rest get ``train.lr``.

    Adam moves a parameter by at most about its learning rate per step, so a scalar that must
    travel far (KXNet's step sizes ``gamma_stage``) needs a larger rate than the weights."""
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(lr_multiplier(cfg, name), []).append(p)
    return [{"params": ps, "lr": cfg.train.lr * mult} for mult, ps in sorted(groups.items())]


def param_group_names(model: nn.Module, optimizer) -> list[list[str]]:
    """The parameter names of each optimiser group (:func:`param_groups`' order)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]


def build_optimizer(cfg: Config, model: nn.Module):
    """Adam and the recipe's learning-rate schedule (:func:`lr_factor`)."""
    t = cfg.train
    optimizer = torch.optim.Adam(param_groups(cfg, model), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(t, step))
    return optimizer, scheduler


def set_schedule(cfg: Config, model: nn.Module, optimizer, scheduler, step: int) -> None:
    """Put the schedule at ``step`` of the recipe in effect — which may have been edited since
    the checkpoint was written (a longer run, another rate): the recipe wins."""
    scheduler.last_epoch = step
    base = [g["lr"] for g in param_groups(cfg, model)]
    scheduler.base_lrs = base
    for group, lr in zip(optimizer.param_groups, base):
        group["initial_lr"] = lr
        group["lr"] = lr * lr_factor(cfg.train, step)
