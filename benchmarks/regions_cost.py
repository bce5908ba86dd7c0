"""What `--regions auto` (the default) costs on photos blurred uniformly: the whole `kxnet sr`
command with auto against `--regions off`, side by side, and whether the outputs are the same.

    python benchmarks/regions_cost.py                       # 256² and 600×400 LR, ×2 and ×4
    python benchmarks/regions_cost.py --sizes 256x256 --scales 4 --repeats 3
    python benchmarks/regions_cost.py --sizes 256x256 --scales 4 --against 5b39a41   # and an older default
    python benchmarks/regions_cost.py --sizes 256x256 --scales 4 --against 5b39a41 --backend auto   # today's whole default

The photo: the centre of a training wallpaper (upsampled where it is smaller than the HR size
asked for), blurred uniformly with one setting-2 benchmark kernel and decimated, noise-free.
Each run is a fresh `kxnet sr --backend torch` (or ``--backend``) process with OMP_NUM_THREADS=1; auto and off
alternate (after one untimed run of each where OpenVINO has graphs to convert), the median of
``--repeats`` is printed with the ratio, the sidecar's account of the
decision (probes, their spread, whether the grid was completed) and whether the two PNGs are
identical. ``--against REF`` also runs the default (auto) of the code at git revision REF (a
worktree of it, on ``PYTHONPATH``) in the same rounds: the speed-up of today's default over it,
and the Y-PSNR of both against the photo's truth (the protocol's, border shaved).
Set ``KXNET_HIDE_CPU_FLAGS=bf16`` and ``ONEDNN_MAX_CPU_ISA=AVX2`` to run as a CPU without bf16.
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

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "wallpapers"


def _sr(image: Path, out: Path, scale: int, regions: str, src: Path | None = None, backend: str = "torch") -> float:
    cmd = [sys.executable, "-m", "kxnet", "sr", str(image), "-o", str(out), "--scale", str(scale), "--regions", regions,
           "--overwrite", "--quiet"] + (["--backend", backend] if backend else [])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def _photo(path: Path, scale: int, width: int, height: int, kernel_index: int, out: Path) -> np.ndarray:
    """Writes the LR photo to ``out``; returns its truth (HR, uint8)."""
    from kxnet.degrade import degrade
    from kxnet.degrade.testsets import load_hr
    from kxnet.io import from_tensor, to_uint8, write_image
    from kxnet.kernels import benchmark_kernels

    hr = load_hr(path, 1)
    need = max(scale * height / hr.shape[1], scale * width / hr.shape[2])
    if need > 1:
        hr = torch.nn.functional.interpolate(hr[None], scale_factor=need * 1.01, mode="bicubic")[0].clamp(0, 1)
    top, left = (hr.shape[1] - scale * height) // 2, (hr.shape[2] - scale * width) // 2
    hr = hr[:, top:top + scale * height, left:left + scale * width]
    k = torch.as_tensor(benchmark_kernels(2, scale)[kernel_index].kernel, dtype=torch.float32)
    write_image(out, to_uint8(from_tensor(degrade(hr.contiguous(), k, scale))))
    return to_uint8(from_tensor(hr))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["256x256", "600x400"], help="LR WIDTHxHEIGHT")
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--photo", type=Path, default=DATA / "lomiri16_picosdeeuropa_by_Aitzol_Berasategi.png")
    ap.add_argument("--kernel", type=int, default=4, help="index of the setting-2 benchmark kernel")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--against", default=None, metavar="REF", help="also time the default of git revision REF")
    ap.add_argument("--backend", default="torch", help="today's --backend (default torch: the region decision alone)")
    ap.add_argument("--against-backend", default="torch",
                    help="REF's --backend (default torch: what its auto ran on a CPU without bf16)")
    args = ap.parse_args()
    from kxnet.hardware import cpu_name
    from kxnet.metrics import image_psnr

    print(f"{cpu_name()}; torch {torch.__version__}; one thread; load {os.getloadavg()}")
    ref = (f" | {args.against} auto s | speed-up | same as {args.against} | PSNR auto / {args.against}"
           if args.against else "")
    print(f"backend {args.backend}" + (f"; {args.against}: {args.against_backend}" if args.against else ""))
    print(f"| LR | scale | auto s | off s | auto / off | decided on | probe spread | same PNG{ref} |")
    print("|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if args.against else ""))
    with tempfile.TemporaryDirectory() as tmp:
        src = None
        if args.against:
            tree = Path(tmp) / "ref"
            root = Path(__file__).resolve().parents[1]
            subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), args.against],
                           check=True, capture_output=True)
            src = tree / "src"
        for size in args.sizes:
            w, h = map(int, size.split("x"))
            for s in args.scales:
                image = Path(tmp) / f"photo_{size}_x{s}.png"
                truth = _photo(args.photo, s, w, h, args.kernel, image)
                modes = ["auto", "off"] + (["ref"] if src else [])
                times = {m: [] for m in modes}
                if args.backend != "torch":     # OpenVINO converts a graph per new size: fill the cache first
                    for mode in ("auto", "off"):
                        _sr(image, Path(tmp) / mode, s, mode, None, args.backend)
                for r in range(args.repeats):
                    for mode in (modes if r % 2 == 0 else modes[::-1]):
                        times[mode].append(_sr(image, Path(tmp) / mode, s, "off" if mode == "off" else "auto",
                                               src if mode == "ref" else None,
                                               args.against_backend if mode == "ref" else args.backend))
                a, o = (statistics.median(times[m]) for m in ("auto", "off"))
                outs = {m: np.asarray(__import__("PIL.Image").Image.open(Path(tmp) / m / f"{image.stem}_x{s}.png"))
                        for m in modes}
                regions = json.loads((Path(tmp) / "auto" / f"{image.stem}_x{s}.json").read_text())["kernel"]["regions"]
                decided = "—" if regions is None else ("probes" if regions["spread"] is None else "grid")
                spread = "—" if regions is None else f"{regions['probe_spread']}"
                extra = ""
                if src:
                    old = statistics.median(times["ref"])
                    extra = (f" {old:.1f} | {old / a:.2f}× | "
                             f"{'yes' if np.array_equal(outs['auto'], outs['ref']) else 'no'} | "
                             f"{image_psnr(outs['auto'], truth, s):.3f} / {image_psnr(outs['ref'], truth, s):.3f} |")
                print(f"| {w}×{h} | ×{s} | {a:.1f} | {o:.1f} | {a / o:.2f} | {decided} | {spread} | "
                      f"{'yes' if np.array_equal(outs['auto'], outs['off']) else 'no'} |{extra}", flush=True)
        if src:
            subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "worktree", "remove", "--force",
                            str(Path(tmp) / "ref")], check=False, capture_output=True)
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
