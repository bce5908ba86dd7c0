"""``kxnet benchmark``: measure models with the paper's protocol, beside the paper's numbers.

For every model: regenerate the paper's test sets from the HR benchmarks (setting 1: noise-free
Gaussian8; setting 2: the 8 anisotropic kernels), score the model and bicubic on each, and
write one table with our PSNR/SSIM, bicubic, the paper's cell for the method, the kernel
estimate's accuracy and (``oracle``) the same model run non-blind with the true kernels. Also
the per-stage PSNR curve (the paper's Table 3 analogue), PSNR against kernel width (Fig. 5b
analogue) and a picture of estimated against true kernels.

Beyond the paper, cells with degradations photos have (``5+jpeg75``: σn 5 then JPEG at
quality 75; ``cam+jpeg80``: camera noise then JPEG 80; :data:`PHOTO_CELLS`, docs/photo.md) are
measured the same way, bicubic beside them, and marked as such.

Cells are cached under ``work/cells/<weights fingerprint>/`` as they finish, so an interrupted
or extended benchmark recomputes nothing it already has (the sets are deterministic and the
fingerprint is of the weights themselves). Sets are cached under ``work/sets``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..degrade import degrade
from ..degrade.photo import parse_degradation
from ..degrade.testsets import load_hr, load_manifest, synthesise
from ..io import atomic_write_bytes, atomic_write_json, from_tensor, list_images, to_uint8
from ..kernels import initial_kernel, isotropic_gaussian
from ..metrics import image_metrics, kernel_l1
from ..models import ResolvedModel, create_model, resolve
from ..models.loading import weights_fingerprint
from ..models.zoo import fast_backend_close
from .backends import choose, openvino_bf16_possible
from .evaluate import EvalResult, evaluate
from .paper import paper_value

__all__ = ["DEFAULT_CELLS", "PHOTO_CELLS", "Cell", "benchmark_model", "kernel_width_sweep", "markdown_table",
           "run_benchmark", "weights_fingerprint"]

# The cells the issue tracker asks for: complete sets; noise only where the paper's protocol has it.
DEFAULT_CELLS = {
    1: {"Set5": (0.0,), "Set14": (0.0,), "B100": (0.0,)},
    2: {"Set5": (0.0, 5.0, 15.0), "Set14": (0.0, 5.0, 15.0), "B100": (0.0,)},
}
# Beyond the paper (setting 2 only): σn 5 then JPEG at the qualities photos are shared at, and a
# camera's noise before JPEG (docs/photo.md).
PHOTO_CELLS = {"Set5": ("5+jpeg75", "5+jpeg90", "cam+jpeg80"), "Set14": ("5+jpeg75", "5+jpeg90", "cam+jpeg80")}
_KERNEL_FIELDS = ("kernel_psnr", "kernel_l1", "sigma_major_err", "sigma_minor_err", "theta_err_deg")
# Bump when what a cell measures changes (evaluation, metrics, synthesis): cached cells of an
# older protocol are then recomputed instead of reused.
PROTOCOL_VERSION = 2


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
    paper: tuple[float, float] | None            # the method's published cell (complete sets only)
    paper_bicubic: tuple[float, float] | None
    method: str = "KXNet"
    stage_psnr: list[float] = field(default_factory=list)
    kernel: dict = field(default_factory=dict)  # kernel_psnr, kernel_l1, initial_kernel_l1, fit errors, order
    oracle_psnr: float | None = None             # non-blind with the true kernel
    oracle_ssim: float | None = None
    seconds: float | None = None
    full: bool = True                            # every image of the set (only then is a paper cell comparable)
    degradation: str = ""                        # one beyond the paper ("5+jpeg75"); "" for the paper's
    backend: str = "torch"                       # what ran the network: torch, or openvino-bf16 (docs/speed.md)

    @property
    def key(self) -> str:
        extra = parse_degradation(self.degradation).extra_tag if self.degradation else ""
        return f"{self.set}/setting{self.setting}/x{self.scale}/noise{self.noise:g}" + (f"_{extra}" if extra else "")

    @property
    def label(self) -> str:
        """The σn column: the noise level, or the degradation beyond the paper."""
        return self.degradation or f"{self.noise:g}"


def _files_tag(paths: list[Path]) -> str:
    """8 hex digits of the chosen HR files' names and bytes: sets built from other images
    (another --data, other files) never share a cache entry."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:8]


def _slug(name: str) -> str:
    """A file-name part for a model name or weights path (``runs/x/best.safetensors`` → ``best``)."""
    base = Path(name).name
    return Path(base).stem if Path(base).suffix in (".safetensors", ".pth", ".pt") else base


def _cached_eval(cache: Path | None, name: str, fn, group=None) -> dict:
    """``fn()``'s summary (and estimated kernels), from ``cache/name.json`` when it is there;
    written by rank 0 only (every process computes it together and gets the same)."""
    path = cache / f"{name}.json" if cache else None
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    res: EvalResult = fn()
    out = {"summary": res.summary(), "seconds": round(time.perf_counter() - t0, 1),
           "kernels": [p.estimated_kernel.tolist() if p.estimated_kernel is not None else None for p in res.pairs],
           "pairs": [{"hr": p.hr, "kernel_tag": p.kernel_tag} for p in res.pairs]}
    if path is not None and (group is None or group.is_main):
        atomic_write_json(path, out)
    return out


def _initial_kernel_l1(set_dir: Path) -> float:
    """Mean unit-sum L1 of K⁰ (docs/protocol.md, "Kernels": what an estimator that ignores the image returns)."""
    manifest = load_manifest(set_dir)
    k0 = initial_kernel(manifest["kernel_size"]).numpy()
    return float(np.mean([kernel_l1(k0, np.load(set_dir / p["kernel"])) for p in manifest["pairs"]]))


def benchmark_model(model: ResolvedModel, name: str, data_root: Path, work: Path, cells: dict[str, tuple],
                    max_images: dict[str, int], device: str = "cpu", oracle: bool = False,
                    progress: bool = True, kernel_samples: dict | None = None, group=None,
                    backend: str = "torch") -> list[Cell]:
    """Score ``model`` on ``cells`` (set name → noise levels, or degradations beyond the paper
    such as ``"5+jpeg75"``); ``kernel_samples`` (a dict) receives the estimated kernels of each
    set's first noise-free cell for :func:`plot_kernel_estimates`. Under ``group`` (several
    processes) the pairs of each cell are shared out and the cells are the same as one process
    makes; rank 0 makes the sets and writes the cache. ``backend`` is what runs the network
    (:func:`fast_backend_allowed` says when ``auto`` may take OpenVINO); cells of another
    backend than PyTorch are cached apart and say which ran them."""
    from ..parallel import Group

    group = group or Group(device)
    model = resolve(model, device=device)
    scale, setting, arch = model.scale, model.config.setting, model.arch
    if backend == "auto":
        backend = "openvino" if fast_backend_allowed(model, group.device) else "torch"
    fast = choose(model, backend, group.device) if backend != "torch" else None
    runner = fast.module if fast else model.runner
    engine = "torch" if fast is None else f"{fast.name}-{fast.precision}"
    recipe = getattr(runner, "int8", None)     # int8 cells are cached per recipe
    engine_tag = engine if recipe is None else f"{engine}-{recipe.digest}"
    bicubic = create_model("bicubic", scale=scale)
    cache = work / "cells" / weights_fingerprint(model.model)
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for set_name, degradations in cells.items():
        images = list_images([data_root / set_name], recursive=False)
        chosen = images[:max_images.get(set_name) or None]
        n_images, full = len(chosen), len(chosen) == len(images)
        for spec in degradations:
            how = parse_degradation(spec)
            noise, extra = how.noise, ("_" + how.extra_tag if not how.is_paper else "")
            tag = f"{set_name}_{n_images}_{_files_tag(chosen)}"
            set_dir = work / "sets" / f"setting{setting}" / f"x{scale}" / f"noise{noise:g}{extra}" / tag
            if group.is_main and not (set_dir / "manifest.json").is_file():
                synthesise(chosen, set_dir, setting, scale, how, seed=0, overwrite=True, progress=False)
            group.barrier()
            stem = f"v{PROTOCOL_VERSION}_{tag}_noise{noise:g}{extra}" + ("" if engine == "torch" else f"_{engine_tag}")

            def run(as_oracle: bool, set_dir=set_dir):
                return evaluate(runner, set_dir, name, device, per_stage=not as_oracle,
                                progress=progress and group.is_main, oracle=as_oracle, keep_kernels=not as_oracle,
                                arch=arch, group=group)

            # a method that is not blind (USRNet alone) has only its oracle row
            ours = _cached_eval(cache, stem + "_oracle" * (not arch.blind), lambda: run(not arch.blind), group)
            bic = evaluate(bicubic, set_dir, "bicubic", "cpu", progress=False, group=group).summary()
            s = ours["summary"]
            paper = full and how.is_paper
            cell = Cell(name, set_name, setting, scale, noise, n_images, s["pairs"], s["psnr"], s["ssim"],
                        bic["psnr"], bic["ssim"],
                        paper_value(arch.label, setting, noise, scale, set_name) if paper else None,
                        paper_value("Bicubic", setting, noise, scale, set_name) if paper else None,
                        arch.label, s["stage_psnr"], seconds=ours["seconds"], full=full,
                        degradation="" if how.is_paper else how.spec, backend=engine)
            if s.get("kernel_l1") is not None:
                cell.kernel = {k: s[k] for k in _KERNEL_FIELDS}
                cell.kernel["initial_kernel_l1"] = _initial_kernel_l1(set_dir)
                cell.kernel["width_order"] = s.get("width_order_violations")
                if kernel_samples is not None and noise == 0 and how.is_paper and set_name not in kernel_samples:
                    kernel_samples[set_name] = {"set_dir": str(set_dir), "pairs": ours["pairs"],
                                                "kernels": ours["kernels"]}
            if not arch.blind:
                cell.oracle_psnr, cell.oracle_ssim, cell.method = cell.psnr, cell.ssim, f"{arch.label} (non-blind)"
            elif oracle:
                o = _cached_eval(cache, stem + "_oracle", lambda: run(True), group)
                cell.oracle_psnr, cell.oracle_ssim = o["summary"]["psnr"], o["summary"]["ssim"]
            out.append(cell)
    return out


def fast_backend_allowed(model: ResolvedModel, device: torch.device | str = "cpu") -> bool:
    """Whether ``auto`` may benchmark ``model`` on OpenVINO (bf16): only a shipped model whose
    manifest entry records, for every complete cell measured both ways, a PSNR change within
    ``FAST_BACKEND_COST_DB`` (:func:`~kxnet.models.zoo.fast_backend_close` of its
    ``notes["fast_backend_cost_db"]``, cell → Δ dB), where ``auto`` would choose OpenVINO in bf16
    on ``device``."""

    costs = model.entry.notes.get("fast_backend_cost_db") if model.entry is not None else None
    return fast_backend_close(costs) and openvino_bf16_possible(model, device)


def kernel_width_sweep(model, hr_dir: Path, sigmas: np.ndarray, max_images: int | None = None,
                       device: str = "cpu") -> dict:
    """PSNR of the model and of bicubic against the width of an isotropic kernel (noise-free)."""
    model = resolve(model, device=device)
    scale, p = model.scale, model.config.kernel_size
    runner = model.runner
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
                for method, acc in ((runner, a), (bicubic, b)):
                    sr_u8 = to_uint8(from_tensor(method(lr.to(device)).sr[0]))
                    acc.append(image_metrics(sr_u8, hr_u8, scale).psnr)
            ours.append(float(np.mean(a)))
            base.append(float(np.mean(b)))
    return {"sigma": [float(s) for s in sigmas], "model": ours, "bicubic": base, "images": len(hrs)}


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown_table(cells: list[Cell]) -> str:
    """One row per cell: ours, bicubic, the oracle, the kernel estimate and the paper's cell.

    Kernel columns: unit-sum L1 of the estimate (of K⁰ in brackets: 0 = exact, 2 = disjoint),
    errors of the Gaussian fit's widths (major / minor, HR px) and direction, and how many
    narrower-than comparisons between the kernels of one image the estimate gets wrong.
    """
    lines = ["| model | set | σn | PSNR / SSIM | bicubic | Δ bicubic | oracle (true K) | kernel L1 (K⁰) "
             "| σ err | θ err | order wrong | paper | gap to paper |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        set_label = c.set if c.full else f"{c.set} (first {c.images})"
        paper = f"{c.method} {c.paper[0]:.2f} / {c.paper[1]:.4f}" if c.paper else "–"
        gap = f"{c.psnr - c.paper[0]:+.2f}" if c.paper else "–"
        oracle = f"{c.oracle_psnr:.2f} / {c.oracle_ssim:.4f}" if c.oracle_psnr is not None else "–"
        k = c.kernel
        kl1 = f"{k['kernel_l1']:.3f} ({k['initial_kernel_l1']:.3f})" if k else "–"
        sig = f"{k['sigma_major_err']:.2f} / {k['sigma_minor_err']:.2f}" if k else "–"
        theta = f"{_fmt(k.get('theta_err_deg'), '.1f')}°" if k else "–"
        order = k.get("width_order") if k else None
        order_s = f"{order['failed']}/{order['compared']}" if order else "–"
        engine = "" if c.backend == "torch" else f" ({c.backend})"
        lines.append(f"| {c.model}{engine} | {set_label} | {c.label} | {c.psnr:.2f} / {c.ssim:.4f} | "
                     f"{c.bicubic_psnr:.2f} / {c.bicubic_ssim:.4f} | {c.psnr - c.bicubic_psnr:+.2f} | {oracle} | "
                     f"{kl1} | {sig} | {theta} | {order_s} | {paper} | {gap} |")
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


def kernel_label(tag: str) -> str:
    """A kernel tag as a column title: the release's tags keep Python's float repr
    (``sig2.4000000000000004``), which a title need not."""
    short = re.sub(r"\d+\.\d+", lambda m: f"{float(m.group()):g}", tag)
    return short.replace("_theta", "\nθ ") + "°" if "_theta" in short else short


def plot_kernel_estimates(sample: dict, path: Path, title: str) -> None:
    """Columns: the set's benchmark kernels; top row the truth, then one row per image with the
    estimate from that image. Each kernel is shown on its own colour scale (shape, not height)."""
    plt = _pyplot()
    set_dir = Path(sample["set_dir"])
    manifest = load_manifest(set_dir)
    tags = list(dict.fromkeys(p["kernel_tag"] for p in manifest["pairs"]))
    images = list(dict.fromkeys(p["hr"] for p in manifest["pairs"]))
    truth = {p["kernel_tag"]: np.load(set_dir / p["kernel"]) for p in manifest["pairs"]}
    est = {(p["hr"], p["kernel_tag"]): k for p, k in zip(sample["pairs"], sample["kernels"]) if k is not None}
    rows = 1 + len(images)
    fig, axes = plt.subplots(rows, len(tags), figsize=(1.2 * len(tags), 1.25 * rows), squeeze=False)
    for j, tag in enumerate(tags):
        axes[0, j].set_title(kernel_label(tag), fontsize=6)
        for i, (row_label, k) in enumerate([("true", truth[tag])] + [(Path(h).stem, est.get((h, tag))) for h in images]):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if k is not None:
                ax.imshow(np.asarray(k), cmap="magma", interpolation="nearest")
            if j == 0:
                ax.set_ylabel(row_label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save_figure(fig, path)
    plt.close(fig)


def run_benchmark(models: list[tuple[str, ResolvedModel]], data_root: Path, out: Path, work: Path,
                  cells: dict[int, dict[str, tuple[float, ...]]] | None = None, max_images: dict[str, int] | None = None,
                  device: str = "cpu", oracle: bool = False, sweep_set: str | None = "Set5",
                  sweep_images: int | None = 5, progress: bool = True, group=None,
                  backend: str = "torch") -> dict | None:
    """Benchmark every model; ``cells`` maps setting → set → noise levels (default
    :data:`DEFAULT_CELLS`). Writes results.md, results.json and the plots to ``out`` and
    returns the report; under ``group`` (several processes, e.g. ``torchrun``) the cells are
    computed together and rank 0 writes them (the others return None)."""
    from ..parallel import Group

    group = group or Group(device)
    cells = cells or DEFAULT_CELLS
    t0 = time.time()
    all_cells, curves, curve_base, sweeps = [], {}, {}, {}
    for name, model in models:
        samples: dict = {}
        model = resolve(model, device=group.device)
        plan = cells[model.config.setting]
        model_cells = benchmark_model(model, name, data_root, work, plan, max_images or {}, group.device, oracle,
                                      progress, samples, group, backend)
        all_cells += model_cells
        if not model_cells or not group.is_main:
            continue
        ref = next((c for c in model_cells if c.noise == 0 and not c.degradation and c.set == "Set14"), model_cells[0])
        curves[f"{name} ({ref.set}, σn 0)"] = ref.stage_psnr
        curve_base[f"{name} ({ref.set}, σn 0)"] = ref.bicubic_psnr
        out.mkdir(parents=True, exist_ok=True)
        for set_name, sample in samples.items():
            plot_kernel_estimates(sample, out / f"kernels_{_slug(name)}_{set_name}.png",
                                  f"{name}: estimated (rows 2…) against true kernels (row 1), {set_name}, σn 0")
            break  # one picture per model: the first set's
        if sweep_set and model.arch.blind:  # the sweep runs blind (rank 0 alone: a few images)
            sweeps[name] = kernel_width_sweep(model, data_root / sweep_set, np.linspace(0.6, 4.6, 9), sweep_images,
                                              group.device)
    if not group.is_main:
        return None
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(all_cells)
    atomic_write_bytes(out / "results.md", table.encode())
    report = {"cells": [dict(asdict(c), key=c.key) for c in all_cells], "kernel_width": sweeps,
              "seconds": round(time.time() - t0, 1), "device": str(group.device), "processes": group.world_size}
    atomic_write_json(out / "results.json", report)
    if any(curves.values()):
        plot_stage_curves(curves, curve_base, out / "stage_psnr.png")
    if sweeps:
        plot_kernel_width(sweeps, out / "kernel_width.png")
    return report
