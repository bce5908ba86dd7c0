"""CPU inference backends for the shipped KXNets, side by side: speed and what bf16 costs.

    python benchmarks/backend_speed.py                                # 96 and 256 LR, 1 and 2 threads
    python benchmarks/backend_speed.py --threads 1 --sizes 96 256 512 --repeats 5

Backends (same weights):

* ``torch`` — the plain :class:`~kxnet.models.KXNet` module;
* ``optimize`` — :func:`kxnet.models.fast.optimize` (fused oneDNN prox nets), the baseline;
* ``torch bf16`` — the plain module under ``torch.autocast("cpu", bfloat16)``. The
  optimize()d model runs under autocast too, but its fused prox convolutions are not
  autocast ops and stay float32, so it is not a bf16 path and is not listed;
* ``OpenVINO f32`` / ``OpenVINO <auto>`` — :class:`kxnet.inference.openvino.OpenVINORunner`
  with ``precision="f32"`` and ``"auto"`` (the device default: bf16 on CPUs with bf16
  instructions). Their first call (conversion or disk cache, compilation) is untimed and
  printed to stderr.

Timing: per model, LR size and thread count, one untimed warm-up call of each backend, then
``--repeats`` rounds in which every backend runs once (order rotating), median wall and
process-CPU seconds per image. The input is a natural image: the Set5 ``baby`` HR image resized to s·n × s·n
and degraded with the first setting-2 benchmark kernel (random pixels if Set5 is missing).
"PSNR vs fp32" compares each backend's SR (clamped to [0, 1], RGB) with the plain module's.

Quality: Y-channel PSNR against the HR ground truth (the benchmark protocol,
:func:`kxnet.metrics.image_psnr`) for a few Set5 images degraded with setting-2 benchmark
kernels, noise-free, whole images in one blind forward, per backend.

The machine may be shared: the CPU model, its bf16/AMX flags and the load average are
printed at the top; compare rows within one table.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kxnet.degrade import degrade
from kxnet.degrade.testsets import load_hr
from kxnet.inference.openvino import OpenVINORunner, openvino_available
from kxnet.io import from_tensor, to_uint8
from kxnet.kernels import benchmark_kernels
from kxnet.metrics import image_psnr
from kxnet.models import load_model
from kxnet.models.fast import optimize

REPO = Path(__file__).resolve().parents[1]
MODELS = ("kxnet_x4.setting2", "kxnet_x2.setting2")


def cpu_description() -> list[str]:
    name = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    has = {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}
    lines = [f"CPU: {name}, {os.cpu_count()} logical cores; flags: "
             + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in has.items())]
    if openvino_available():
        import openvino as ov

        core = ov.Core()
        lines.append(f"OpenVINO {ov.get_version()}: {core.get_property('CPU', 'FULL_DEVICE_NAME')}, "
                     f"capabilities {' '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}, "
                     f"default precision {core.get_property('CPU', 'INFERENCE_PRECISION_HINT').get_type_name()}")
    lines.append(f"torch {torch.__version__}, load average {_load()}")
    return lines


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def psnr_float(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).double().pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def natural_input(scale: int, size: int, set5: Path) -> torch.Tensor:
    """An n×n LR image with photo content (see the module docstring)."""
    path = set5 / "baby.png"
    if not path.is_file():
        return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    hr = load_hr(path, 1)[None]
    hr = F.interpolate(hr, size=(scale * size, scale * size), mode="bicubic", antialias=True,
                       align_corners=False).clamp(0, 1)
    kernel = torch.from_numpy(benchmark_kernels(2, scale)[0].kernel)
    return degrade(hr, kernel, scale)


def backends(model, threads: int, precisions: list[str], cache_dir) -> dict:
    """name → callable(y) → SR tensor. Torch paths run with ``threads`` intra-op threads."""
    opt = optimize(model)

    def autocast(y):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(y).sr.float()

    fns = {"torch": lambda y: model(y).sr, "optimize": lambda y: opt(y).sr, "torch bf16": autocast}
    if openvino_available():
        for precision in precisions:
            runner = OpenVINORunner(model, precision=precision, threads=threads, cache_dir=cache_dir)
            label = precision if precision != "auto" else f"auto ({runner.precision})"
            fns[f"OpenVINO {label}"] = lambda y, r=runner: r(y).sr
    return fns


def time_interleaved(fns: dict, y: torch.Tensor, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process-CPU) seconds per call; CPU time counts this process's threads only,
    so it is far less disturbed by other jobs on a shared machine than wall time."""
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[n](y)
            times[n].append((time.perf_counter() - t0, time.process_time() - c0))
    return {n: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for n, t in times.items()}


def speed_rows(args) -> list[str]:
    rows = ["| model | LR | threads | backend | wall s/img | CPU s/img | vs optimize (wall) | vs optimize (CPU) "
            "| PSNR vs fp32 (dB) |", "|---|---|---|---|---|---|---|---|---|"]
    for name in args.models:
        model = load_model(name).eval()
        s = model.config.scale
        for size in args.sizes:
            y = natural_input(s, size, args.set5)
            for threads in args.threads:
                torch.set_num_threads(threads)
                fns = backends(model, threads, args.precisions, args.cache_dir)
                with torch.inference_mode():
                    outputs = {}
                    for n, fn in fns.items():   # warm-up; OpenVINO converts / compiles here
                        t0 = time.perf_counter()
                        outputs[n] = fn(y).float()
                        print(f"  {name} {size} t{threads} {n}: first call {time.perf_counter() - t0:.1f} s",
                              file=sys.stderr, flush=True)
                    times = time_interleaved(fns, y, args.repeats)
                (base_w, base_c) = times["optimize"]
                for n in fns:
                    q = psnr_float(outputs[n], outputs["torch"])
                    w, c = times[n]
                    quality = "exact" if math.isinf(q) else f"{q:.1f}"
                    rows.append(f"| {name} | {size}×{size} | {threads} | {n} | {w:.3f} | {c:.3f} | "
                                f"{base_w / w:.2f}× | {base_c / c:.2f}× | {quality} |")
                    print(rows[-1], file=sys.stderr, flush=True)
    return rows


def quality_rows(args) -> list[str]:
    images = [args.set5 / f"{n}.png" for n in args.images]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        return [f"(Set5 quality skipped: missing {', '.join(missing)})"]
    torch.set_num_threads(max(args.threads))
    rows = []
    for name in args.models:
        model = load_model(name).eval()
        s = model.config.scale
        kernels = [benchmark_kernels(2, s)[i] for i in args.kernels]
        fns = backends(model, max(args.threads), args.precisions, args.cache_dir)
        scores = {n: [] for n in fns}
        for path in images:
            hr = load_hr(path, s)
            hr_u8 = to_uint8(from_tensor(hr))
            for k in kernels:
                lr = degrade(hr[None], torch.from_numpy(k.kernel), s)
                with torch.inference_mode():
                    for n, fn in fns.items():
                        sr = to_uint8(from_tensor(fn(lr).float().clamp(0, 1)))
                        scores[n].append(image_psnr(sr, hr_u8, s))
        ref = statistics.mean(scores["torch"])
        rows.append(f"{name}: Set5 {', '.join(args.images)} × setting-2 kernels "
                    f"{', '.join(k.tag for k in kernels)} (noise 0), mean Y-PSNR vs HR:")
        rows += ["| backend | PSNR (dB) | Δ vs torch fp32 (dB) | Δ per image: min … max (dB) |",
                 "|---|---|---|---|"]
        for n, v in scores.items():
            deltas = [a - b for a, b in zip(v, scores["torch"])]
            rows.append(f"| {n} | {statistics.mean(v):.3f} | {statistics.mean(v) - ref:+.3f} | "
                        f"{min(deltas):+.3f} … {max(deltas):+.3f} |")
        rows.append("")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[96, 256], help="LR sides to time (512 optional)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per row (median)")
    ap.add_argument("--precisions", nargs="+", default=["f32", "auto"], choices=["f32", "bf16", "auto"],
                    help="OpenVINO precisions to run")
    ap.add_argument("--set5", type=Path, default=REPO / ".." / "shared" / "data" / "benchmarks" / "Set5")
    ap.add_argument("--images", nargs="+", default=["bird", "butterfly", "head"], help="Set5 images for quality")
    ap.add_argument("--kernels", nargs="+", type=int, default=[0, 5],
                    help="indices of the setting-2 benchmark kernels for quality (0–7)")
    ap.add_argument("--no-quality", dest="quality", action="store_false")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="OpenVINO cache (default $KXNET_CACHE or ~/.cache/kxnet)")
    args = ap.parse_args(argv)
    args.set5 = args.set5.resolve()

    for line in cpu_description():
        print(line)
    if not openvino_available():
        print("openvino is not installed (pip install 'kxnet[openvino]'): OpenVINO rows skipped")
    print()
    print("\n".join(speed_rows(args)))
    if args.quality:
        print()
        print("\n".join(quality_rows(args)))
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
