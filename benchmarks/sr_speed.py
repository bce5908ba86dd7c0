"""`kxnet sr` as a user runs it, per backend: the whole command's wall time and how far apart the
backends' outputs are.

    python benchmarks/sr_speed.py                                   # a 256² photo, ×4, 1 and 2 threads
    python benchmarks/sr_speed.py --model kxnet_x2.setting2 --size 512 --threads 2 --repeats 5

The photo: the centre ``scale·size`` square of ``--hr`` (a photo of the training folder by
default), blurred with the first setting-2 benchmark kernel and decimated (the paper's
degradation, noise-free), so every output also has a PSNR against the truth (Y channel, the
protocol's border crop).

Each run is a fresh ``kxnet sr IMAGE --backend B`` process (start-up, loading, the kernel
estimate, the tiles, writing the PNG), ``OMP_NUM_THREADS`` threads. Per thread count one untimed
run per backend first (it fills the OpenVINO backend's compiled-graph cache, as a user's first
photo of a size does; its time is printed apart), then ``--repeats`` rounds in which every
backend runs once; the median is reported. Run it on an otherwise idle machine: the load
average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def _sr(image: Path, out: Path, model: str, backend: str, threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "kxnet", "sr", str(image), "-o", str(out), "--model", model,
           "--backend", backend, "--overwrite", "--quiet"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def _photo(hr_path: Path, scale: int, size: int, out: Path) -> np.ndarray:
    """Write the LR photo to ``out``; returns the HR truth (uint8 RGB)."""
    from kxnet.degrade import degrade
    from kxnet.degrade.testsets import load_hr
    from kxnet.io import from_tensor, to_uint8, write_image
    from kxnet.kernels.settings import benchmark_kernels

    hr = load_hr(hr_path, scale)
    side = scale * size
    top, left = (hr.shape[1] - side) // 2, (hr.shape[2] - side) // 2
    if min(top, left) < 0:
        sys.exit(f"{hr_path}: smaller than {side}×{side}")
    hr = hr[:, top:top + side, left:left + side]
    kernel = torch.as_tensor(benchmark_kernels(2, scale)[0].kernel, dtype=torch.float32)
    write_image(out, to_uint8(from_tensor(degrade(hr, kernel, scale))))
    return to_uint8(from_tensor(hr))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hr", type=Path,
                    default=DATA / "train" / "wallpapers" / "lomiri16_aitzgorri_by_Aitzol_Berasategi.png")
    ap.add_argument("--size", type=int, default=256, help="side of the LR photo")
    ap.add_argument("--model", default="kxnet_x4.setting2")
    ap.add_argument("--backends", nargs="+", default=["torch", "auto"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from kxnet.hardware import cpu_name
    from kxnet.io import read_image, to_uint8
    from kxnet.metrics import image_psnr
    from kxnet.models import resolve

    scale = resolve(args.model).scale
    print(f"{cpu_name()}; torch {torch.__version__}; load {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        args.image = Path(tmp) / f"photo{args.size}.png"
        truth = _photo(args.hr, scale, args.size, args.image)
        for threads in args.threads:
            outs = {b: Path(tmp) / f"{b}_{threads}" for b in args.backends}
            first = {b: _sr(args.image, outs[b], args.model, b, threads) for b in args.backends}
            times = {b: [] for b in args.backends}
            for r in range(args.repeats):
                order = args.backends[r % len(args.backends):] + args.backends[:r % len(args.backends)]
                for b in order:
                    times[b].append(_sr(args.image, outs[b], args.model, b, threads))
            for b in args.backends:
                sr = to_uint8(read_image(next(outs[b].glob("*.png"))).rgb)
                chose = json.loads(next(outs[b].glob("*.json")).read_text()).get("backend")
                rows.append((threads, b, chose, first[b], statistics.median(times[b]),
                             image_psnr(sr, truth, scale)))
    print(f"load {os.getloadavg()}\n")
    print(f"`kxnet sr` on a {args.size}² photo, {args.model}, wall seconds of the whole command, "
          f"median of {args.repeats}")
    print("| threads | --backend | ran | first run | s | speed-up | PSNR (Y) |")
    print("|---|---|---|---|---|---|---|")
    base = {t: s for t, b, _, _, s, _ in rows if b == "torch"}
    for t, b, chose, first, s, psnr in rows:
        ran = f"{chose.get('name')} {chose.get('precision')}" if isinstance(chose, dict) else str(chose)
        speed = f"{base[t] / s:.2f}×" if t in base else "–"
        print(f"| {t} | {b} | {ran} | {first:.2f} | {s:.2f} | {speed} | {psnr:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
