"""``kxnet benchmark``: measure models with the paper's protocol, beside the paper's numbers.

For every model: regenerate the paper's test sets from the HR benchmarks (setting 1: noise-free
Gaussian8; setting 2: the 8 anisotropic kernels at σn = 0, 5, 15), score the model and bicubic
on each, and write one table with our PSNR/SSIM, the paper's KXNet cell, bicubic and the gaps.
Also the per-stage PSNR curve (the paper's Table 3 analogue) and PSNR against kernel width
(Fig. 5b analogue) as PNG.

Sets are cached under ``work`` (they are deterministic, so a cached set is the same set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..degrade import degrade
from ..degrade.testsets import load_hr, synthesise
from ..io import atomic_write_bytes, atomic_write_json, from_tensor, list_images, to_uint8
from ..kernels import isotropic_gaussian
from ..metrics import image_metrics
from ..models import create_model
from .evaluate import evaluate
from .paper import paper_value

NOISE_LEVELS = {1: (0.0,), 2: (0.0, 5.0, 15.0)}


@dataclass
class Cell:
    model: str
    set: str
    setting: int
    scale: int
    noise: float
    images: int
    pairs: int
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float
    paper_kxnet: tuple[float, float] | None
    paper_bicubic: tuple[float, float] | None
    stage_psnr: list[float] = field(default_factory=list)
    kernel_psnr: float | None = None
    full: bool = True  # every image of the set (only then is a paper cell comparable)

    @property
    def key(self) -> str:
        return f"{self.set}/setting{self.setting}/x{self.scale}/noise{self.noise:g}"


def benchmark_model(model, name: str, data_root: Path, work: Path, sets: list[str], max_images: dict[str, int],
                    device: str = "cpu", noise_levels: tuple[float, ...] | None = None,
                    progress: bool = True) -> list[Cell]:
    scale, setting = model.config.scale, model.config.setting
    bicubic = create_model("bicubic", scale=scale)
    cells = []
    for set_name in sets:
        images = list_images([data_root / set_name], recursive=False)
        chosen = images[:max_images.get(set_name) or None]
        n_images, full = len(chosen), len(chosen) == len(images)
        for noise in noise_levels or NOISE_LEVELS[setting]:
            set_dir = work / "sets" / f"setting{setting}" / f"x{scale}" / f"noise{noise:g}" / f"{set_name}_{n_images}"
            if not (set_dir / "manifest.json").is_file():
                synthesise(chosen, set_dir, setting, scale, noise, seed=0, overwrite=True, progress=False)
            ours = evaluate(model, set_dir, name, device, per_stage=True, progress=progress).summary()
            bic = evaluate(bicubic, set_dir, "bicubic", "cpu", progress=False).summary()
            cells.append(Cell(
                name, set_name, setting, scale, noise, n_images, ours["pairs"], ours["psnr"], ours["ssim"],
                bic["psnr"], bic["ssim"],
                paper_value("KXNet", setting, noise, scale, set_name) if full else None,
                paper_value("Bicubic", setting, noise, scale, set_name) if full else None,
                ours["stage_psnr"], ours["kernel_psnr"], full))
    return cells


def kernel_width_sweep(model, hr_dir: Path, sigmas: np.ndarray, max_images: int | None = None,
                       device: str = "cpu") -> dict:
    """PSNR of the model and of bicubic against the width of an isotropic kernel (noise-free)."""
    scale, p = model.config.scale, model.config.kernel_size
    paths = list_images([hr_dir], recursive=False)[:max_images]
    hrs = [load_hr(f, scale) for f in paths]
    bicubic = create_model("bicubic", scale=scale)
    ours, base = [], []
    with torch.inference_mode():
        for sigma in tqdm(sigmas, desc="kernel width sweep", unit="σ"):
            k = isotropic_gaussian(p, float(sigma))
            a, b = [], []
            for hr in hrs:
                lr = degrade(hr, k, scale)[None]
                hr_u8 = to_uint8(from_tensor(hr))
                for method, acc in ((model, a), (bicubic, b)):
                    sr_u8 = to_uint8(from_tensor(method(lr.to(device)).sr[0]))
                    acc.append(image_metrics(sr_u8, hr_u8, scale).psnr)
            ours.append(float(np.mean(a)))
            base.append(float(np.mean(b)))
    return {"sigma": [float(s) for s in sigmas], "model": ours, "bicubic": base, "images": len(hrs)}


def markdown_table(cells: list[Cell]) -> str:
    lines = ["| model | set | setting | scale | σn | ours PSNR / SSIM | bicubic | Δ vs bicubic | paper KXNet | gap to paper |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        set_label = c.set if c.full else f"{c.set} (first {c.images})"
        paper = f"{c.paper_kxnet[0]:.2f} / {c.paper_kxnet[1]:.4f}" if c.paper_kxnet else "–"
        gap = f"{c.psnr - c.paper_kxnet[0]:+.2f}" if c.paper_kxnet else "–"
        lines.append(f"| {c.model} | {set_label} | {c.setting} | ×{c.scale} | {c.noise:g} | {c.psnr:.2f} / {c.ssim:.4f} | "
                     f"{c.bicubic_psnr:.2f} / {c.bicubic_ssim:.4f} | {c.psnr - c.bicubic_psnr:+.2f} | {paper} | {gap} |")
    return "\n".join(lines) + "\n"


def _save_figure(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("the benchmark plots need matplotlib: pip install 'kxnet[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_stage_curves(curves: dict[str, list[float]], bicubic: dict[str, float], path: Path,
                      title: str = "PSNR after each stage") -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot(range(0, len(curve) + 1), [bicubic[label]] + list(curve), marker="o", label=label)
    ax.set_xlabel("stage (0 = bicubic X⁰)")
    ax.set_ylabel("PSNR (dB, Y)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_figure(fig, path)
    plt.close(fig)


def plot_kernel_width(sweeps: dict[str, dict], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, s in sweeps.items():
        line, = ax.plot(s["sigma"], s["model"], marker="o", label=label)
        ax.plot(s["sigma"], s["bicubic"], linestyle="--", color=line.get_color(), label=f"bicubic, same LR as {label}")
    ax.set_xlabel("isotropic kernel width σ (HR px)")
    ax.set_ylabel("PSNR (dB, Y)")
    ax.set_title("PSNR against kernel width (noise-free)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_figure(fig, path)
    plt.close(fig)


def run_benchmark(models: list[tuple[str, torch.nn.Module]], data_root: Path, out: Path, work: Path,
                  sets: list[str], max_images: dict[str, int], device: str = "cpu",
                  noise_levels: tuple[float, ...] | None = None, sweep_set: str | None = "Set5", sweep_images: int | None = 5) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    all_cells, curves, curve_base, sweeps = [], {}, {}, {}
    for name, model in models:
        cells = benchmark_model(model, name, data_root, work, sets, max_images, device, noise_levels)
        all_cells += cells
        ref = next((c for c in cells if c.noise == 0 and c.set == "Set14"), cells[0])
        curves[f"{name} ({ref.set}, σn 0)"] = ref.stage_psnr
        curve_base[f"{name} ({ref.set}, σn 0)"] = ref.bicubic_psnr
        if sweep_set:
            sweeps[name] = kernel_width_sweep(model, data_root / sweep_set, np.linspace(0.6, 4.6, 9), sweep_images, device)
    table = markdown_table(all_cells)
    atomic_write_bytes(out / "results.md", table.encode())
    report = {"cells": [dict(c.__dict__, key=c.key) for c in all_cells], "kernel_width": sweeps,
              "seconds": round(time.time() - t0, 1), "device": str(device)}
    atomic_write_json(out / "results.json", report)
    plot_stage_curves(curves, curve_base, out / "stage_psnr.png")
    if sweeps:
        plot_kernel_width(sweeps, out / "kernel_width.png")
    return report
