"""The benchmark protocol (KXNET.md §6): run a method over a ``kxnet synth`` set and score it.

A method is anything with the models' forward contract: ``model(lr)`` returns an object with
``sr`` (B×3×H×W), ``kernel`` (B×p×p or None) and ``stage_images`` (possibly empty). So a
registered parameter-free method (``bicubic``), a KXNet loaded from weights, or a baseline all
plug in the same way.
"""

from __future__ import annotations

import csv
import io as _io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..degrade.testsets import load_manifest
from ..io import atomic_write_bytes, atomic_write_json, from_tensor, read_image, to_uint8
from ..metrics import image_metrics, kernel_mae, kernel_psnr, lr_consistency_psnr


@dataclass
class PairResult:
    lr: str
    hr: str
    kernel_tag: str
    psnr: float
    ssim: float
    kernel_psnr: float | None = None
    kernel_mae: float | None = None
    lr_psnr: float | None = None
    stage_psnr: list[float] = field(default_factory=list)


@dataclass
class EvalResult:
    set: str
    method: str
    setting: int
    scale: int
    noise: float
    pairs: list[PairResult]

    def mean(self, key: str) -> float | None:
        values = [getattr(p, key) for p in self.pairs if getattr(p, key) is not None]
        return float(np.mean(values)) if values else None

    def stage_curve(self) -> list[float]:
        curves = [p.stage_psnr for p in self.pairs if p.stage_psnr]
        return [float(v) for v in np.mean(curves, axis=0)] if curves else []

    def summary(self) -> dict:
        return {
            "set": self.set, "method": self.method, "setting": self.setting, "scale": self.scale,
            "noise": self.noise, "pairs": len(self.pairs),
            "psnr": self.mean("psnr"), "ssim": self.mean("ssim"),
            "kernel_psnr": self.mean("kernel_psnr"), "kernel_mae": self.mean("kernel_mae"),
            "lr_psnr": self.mean("lr_psnr"), "stage_psnr": self.stage_curve(),
        }

    def to_json(self) -> dict:
        return {"summary": self.summary(), "per_image": [asdict(p) for p in self.pairs]}

    def to_csv(self) -> str:
        buf = _io.StringIO()
        fields = ["lr", "hr", "kernel_tag", "psnr", "ssim", "kernel_psnr", "kernel_mae", "lr_psnr"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for p in self.pairs:
            writer.writerow(asdict(p))
        return buf.getvalue()


@torch.inference_mode()
def evaluate(model, set_dir: str | Path, method_name: str = "", device: str | torch.device = "cpu",
             per_stage: bool = False, limit: int | None = None, progress: bool = True) -> EvalResult:
    """Score ``model`` on every LR/HR pair of the set, the paper's way (§6.1–6.2)."""
    set_dir = Path(set_dir)
    manifest = load_manifest(set_dir)
    scale = manifest["scale"]
    pairs = manifest["pairs"][:limit] if limit else manifest["pairs"]
    hr_cache: dict[str, np.ndarray] = {}
    results = []
    for pair in tqdm(pairs, desc=f"eval {method_name or 'model'} on {set_dir.name}", unit="img", disable=not progress):
        lr_u8 = to_uint8(read_image(set_dir / pair["lr"]).rgb)
        if pair["hr"] not in hr_cache:
            hr_cache[pair["hr"]] = to_uint8(read_image(set_dir / pair["hr"]).rgb)
        hr_u8 = hr_cache[pair["hr"]]
        lr = torch.from_numpy(lr_u8).permute(2, 0, 1)[None].float().div(255.0).to(device)
        out = model(lr)
        sr_u8 = to_uint8(from_tensor(out.sr[0]))
        m = image_metrics(sr_u8, hr_u8, scale)
        res = PairResult(pair["lr"], pair["hr"], pair["kernel_tag"], m.psnr, m.ssim)
        if getattr(out, "kernel", None) is not None:
            k_est = out.kernel[0].float().cpu().numpy()
            k_gt = np.load(set_dir / pair["kernel"])
            res.kernel_psnr = float(kernel_psnr(k_est, k_gt))
            res.kernel_mae = float(kernel_mae(k_est, k_gt))
            res.lr_psnr = float(lr_consistency_psnr(lr_u8, sr_u8, k_est, scale))
        if per_stage and getattr(out, "stage_images", None):
            res.stage_psnr = [float(image_metrics(to_uint8(from_tensor(x[0])), hr_u8, scale).psnr) for x in out.stage_images]
        results.append(res)
    return EvalResult(set_dir.name, method_name, manifest["setting"], scale, manifest["noise"], results)


def write_reports(result: EvalResult, json_path: str | Path | None = None, csv_path: str | Path | None = None) -> None:
    if json_path:
        atomic_write_json(json_path, result.to_json())
    if csv_path:
        atomic_write_bytes(csv_path, result.to_csv().encode())
