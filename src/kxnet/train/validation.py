"""Validation during training: the sets, the scores, and the best step so far.

The validation set is ``val.hr_dir``'s images (``val.images``, ``val.max_images``) degraded by
the setting's 8 benchmark kernels and ``val.noise`` — or ``val.degradation``, one beyond the
paper — built once into the run folder by the benchmark's own synthesis (or ``val.set_dir``,
a ``kxnet synth`` set). It is scored with the paper's metric, per stage, next to bicubic on the
same LR images; ``val.extra`` adds more degradations, logged beside it and never ranked. A
validation loss on fixed random patches of the same images (``val.loss_samples``) is logged too.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn as nn

from ..degrade.photo import parse_degradation
from ..degrade.testsets import load_manifest, synthesise
from ..inference.evaluate import evaluate
from ..io import list_images
from ..models import architecture_of, create_model
from .config import Config
from .data import HRImagePool, TrainingSamples
from .runlog import info

__all__ = ["Validator"]

_LOSS_SEED_OFFSET = 1_000_003   # the validation patches' seed: unrelated to any training batch's


class Validator:
    """Builds the sets of a run (rank 0 only) and scores models on them. ``best`` (``psnr``,
    ``step``) is the trainer's dict, updated in place when a validation beats it."""

    def __init__(self, cfg: Config, run_dir: Path, device: torch.device, best: dict | None = None,
                 bicubic_psnr: float | None = None):
        self.cfg, self.run_dir, self.device = cfg, run_dir, device
        self.best = best if best is not None else {"psnr": None, "step": None}
        v = cfg.val
        self.set_dir = self._prepare(v.degradation or v.noise, "val_set")
        self.extra = {}
        if self.set_dir is not None and v.set_dir is None:
            self.extra = {spec: self._prepare(spec, f"val_set_{i + 1}") for i, spec in enumerate(v.extra)}
        self.loss_batch = self._loss_batch()
        self.bicubic: dict[str, float] = {} if bicubic_psnr is None else {"": bicubic_psnr}  # per set ("" the main)

    # ------------------------------------------------------------------------------ sets

    def _prepare(self, degradation, folder: str) -> Path | None:
        v, m = self.cfg.val, self.cfg.model
        if not (v.every or v.at_start):
            return None
        if v.set_dir:
            manifest = load_manifest(v.set_dir)
            if (manifest["scale"], manifest["setting"]) != (m.scale, m.setting):
                raise ValueError(f"val.set_dir {v.set_dir} is ×{manifest['scale']} setting {manifest['setting']}, "
                                 f"the model ×{m.scale} setting {m.setting}")
            return Path(v.set_dir)
        if not v.hr_dir:
            return None
        sources = self.sources()
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
        info(f"validation set: {len(sources)} images × 8 kernels from {v.hr_dir}, {how.spec} → {set_dir}")
        return set_dir

    def sources(self) -> list[Path]:
        """The HR images of ``val.hr_dir`` that validation uses."""
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

    def _loss_batch(self) -> dict | None:
        v, d, m = self.cfg.val, self.cfg.data, self.cfg.model
        if not v.loss_samples or not v.hr_dir or not (v.every or v.at_start):
            return None
        try:
            pool = HRImagePool(self.sources(), d.lr_patch * m.scale, "pad", recursive=False, cache_bytes=2 ** 40)
        except (ValueError, FileNotFoundError) as e:
            info(f"no validation loss: {e}")
            return None
        samples = TrainingSamples(pool, m.scale, m.setting, d.lr_patch, self.cfg.train.seed + _LOSS_SEED_OFFSET,
                                  False, False, False, d.photo)
        return samples.batch(0, range(v.loss_samples))

    # ---------------------------------------------------------------------------- scores

    @torch.no_grad()
    def loss(self, model: nn.Module, objective, forward) -> float | None:
        """The training objective on the fixed validation patches."""
        if self.loss_batch is None:
            return None
        total, n, batch = 0.0, len(self.loss_batch["lr"]), self.cfg.train.batch
        for i in range(0, n, batch):
            chunk = {k: x[i:i + batch].to(self.device) for k, x in self.loss_batch.items()}
            value, _ = objective.loss(forward(model, chunk), chunk, self.cfg.train.loss)
            total += float(value) * len(chunk["lr"])
        return total / n

    def _bicubic(self, key: str, set_dir: Path) -> float:
        if key not in self.bicubic:
            bicubic = create_model("bicubic", scale=self.cfg.model.scale)
            self.bicubic[key] = evaluate(bicubic, set_dir, "bicubic", self.device, progress=False).summary()["psnr"]
        return self.bicubic[key]

    def score(self, model: nn.Module, objective, forward) -> dict:
        """The validation record of ``model`` (eval mode for the call): the main set's PSNR, SSIM,
        per-stage PSNR and kernel errors beside bicubic, the loss, and each extra set's scores."""
        was_training = model.training
        model.eval()
        try:
            # a method that is not blind (USRNet) is validated with the true kernels
            oracle = not architecture_of(model).blind
            res = evaluate(model, self.set_dir, self.cfg.name or "kxnet", self.device,
                           per_stage=self.cfg.val.per_stage, progress=False, oracle=oracle).summary()
            record = {"psnr": res["psnr"], "ssim": res["ssim"], "stage_psnr": res["stage_psnr"],
                      "kernel_psnr": res["kernel_psnr"], "kernel_mae": res["kernel_mae"],
                      "kernel_l1_sum1": res["kernel_l1"], "bicubic_psnr": self._bicubic("", self.set_dir),
                      "pairs": res["pairs"], "loss": self.loss(model, objective, forward)}
            if self.extra:
                record["extra"] = {}
                for spec, set_dir in self.extra.items():
                    r = evaluate(model, set_dir, spec, self.device, progress=False, oracle=oracle).summary()
                    record["extra"][spec] = {"psnr": r["psnr"], "ssim": r["ssim"], "kernel_l1_sum1": r["kernel_l1"],
                                             "bicubic_psnr": self._bicubic(spec, set_dir)}
        finally:
            model.train(was_training)
        return record

    def validate(self, model: nn.Module, step: int, cpu_s: float, objective, forward) -> tuple[dict, bool]:
        """The record of step ``step`` (:meth:`score` with the step, the CPU time spent training
        and the best PSNR so far) and whether it is the new best."""
        record = {"kind": "val", "step": step, **self.score(model, objective, forward), "cpu_s": round(cpu_s, 1)}
        improved = self.best["psnr"] is None or record["psnr"] > self.best["psnr"]
        if improved:
            self.best.update(psnr=record["psnr"], step=step)
        record["best_psnr"] = self.best["psnr"]
        return record, improved

    def describe(self, record: dict) -> str:
        loss = f", loss {record['loss']:.5f}" if record["loss"] is not None else ""
        extra = "".join(f"; {spec}: {r['psnr']:.3f} (bicubic {r['bicubic_psnr']:.3f})"
                        for spec, r in record.get("extra", {}).items())
        return (f"step {record['step']}: val PSNR {record['psnr']:.3f} dB SSIM {record['ssim']:.4f} (bicubic "
                f"{record['bicubic_psnr']:.3f} dB{loss}; best {self.best['psnr']:.3f} @ {self.best['step']}){extra}")
