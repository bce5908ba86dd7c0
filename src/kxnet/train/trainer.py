"""The training loop for any registered architecture (its objective: :mod:`.loss`).

One code path for one process and for ``torchrun`` (DistributedDataParallel: NCCL on CUDA,
Gloo on CPU): each rank computes its slice of the global batch, DDP averages the gradients,
and only rank 0 validates, logs and writes. Batches are pure functions of (seed, step, index)
(:mod:`.data`), so a resumed run — from any number of processes — continues bit for bit.

Run folder (``cfg.resolved_run_dir()``)::

    config.yaml            the resolved recipe in effect (absolute paths)
    checkpoints/step_*.state / .safetensors    resumable state / weights (keep_last)
    best.safetensors, best.json                best validation PSNR (keep_best)
    model.safetensors      weights exported at the end (EMA if on, fp16 if export_fp16)
    metrics.jsonl          one JSON record per log/validation event
    train_log.csv          step, losses, lr, grad norm, speed
    tb/                    TensorBoard events (if tensorboard is installed)
    val_set/               the validation set built by ``synthesise`` (unless val.set_dir)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from ..io import atomic_write_bytes, atomic_write_json, list_images
from .checkpoint import (
    STATE_FORMAT,
    checkpoint_stem,
    latest_checkpoint,
    list_checkpoints,
    load_state,
    prune_checkpoints,
    rng_state,
    save_state,
    set_rng_state,
)
from .config import Config, config_from_dict, save_config
from .data import HRImagePool, TrainingSamples, build_loader, rank_slice
from .ema import ModelEMA
from .loss import objective_for

__all__ = ["Trainer", "build_model", "build_optimizer", "lr_factor", "train"]

_CSV_FIELDS = ["step", "loss", "image_l1", "kernel_l1", "lr", "grad_norm", "it_per_s", "samples_per_s", "elapsed_s",
               "cpu_s"]
_VAL_LOSS_SEED_OFFSET = 1_000_003


def _metrics_line(record: dict) -> str:
    return json.dumps(record, sort_keys=True) + "\n"


def read_metrics(run_dir: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """The records of a run folder's ``metrics.jsonl`` in order (only ``kind`` ones: "train" or
    "val", when given); none when the run has not logged yet."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def build_model(cfg: Config) -> nn.Module:
    """The architecture a recipe names, freshly initialised (seed the RNG first)."""
    from ..models import create_model

    m = cfg.model
    try:
        model = create_model(m.name, **m.factory_kwargs())
    except TypeError as e:
        raise ValueError(f"model.name {m.name!r} does not take {sorted(m.factory_kwargs())} ({e})") from None
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model {m.name!r} has no trainable parameters")
    return model


def lr_factor(t, step: int) -> float:
    """The learning rate of step ``step + 1`` relative to ``train.lr``: a pure function of the
    recipe and the step, so a resumed run (even with an edited schedule) needs no scheduler state.
    ``multistep`` is the release's MultiStepLR (KXNET.md §5). ``cosine`` holds ``lr`` until
    ``decay_start`` and then decays to ``min_lr`` at ``iterations`` (warm-up, stable, decay: an
    open-ended run is annealed for a release by resuming it with a ``decay_start`` and an end)."""
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
    import fnmatch

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
    t = cfg.train
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(lr_multiplier(cfg, name), []).append(p)
    return [{"params": ps, "lr": t.lr * mult} for mult, ps in sorted(groups.items())]


def build_optimizer(cfg: Config, model: nn.Module):
    """Adam and the recipe's learning-rate schedule (:func:`lr_factor`)."""
    t = cfg.train
    optimizer = torch.optim.Adam(param_groups(cfg, model), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(t, step))
    return optimizer, scheduler


def _abs(p: str | None) -> str | None:
    return None if p is None else str(Path(p).expanduser().resolve())


def _resolve_paths(cfg: Config) -> Config:
    """Relative paths are relative to the working directory; store them absolute."""
    data = replace(cfg.data, hr_dirs=[_abs(d) for d in cfg.data.hr_dirs])
    val = replace(cfg.val, hr_dir=_abs(cfg.val.hr_dir), set_dir=_abs(cfg.val.set_dir))
    train = replace(cfg.train, init_weights=_abs(cfg.train.init_weights))
    run_dir = str(cfg.resolved_run_dir().expanduser().resolve())
    return replace(cfg, data=data, val=val, train=train, run_dir=run_dir, out=_abs(cfg.out))


class Trainer:
    """Build everything a recipe describes; :meth:`fit` trains to ``train.iterations``.

    ``resume`` is a run folder (its newest checkpoint) or a ``.state`` file; the run then
    continues exactly where that checkpoint stopped. Without it, ``run_dir`` must not hold
    checkpoints yet. ``train.init_weights`` instead starts a *new* run (step 0, fresh
    optimiser) from a weights file.
    """

    def __init__(self, config: Config, *, resume: str | os.PathLike | None = None, progress: bool = True):
        self._restore = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
        self._owns_process_group = False
        self._state_path = None
        self._writer = None
        self._stop = False
        try:
            self._setup(config, resume, progress)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------- setup

    def _setup(self, config: Config, resume, progress: bool) -> None:
        cfg = _resolve_paths(config)
        self._init_distributed(cfg)
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.progress = progress and self.is_main

        self.run_dir = Path(cfg.run_dir)
        state = None
        if resume is not None:
            resume = Path(resume)
            state_path = resume if resume.is_file() else latest_checkpoint(resume)
            if state_path is None:
                raise FileNotFoundError(f"{resume}: no checkpoint to resume from (checkpoints/step_*.state)")
            state = load_state(state_path)
            trained = config_from_dict(state["config"], str(state_path)).model
            # checkpoints record the built model's config (compared once it is built); older
            # ones only the recipe's model section
            if "model_config" not in state and trained != cfg.model:
                raise ValueError(f"{state_path}: was trained with model {trained}, the config says {cfg.model}")
            self._state_path = state_path
            if resume.is_dir():
                self.run_dir = resume.resolve()
                cfg = replace(cfg, run_dir=str(self.run_dir))
        elif list_checkpoints(self.run_dir / "checkpoints"):
            raise FileExistsError(f"{self.run_dir}: already holds a run; resume it with --resume {self.run_dir} "
                                  "or choose another run_dir/name")
        self.cfg = cfg

        # model, EMA, optimiser (same seed on every rank; DDP also broadcasts rank 0's weights)
        torch.manual_seed(t.seed)
        model = build_model(cfg)
        if state is None and t.init_weights:
            self._load_init_weights(model, t.init_weights)
        self.model = model.to(self.device)
        freeze_parameters(cfg, self.model)
        self.objective = objective_for(self.model)
        self._forward = self.objective.forward
        if t.nonblind:
            if self.objective.nonblind_forward is None:
                raise ValueError(f"train.nonblind: {type(self.model).__name__} has no non-blind training")
            self._forward = self.objective.nonblind_forward
        if t.cpu_budget_h and self.world_size > 1:
            raise ValueError("train.cpu_budget_h counts one process's CPU time; it cannot bound a multi-process run")
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = ModelEMA(self.model, t.ema_decay) if t.ema_decay > 0 else None
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model)
        self.amp_dtype = self._amp_dtype(t.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.step = 0
        self._cpu_before = 0.0        # training CPU seconds of earlier segments of this run (checkpoint)
        self._cpu_start = time.process_time()
        self._cpu_val = 0.0           # CPU seconds this segment spent validating (not training)
        self.best = {"psnr": None, "step": None}
        self.bicubic_psnr = None
        if state is not None:
            self._load_state(state)

        self.forward_model = self.model
        if self.world_size > 1:
            self.forward_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)  # eta_stage is dead in the release's forward
        if t.compile:
            self.forward_model = torch.compile(self.forward_model)

        # data
        d, m = cfg.data, cfg.model
        crop = d.lr_patch * m.scale
        cache = d.cache_mb * 2 ** 20 if d.cache_in_memory else 0
        self.pool = HRImagePool(d.hr_dirs, crop, d.small_images, d.recursive, cache)
        if self.pool.skipped or self.pool.padded:
            self._info(f"HR images: {len(self.pool)} used ({self.pool.padded} mirror-padded to {crop}×{crop}), "
                       f"{len(self.pool.skipped)} skipped as too small")
        if cache:
            self.pool.preload(progress=self.progress)
        self.dataset = TrainingSamples(self.pool, m.scale, m.setting, d.lr_patch, t.seed, d.hflip, d.vflip, d.transpose,
                                       d.photo)
        rank_slice(t.batch, self.rank, self.world_size)  # fail early on an indivisible batch

        self.history: list[dict] = []
        self.last_val: dict | None = None
        self.val_set = None
        self.extra_val_sets: dict[str, Path] = {}
        self._extra_bicubic: dict[str, float] = {}
        self._val_batch = None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            self._truncate_logs(self.step if state is not None else -1)
            self.val_set = self._prepare_val_set(cfg.val.degradation or cfg.val.noise, "val_set")
            if self.val_set is not None and cfg.val.set_dir is None:
                self.extra_val_sets = {spec: self._prepare_val_set(spec, f"val_set_{i + 1}")
                                       for i, spec in enumerate(cfg.val.extra)}
            self._val_batch = self._prepare_val_loss_batch()
            self._open_writer()

    def _init_distributed(self, cfg: Config) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0")) if self.world_size > 1 else 0
        local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world_size > 1 else 0
        want = cfg.train.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError(f"train.device={cfg.train.device}: CUDA is not available here")
            index = local_rank if self.world_size > 1 or ":" not in want else int(want.split(":", 1)[1])
            self.device = torch.device("cuda", index)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
            self._owns_process_group = True
        self.is_main = self.rank == 0

    def _amp_dtype(self, amp: str):
        if amp == "none":
            return None
        if amp == "fp16" and self.device.type != "cuda":
            warnings.warn("train.amp=fp16 needs CUDA; training in float32 on the CPU (bf16 works on CPU)")
            return None
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def _load_init_weights(self, model: nn.Module, path: str) -> None:
        from ..models import KXNet, grow_stages, load_model

        src = load_model(path)
        if self.cfg.train.grow_stages:
            if not isinstance(model, KXNet):
                raise ValueError(f"train.grow_stages applies to KXNet, not to a {type(model).__name__}")
            src = grow_stages(src, model.config.stages)
        if type(src) is not type(model):
            raise ValueError(f"{path}: weights of a {type(src).__name__}, the recipe's model is a {type(model).__name__}")
        # fields that do not shape the weights (KXNet's mode, DAN's loops, …) may differ
        ours, given = model.state_dict(), src.state_dict()
        if set(ours) != set(given) or any(ours[k].shape != given[k].shape for k in ours):
            mine, theirs = model.config.to_dict(), src.config.to_dict()
            diff = ", ".join(f"{k}={theirs.get(k)}" for k in mine if mine[k] != theirs.get(k))
            wanted = ", ".join(f"{k}={mine[k]}" for k in mine if mine[k] != theirs.get(k))
            raise ValueError(f"{path}: weights have {diff or 'other shapes'}, the recipe's model has {wanted or '…'}")
        model.load_state_dict(given)
        self._info(f"initialised from {path}")

    def _load_state(self, state: dict) -> None:
        built = self.model.config.to_dict()
        if "model_config" in state and state["model_config"] != built:
            raise ValueError(f"{self._state_path}: was trained as {state['model_config']}, the recipe builds {built}")
        groups = [[n for n in names] for names in self._param_group_names()]
        saved = state.get("param_group_names")
        sizes = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
        if (saved is not None and saved != groups) or sizes != [len(g) for g in groups]:
            raise ValueError(f"{self._state_path}: train.lr_mult groups the parameters differently from the "
                             "checkpoint's optimiser; resume with the run's lr_mult")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema"):
                self.ema.load_state_dict(state["ema"])
            else:
                self.ema = ModelEMA(self.model, self.cfg.train.ema_decay)
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self._cpu_before = float(state.get("cpu_s") or 0.0)
        # the schedule is a function of (recipe, step); the recipe may have been edited on resume
        # (a longer run, another lr): it wins
        self.scheduler.last_epoch = self.step
        base = [g["lr"] for g in param_groups(self.cfg, self.model)]
        self.scheduler.base_lrs = base
        for group, lr in zip(self.optimizer.param_groups, base):
            group["initial_lr"] = lr
            group["lr"] = lr * lr_factor(self.cfg.train, self.step)
        self.best = dict(state.get("best") or self.best)
        self.bicubic_psnr = state.get("bicubic_psnr")
        self._info(f"resumed {self.run_dir.name} at step {self.step}")

    # -------------------------------------------------------------------------- logging

    def _info(self, msg: str) -> None:
        if getattr(self, "is_main", True):
            from tqdm import tqdm

            tqdm.write(f"kxnet train: {msg}", file=sys.stderr)

    def _open_writer(self) -> None:
        if not self.cfg.train.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed (or broken): the files still have everything
            self._info("tensorboard is not installed; logging to metrics.jsonl and train_log.csv only")
            return
        self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=self.step + 1 if self.step else None)

    def _truncate_logs(self, step: int) -> None:
        """Drop log records after ``step`` (written after the checkpoint a resume starts from);
        ``step = -1`` (a fresh start in a folder whose earlier run never checkpointed) drops all."""
        log_csv, metrics = self.run_dir / "train_log.csv", self.run_dir / "metrics.jsonl"
        if step < 0:
            for p in [log_csv, metrics, *(self.run_dir / "tb").glob("events.out.tfevents.*")]:
                p.unlink(missing_ok=True)
            return
        if log_csv.exists():
            rows = list(csv.DictReader(io.StringIO(log_csv.read_text())))
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
            w.writeheader()
            w.writerows(r for r in rows if int(r["step"]) <= step)
            atomic_write_bytes(log_csv, buf.getvalue().encode())
        if metrics.exists():
            kept = [r for r in read_metrics(self.run_dir) if r["step"] <= step]
            atomic_write_bytes(metrics, "".join(map(_metrics_line, kept)).encode())

    def _append_metrics(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(_metrics_line(record))

    def _append_csv(self, row: dict) -> None:
        path = self.run_dir / "train_log.csv"
        new = not path.exists()
        with open(path, "a", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=_CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def _scalars(self, prefix: str, values: dict, step: int) -> None:
        if self._writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and v is not None and math.isfinite(v):
                self._writer.add_scalar(f"{prefix}/{k}", v, step)

    # ------------------------------------------------------------------------- training

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step on this rank's part of a batch; returns detached loss terms."""
        self.model.train()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.cfg.train.channels_last:
            batch["lr"] = batch["lr"].contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            out = self._forward(self.forward_model, batch)
        loss, parts = self.objective.loss(out, batch, self.cfg.train.loss)
        self.scaler.scale(loss).backward()
        clip = self.cfg.train.clip_grad_norm
        if clip > 0:
            self.scaler.unscale_(self.optimizer)
            parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, clip).detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return parts

    def _reduce(self, values: list[torch.Tensor]) -> list[float]:
        t = torch.stack([v.float().to(self.device) for v in values])
        if self.world_size > 1:
            dist.all_reduce(t)
            t /= self.world_size
        return t.tolist()

    def _stop_everywhere(self) -> bool:
        if self.world_size == 1:
            return self._stop
        flag = torch.tensor([1.0 if self._stop else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _on_signal(self, signum, _frame) -> None:
        if self._stop:
            raise KeyboardInterrupt
        self._stop = True
        self._info(f"{signal.Signals(signum).name}: stopping after this step with a checkpoint "
                   "(send it again to abort without one)")

    @contextlib.contextmanager
    def _signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def fit(self, stop_at: int | None = None) -> dict:
        """Train until ``train.iterations`` (or stop after step ``stop_at``, with a checkpoint)."""
        cfg = self.cfg
        t, v, c = cfg.train, cfg.val, cfg.checkpoint
        last = t.iterations if stop_at is None else min(stop_at, t.iterations)
        start_time = time.perf_counter()
        self._cpu_start, self._cpu_val = time.process_time(), 0.0   # setup (decoding, val set) is not training
        if self._budget_spent():      # a finished equal-budget run resumed: nothing left to train
            last = self.step
        if v.at_start and self.step == 0 and self.is_main and self.val_set is not None:
            self.validate()
        saved_at = self.step if self.step else None
        if self.step < last:
            loader = build_loader(self.dataset, self.step + 1, last, t.batch, self.rank, self.world_size,
                                  cfg.data.workers, pin_memory=self.device.type == "cuda")
            from tqdm import tqdm

            bar = tqdm(total=t.iterations, initial=self.step, desc=cfg.name or "train", unit="it",
                       dynamic_ncols=True, disable=not self.progress, file=sys.stderr)
            tick, tick_step = time.perf_counter(), self.step
            try:
                with self._signals():
                    it = iter(loader)
                    while self.step < last:
                        try:
                            batch = next(it)
                        except RuntimeError:
                            if self._stop:  # a worker died of the same Ctrl-C
                                break
                            raise
                        parts = self.train_step(batch)
                        step = self.step
                        bar.update(1)
                        if step % t.log_every == 0 or step == last:
                            now = time.perf_counter()
                            rate = (step - tick_step) / max(now - tick, 1e-9)
                            tick, tick_step = now, step
                            self._log_train(step, parts, rate, now - start_time, bar)
                        if self.is_main and v.every and step % v.every == 0 and self.val_set is not None:
                            self.validate()
                        if self.world_size > 1 and v.every and step % v.every == 0:
                            dist.barrier()
                        if c.every and step % c.every == 0:
                            self.save_checkpoint()
                            saved_at = step
                        if self._budget_spent() or self._stop_everywhere():
                            break
            finally:
                bar.close()
        if saved_at != self.step:
            self.save_checkpoint()
        finished = self.step >= t.iterations or self._budget_spent()
        if self._stop:
            self._info(f"stopped at step {self.step}; continue with: kxnet train --resume {self.run_dir}")
        if finished and self.is_main:
            if self.val_set is not None and (self.last_val is None or self.last_val["step"] != self.step):
                self.validate()
            self.export(self.run_dir / "model.safetensors", storage="fp16" if c.export_fp16 else "fp32")
        summary = {
            "run_dir": str(self.run_dir), "step": self.step, "finished": finished, "rank": self.rank,
            "seconds": time.perf_counter() - start_time, "last_val": self.last_val,
            "best_psnr": self.best["psnr"], "best_step": self.best["step"], "bicubic_psnr": self.bicubic_psnr,
            "cpu_s": round(self.cpu_seconds(), 1),
            "weights": str(self.run_dir / "model.safetensors") if finished else None,
        }
        if self.is_main and finished:
            atomic_write_json(self.run_dir / "summary.json", summary)
        return summary

    def _param_group_names(self) -> list[list[str]]:
        """The parameter names of each optimiser group (:func:`param_groups`' order)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        return [[names[id(p)] for p in g["params"]] for g in self.optimizer.param_groups]

    def _budget_spent(self) -> bool:
        """``train.cpu_budget_h`` reached (single process: the budget is this process's CPU time)."""
        budget = self.cfg.train.cpu_budget_h
        return bool(budget) and self.world_size == 1 and self.cpu_seconds() >= budget * 3600

    def cpu_seconds(self) -> float:
        """CPU time this run has spent training so far, all segments: this process's user +
        system time (all its threads) less the time spent validating. DataLoader workers are
        separate processes and not counted, so equal-budget runs use ``data.workers=0``."""
        return self._cpu_before + time.process_time() - self._cpu_start - self._cpu_val

    def _log_train(self, step: int, parts: dict, rate: float, elapsed: float, bar) -> None:
        keys = ["total", "image", "kernel"] + (["grad_norm"] if "grad_norm" in parts else [])
        values = dict(zip(keys, self._reduce([parts[k] for k in keys])))
        if not math.isfinite(values["total"]):
            raise FloatingPointError(f"loss is {values['total']} at step {step}; lower train.lr, "
                                     "set train.clip_grad_norm or train.amp=none")
        if not self.is_main:
            return
        lr = self.cfg.train.lr * lr_factor(self.cfg.train, step)   # the base rate (lr_mult groups scale it)
        row = {"step": step, "loss": values["total"], "image_l1": values["image"], "kernel_l1": values["kernel"],
               "lr": lr, "grad_norm": values.get("grad_norm", ""), "it_per_s": round(rate, 4),
               "samples_per_s": round(rate * self.cfg.train.batch, 3), "elapsed_s": round(elapsed, 2),
               "cpu_s": round(self.cpu_seconds(), 1)}
        self.history.append(row)
        self._append_csv(row)
        self._append_metrics({"kind": "train", **{k: v for k, v in row.items() if v != ""}})
        self._scalars("train", {"loss": row["loss"], "image_l1": row["image_l1"], "kernel_l1": row["kernel_l1"],
                                "lr": lr, "it_per_s": rate, **({"grad_norm": values["grad_norm"]}
                                                               if "grad_norm" in values else {})}, step)
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)

    # ----------------------------------------------------------------------- validation

    def _prepare_val_set(self, degradation, folder: str) -> Path | None:
        """The validation set (``val.set_dir``, or ``val.hr_dir``'s images × the 8 kernels
        degraded by ``degradation``, built into ``run_dir/folder`` unless it is there already)."""
        v, m = self.cfg.val, self.cfg.model
        if not (v.every or v.at_start):
            return None
        from ..degrade.photo import parse_degradation
        from ..degrade.testsets import load_manifest, synthesise

        if v.set_dir:
            manifest = load_manifest(v.set_dir)
            if (manifest["scale"], manifest["setting"]) != (m.scale, m.setting):
                raise ValueError(f"val.set_dir {v.set_dir} is ×{manifest['scale']} setting {manifest['setting']}, "
                                 f"the model ×{m.scale} setting {m.setting}")
            return Path(v.set_dir)
        if not v.hr_dir:
            return None
        sources = self._val_sources()
        set_dir = self.run_dir / folder
        how = parse_degradation(degradation)
        want = {"scale": m.scale, "setting": m.setting, "noise": how.noise,
                "degradation": None if how.is_paper else how.spec, "sources": sorted(p.name for p in sources)}
        with contextlib.suppress(Exception):
            man = load_manifest(set_dir)
            have = {"scale": man["scale"], "setting": man["setting"], "noise": float(man["noise"]),
                    "degradation": man.get("degradation"), "sources": sorted(i["source"] for i in man["images"])}
            if have == want:
                return set_dir
        synthesise(sources, set_dir, m.setting, m.scale, how, seed=0, overwrite=True, progress=False)
        self._info(f"validation set: {len(sources)} images × 8 kernels from {v.hr_dir}, {how.spec} → {set_dir}")
        return set_dir

    def _val_sources(self) -> list[Path]:
        """The HR images of ``val.hr_dir`` that validation uses (``val.images``, ``val.max_images``)."""
        v = self.cfg.val
        if not Path(v.hr_dir).is_dir():
            raise FileNotFoundError(f"val.hr_dir {v.hr_dir}: no such folder")
        sources = list_images([v.hr_dir], recursive=False)
        if v.images:
            chosen = [p for p in sources if p.name in v.images or p.stem in v.images]
            found = {p.name for p in chosen} | {p.stem for p in chosen}
            missing = [n for n in v.images if n not in found]
            if missing:
                raise FileNotFoundError(f"val.images: {', '.join(missing)} not in {v.hr_dir}")
            sources = chosen
        if v.max_images:
            sources = sources[:v.max_images]
        if not sources:
            raise FileNotFoundError(f"val.hr_dir {v.hr_dir}: no images")
        return sources

    def _prepare_val_loss_batch(self) -> dict | None:
        v, d, m = self.cfg.val, self.cfg.data, self.cfg.model
        if not v.loss_samples or not v.hr_dir or not (v.every or v.at_start):
            return None
        try:
            pool = HRImagePool(self._val_sources(), d.lr_patch * m.scale, "pad", recursive=False,
                               cache_bytes=2 ** 40)
        except (ValueError, FileNotFoundError) as e:
            self._info(f"no validation loss: {e}")
            return None
        samples = TrainingSamples(pool, m.scale, m.setting, d.lr_patch, self.cfg.train.seed + _VAL_LOSS_SEED_OFFSET,
                                  False, False, False, d.photo)
        return samples.batch(0, range(v.loss_samples))

    def eval_model(self) -> nn.Module:
        """The weights that are validated and exported: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def validation_loss(self) -> float | None:
        if self._val_batch is None:
            return None
        model = self.eval_model()
        was_training = model.training
        model.eval()
        total, n = 0.0, len(self._val_batch["lr"])
        for i in range(0, n, self.cfg.train.batch):
            chunk = {k: x[i:i + self.cfg.train.batch].to(self.device) for k, x in self._val_batch.items()}
            loss, _ = self.objective.loss(self._forward(model, chunk), chunk, self.cfg.train.loss)
            total += float(loss) * len(chunk["lr"])
        model.train(was_training)
        return total / n

    def validate(self) -> dict:
        """Paper-protocol PSNR/SSIM (Y channel) on the validation set, plus the validation loss."""
        from ..inference.evaluate import evaluate
        from ..models import create_model

        step = self.step
        cpu_s = self.cpu_seconds()
        cpu0 = time.process_time()
        model = self.eval_model()
        was_training = model.training
        model.eval()
        # a non-blind model (USRNet) cannot run blind: it is validated with the true kernels
        res = evaluate(model, self.val_set, self.cfg.name or "kxnet", self.device, per_stage=self.cfg.val.per_stage,
                       progress=False, oracle=getattr(model, "needs_kernel", False)).summary()
        model.train(was_training)
        if self.bicubic_psnr is None:
            bic = evaluate(create_model("bicubic", scale=self.cfg.model.scale), self.val_set, "bicubic",
                           self.device, progress=False).summary()
            self.bicubic_psnr = bic["psnr"]
        record = {"kind": "val", "step": step, "psnr": res["psnr"], "ssim": res["ssim"],
                  "stage_psnr": res["stage_psnr"], "kernel_psnr": res["kernel_psnr"], "kernel_mae": res["kernel_mae"],
                  "kernel_l1_sum1": res["kernel_l1"], "cpu_s": round(cpu_s, 1),
                  "bicubic_psnr": self.bicubic_psnr, "pairs": res["pairs"], "loss": self.validation_loss()}
        if self.extra_val_sets:
            record["extra"] = {spec: self._score_extra(model, spec, set_dir) for spec, set_dir in self.extra_val_sets.items()}
        improved = self.best["psnr"] is None or res["psnr"] > self.best["psnr"]
        if improved:
            self.best = {"psnr": res["psnr"], "step": step}
            if self.cfg.checkpoint.keep_best:
                self.export(self.run_dir / "best.safetensors")
                atomic_write_json(self.run_dir / "best.json", record)
        record["best_psnr"] = self.best["psnr"]
        self.last_val = record
        self._append_metrics(record)
        self._scalars("val", {k: record[k] for k in ("psnr", "ssim", "kernel_psnr", "bicubic_psnr", "loss")
                              if record[k] is not None}, step)
        if self._writer is not None:
            for i, p in enumerate(record["stage_psnr"], 1):
                self._writer.add_scalar(f"val_stage/psnr_{i:02d}", p, step)
            self._writer.flush()
        self._cpu_val += time.process_time() - cpu0
        loss = f", loss {record['loss']:.5f}" if record["loss"] is not None else ""
        extra = "".join(f"; {spec}: {r['psnr']:.3f} (bicubic {r['bicubic_psnr']:.3f})"
                        for spec, r in record.get("extra", {}).items())
        self._info(f"step {step}: val PSNR {res['psnr']:.3f} dB SSIM {res['ssim']:.4f} (bicubic "
                   f"{self.bicubic_psnr:.3f} dB{loss}; best {self.best['psnr']:.3f} @ {self.best['step']}){extra}")
        return record

    def _score_extra(self, model: nn.Module, spec: str, set_dir: Path) -> dict:
        """PSNR/SSIM and kernel error on one of ``val.extra``'s sets, beside bicubic's PSNR."""
        from ..inference.evaluate import evaluate
        from ..models import create_model

        was_training = model.training
        model.eval()
        res = evaluate(model, set_dir, spec, self.device, progress=False,
                       oracle=getattr(model, "needs_kernel", False)).summary()
        model.train(was_training)
        if spec not in self._extra_bicubic:
            self._extra_bicubic[spec] = evaluate(create_model("bicubic", scale=self.cfg.model.scale), set_dir,
                                                 "bicubic", self.device, progress=False).summary()["psnr"]
        return {"psnr": res["psnr"], "ssim": res["ssim"], "kernel_l1_sum1": res["kernel_l1"],
                "bicubic_psnr": self._extra_bicubic[spec]}

    # ---------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "param_group_names": self._param_group_names(),
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

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step_{n}.{safetensors,state}`` (rank 0) and prune old ones."""
        if not self.is_main:
            return None
        stem = self.run_dir / "checkpoints" / checkpoint_stem(self.step)
        stem.parent.mkdir(parents=True, exist_ok=True)
        self.export(stem.with_suffix(".safetensors"))
        path = save_state(self.state_dict(), stem.with_suffix(".state"))
        prune_checkpoints(stem.parent, self.cfg.checkpoint.keep_last)
        if self._writer is not None:
            self._writer.flush()
        return path

    def export(self, path: str | os.PathLike, storage: str = "fp32") -> Path:
        """The validated weights (EMA if on) as a model file :func:`kxnet.models.load_model` reads."""
        from ..models import save_model

        meta = {"step": self.step, "recipe": self.cfg.name, "ema": self.ema is not None,
                "best_psnr": self.best["psnr"], "val_set": self.val_set.name if self.val_set else None}
        return save_model(self.eval_model(), path, storage=storage, extra_metadata=meta)

    # ------------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Flush logs, leave the process group we joined, restore torch's global settings."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._owns_process_group and dist.is_initialized():
            # a rank that tears gloo down while a peer still talks to it can abort (SIGABRT at exit)
            try:
                dist.barrier()
            except RuntimeError:
                pass  # a peer already failed; torchrun reports that one
            dist.destroy_process_group()
            self._owns_process_group = False
        threads, det, warn_only, bench = self._restore
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark = bench

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def train(config: Config, *, resume: str | os.PathLike | None = None, stop_at: int | None = None,
          progress: bool = True) -> dict:
    """Build a :class:`Trainer`, fit, close; returns the run summary."""
    with Trainer(config, resume=resume, progress=progress) as trainer:
        return trainer.fit(stop_at=stop_at)
