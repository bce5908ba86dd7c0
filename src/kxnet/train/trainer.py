"""The training loop for any registered architecture (its objective: :mod:`.loss`).

One code path for one process and for ``torchrun`` (DistributedDataParallel: NCCL on CUDA,
Gloo on CPU): each rank computes its slice of the global batch, DDP averages the gradients,
and only rank 0 validates, logs and writes. Batches are pure functions of (seed, step, index)
(:mod:`.data`), so a resumed run — from any number of processes — continues bit for bit. The
rooms around the loop: :mod:`.runtime` (device, processes, threads), :mod:`.optim` (optimiser
and schedule), :mod:`.runlog` (logs), :mod:`.validation` (sets, scores), :mod:`.checkpoint`.

Run folder (``cfg.resolved_run_dir()``)::

    config.yaml            the resolved recipe in effect (absolute paths)
    checkpoints/step_*.state / .safetensors    resumable state / weights (keep_last)
    best.safetensors, best.json                best validation PSNR (keep_best)
    model.safetensors      weights exported at the end (EMA if on, fp16 if export_fp16)
    metrics.jsonl          one JSON record per log/validation event
    train_log.csv          step, losses, lr, grad norm, speed
    tb/                    TensorBoard events (if tensorboard is installed)
    val_set/               the validation set (unless val.set_dir); val_set_N/ for val.extra
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from ..io import atomic_write_json
from ..models import architecture_of
from .checkpoint import (STATE_FORMAT, check_resumable, restore_rng, resume_point, rng_state, save_checkpoint,
                         weights_metadata)
from .config import Config, build_model, save_config
from .data import build_loader, rank_slice, recipe_samples
from .ema import ModelEMA
from .loss import objective_for
from .optim import build_optimizer, freeze_parameters, lr_factor, param_group_names, set_schedule
from .runlog import RunLog, info, read_metrics
from .runtime import CpuClock, Runtime, StopSignals
from .validation import Validator

__all__ = ["Trainer", "read_metrics", "train"]


class Trainer:
    """Build everything a recipe describes; :meth:`fit` trains to ``train.iterations``.

    ``resume`` is a run folder (its newest checkpoint) or a ``.state`` file; the run then
    continues exactly where that checkpoint stopped. Without it, ``run_dir`` must not hold
    checkpoints yet. ``train.init_weights`` instead starts a *new* run (step 0, fresh
    optimiser) from a weights file.
    """

    def __init__(self, config: Config, *, resume: str | os.PathLike | None = None, progress: bool = True):
        config.require_data()           # the recipe names its images: nothing is assumed
        self.runtime = self.log = self._state_path = None
        self.is_main = True
        self.stop = StopSignals(self._say)
        try:
            self._setup(config.with_absolute_paths(), resume, progress)
        except BaseException:
            self.close(wait=False)
            raise

    def _setup(self, cfg: Config, resume, progress: bool) -> None:
        t = cfg.train
        self.runtime = rt = Runtime(t.device, t.threads, t.deterministic)
        self.device, self.rank, self.world_size, self.is_main = rt.device, rt.rank, rt.world_size, rt.is_main
        self.progress = progress and self.is_main
        state, self._state_path, resumed_dir = resume_point(resume, Path(cfg.run_dir))
        if resumed_dir is not None:
            cfg = replace(cfg, run_dir=str(resumed_dir))
        self.cfg, self.run_dir = cfg, Path(cfg.run_dir)
        if t.cpu_budget_h and self.world_size > 1:
            raise ValueError("train.cpu_budget_h counts one process's CPU time; it cannot bound a multi-process run")

        torch.manual_seed(t.seed)      # the same on every rank; DDP also broadcasts rank 0's weights
        self.model = build_model(cfg)
        if state is None and t.init_weights:
            from ..models import load_weights_into

            load_weights_into(self.model, t.init_weights, grow=t.grow_stages)
            self._say(f"initialised from {t.init_weights}")
        self.model.to(self.device)
        freeze_parameters(cfg, self.model)
        self.objective = objective_for(self.model)
        self._forward = self.objective.forward
        if t.nonblind:
            if self.objective.nonblind_forward is None:
                raise ValueError(f"train.nonblind: {type(self.model).__name__} has no non-blind training")
            self._forward = self.objective.nonblind_forward
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = ModelEMA(self.model, t.ema_decay) if t.ema_decay > 0 else None
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model)
        self.amp_dtype = rt.autocast_dtype(t.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.step, self.clock, self.validator = 0, CpuClock(), None
        # the best validation so far (psnr, step): one dict, the validator's too, updated in place
        self.best, self.bicubic_psnr = {"psnr": None, "step": None}, None
        if state is not None:
            self.load_state_dict(state, self._state_path)
            self._say(f"resumed {self.run_dir.name} at step {self.step}")
        self.forward_model = self.model
        if self.world_size > 1:
            self.forward_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # the descriptor says whether some parameter gets no gradient (KXNet's eta_stage,
                # dead in the release's forward); DDP's search for them costs every other method
                find_unused_parameters=architecture_of(self.model).find_unused_parameters)
        if t.compile:
            self.forward_model = torch.compile(self.forward_model)

        self.dataset = recipe_samples(cfg, self._say, self.progress)
        rank_slice(t.batch, self.rank, self.world_size)  # fail early on an indivisible batch
        self.history: list[dict] = []
        self.last_val: dict | None = None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            self.log = RunLog(self.run_dir, self.step if state is not None else -1, t.tensorboard)
            self.validator = Validator(cfg, self.run_dir, self.device, self.best, self.bicubic_psnr)

    def _say(self, msg: str) -> None:
        if self.is_main:
            info(msg)

    # ------------------------------------------------------------------------- training

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step on this rank's part of a batch; returns detached loss terms."""
        self.model.train()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.cfg.train.channels_last:
            batch["lr"] = batch["lr"].contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
              else contextlib.nullcontext()):
            out = self._forward(self.forward_model, batch)
        loss, parts = self.objective.loss(out, batch, self.cfg.train.loss)   # losses in float32
        self.scaler.scale(loss).backward()
        if self.cfg.train.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.clip_grad_norm).detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return parts

    def _log_train(self, step: int, parts: dict, rate: float, elapsed: float, bar) -> None:
        keys = ["total", "image", "kernel"] + (["grad_norm"] if "grad_norm" in parts else [])
        values = dict(zip(keys, self.runtime.mean([parts[k] for k in keys])))
        if not math.isfinite(values["total"]):
            raise FloatingPointError(f"loss is {values['total']} at step {step}; lower train.lr, "
                                     "set train.clip_grad_norm or train.amp=none")
        if self.is_main:
            lr = self.cfg.train.lr * lr_factor(self.cfg.train, step)   # the base rate (lr_mult groups scale it)
            self.history.append(self.log.train_row(step, values, lr, rate, self.cfg.train.batch, elapsed,
                                                   self.cpu_seconds()))
            bar.set_postfix(loss=f"{values['total']:.4f}", lr=f"{lr:.2e}", refresh=False)

    def cpu_seconds(self) -> float:
        """CPU time this run has spent training so far (:class:`~.runtime.CpuClock`)."""
        return self.clock.seconds()

    def _budget_spent(self) -> bool:
        budget = self.cfg.train.cpu_budget_h
        return bool(budget) and self.cpu_seconds() >= budget * 3600

    def eval_model(self) -> nn.Module:
        """The weights that are validated and exported: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> dict:
        """Score the current weights (:class:`~.validation.Validator`), keep the best, log."""
        cpu0 = time.process_time()
        record, improved = self.validator.validate(self.eval_model(), self.step, self.cpu_seconds(), self.objective,
                                                   self._forward)
        self.bicubic_psnr, self.last_val = record["bicubic_psnr"], record
        if improved and self.cfg.checkpoint.keep_best:
            self.export(self.run_dir / "best.safetensors")
            atomic_write_json(self.run_dir / "best.json", {k: v for k, v in record.items() if k != "best_psnr"})
        self.log.val_record(record)
        self.clock.exclude(time.process_time() - cpu0)
        info(self.validator.describe(record))
        return record

    def fit(self, stop_at: int | None = None) -> dict:
        """Train until ``train.iterations`` (or stop after step ``stop_at``, with a checkpoint)."""
        from tqdm import tqdm

        t, v, c = self.cfg.train, self.cfg.val, self.cfg.checkpoint
        last = t.iterations if stop_at is None else min(stop_at, t.iterations)
        start_time = time.perf_counter()
        self.clock.start()
        if self._budget_spent():      # a finished equal-budget run resumed: nothing left to train
            last = self.step
        validating = self.validator is not None and self.validator.set_dir is not None
        if v.at_start and self.step == 0 and validating:
            self.validate()
        saved_at = self.step if self.step else None
        if self.step < last:
            loader = build_loader(self.dataset, self.step + 1, last, t.batch, self.rank, self.world_size,
                                  self.cfg.data.workers, pin_memory=self.device.type == "cuda")
            bar = tqdm(total=t.iterations, initial=self.step, desc=self.cfg.name or "train", unit="it",
                       dynamic_ncols=True, disable=not self.progress, file=sys.stderr)
            tick, tick_step = time.perf_counter(), self.step
            try:
                with self.stop.installed():
                    batches = iter(loader)
                    while self.step < last:
                        try:
                            batch = next(batches)
                        except RuntimeError:
                            if self.stop.requested:  # a worker died of the same Ctrl-C
                                break
                            raise
                        parts = self.train_step(batch)
                        bar.update(1)
                        if self.step % t.log_every == 0 or self.step == last:
                            now = time.perf_counter()
                            rate, tick, tick_step = (self.step - tick_step) / max(now - tick, 1e-9), now, self.step
                            self._log_train(self.step, parts, rate, now - start_time, bar)
                        if v.every and self.step % v.every == 0:
                            if validating:
                                self.validate()
                            self.runtime.barrier()
                        if c.every and self.step % c.every == 0:
                            self.save_checkpoint()
                            saved_at = self.step
                        if self._budget_spent() or self.runtime.any(self.stop.requested):
                            break
            finally:
                bar.close()
        if saved_at != self.step:
            self.save_checkpoint()
        finished = self.step >= t.iterations or self._budget_spent()
        if self.stop.requested:
            self._say(f"stopped at step {self.step}; continue with: kxnet train --resume {self.run_dir}")
        if finished and self.is_main:
            if validating and (self.last_val is None or self.last_val["step"] != self.step):
                self.validate()
            self.export(self.run_dir / "model.safetensors", storage="fp16" if c.export_fp16 else "fp32")
        summary = {"run_dir": str(self.run_dir), "step": self.step, "finished": finished, "rank": self.rank,
                   "seconds": time.perf_counter() - start_time, "last_val": self.last_val,
                   "best_psnr": self.best["psnr"], "best_step": self.best["step"], "bicubic_psnr": self.bicubic_psnr,
                   "cpu_s": round(self.cpu_seconds(), 1),
                   "weights": str(self.run_dir / "model.safetensors") if finished else None}
        if self.is_main and finished:
            atomic_write_json(self.run_dir / "summary.json", summary)
        return summary

    # ---------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        """Everything this trainer needs to continue exactly where it is (what a ``.state``
        checkpoint holds, :mod:`.checkpoint`): weights, optimiser and its parameter groups by name,
        gradient scaler, EMA, RNG states, step, CPU time, best validation, bicubic's score and the
        resolved recipe."""
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "param_group_names": param_group_names(self.model, self.optimizer),
            "model_config": self.model.config.to_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "best": dict(self.best),
            "bicubic_psnr": self.bicubic_psnr,
            "cpu_s": self.cpu_seconds(),
            "world_size": self.world_size,
            "torch_version": str(torch.__version__),
        }

    def load_state_dict(self, state: dict, where: str | os.PathLike = "checkpoint") -> None:
        """Continue exactly where ``state`` (:meth:`state_dict`, read from ``where``) stopped; a
        state this trainer's model or parameter groups cannot take is refused first
        (:func:`~.checkpoint.check_resumable`, ValueError), before anything changes."""
        check_resumable(state, self.model, self.optimizer, self.cfg, where)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:   # re-made from the restored weights, then its own state if saved
            self.ema = ModelEMA(self.model, self.cfg.train.ema_decay)
            if state.get("ema"):
                self.ema.load_state_dict(state["ema"])
        restore_rng(state["rng"])
        self.step = int(state["step"])
        self.clock = CpuClock(float(state.get("cpu_s") or 0.0))
        set_schedule(self.cfg, self.model, self.optimizer, self.scheduler, self.step)
        self.best.update(state.get("best") or {})
        self.bicubic_psnr = state.get("bicubic_psnr")

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step_{n}.{safetensors,state}`` (rank 0) and prune old ones."""
        if not self.is_main:
            return None
        path = save_checkpoint(self, self.run_dir / "checkpoints", self.cfg.checkpoint.keep_last)
        self.log.flush()
        return path

    def export(self, path: str | os.PathLike, storage: str = "fp32") -> Path:
        """The validated weights (EMA if on) as a model file :func:`kxnet.models.load_model` reads."""
        from ..models import save_model

        meta = weights_metadata(self.step, self.cfg.name, self.ema is not None, best_psnr=self.best["psnr"],
                                val_set=self.validator.set_dir.name if self.validator and self.validator.set_dir
                                else None)
        return save_model(self.eval_model(), path, storage=storage, extra_metadata=meta)

    def close(self, wait: bool = True) -> None:
        """Flush logs, leave the process group we joined (``wait``: after a last barrier; not
        when this process failed), restore torch's global settings."""
        if self.log is not None:
            self.log.close()
        if self.runtime is not None:
            # The DDP wrapper (and a compiled one around it) holds the process group: let it go
            # first, so that leaving the group ends Gloo's threads now rather than at interpreter
            # exit (issue #39: a rank aborted there). The model itself stays usable.
            if getattr(self, "model", None) is not None:
                self.forward_model = self.model
            self.runtime.close(wait)

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(wait=exc_type is None)


def train(config: Config, *, resume: str | os.PathLike | None = None, stop_at: int | None = None,
          progress: bool = True) -> dict:
    """Build a :class:`Trainer`, fit, close; returns the run summary."""
    with Trainer(config, resume=resume, progress=progress) as trainer:
        return trainer.fit(stop_at=stop_at)
