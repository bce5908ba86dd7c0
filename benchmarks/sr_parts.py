"""The default `kxnet sr` of one photo, part by part: start-up, loading the model, reading, the
degradation estimate, the region decision, the network (kernel estimate and image steps), writing.

    python benchmarks/sr_parts.py                                  # a 256² LR photo, ×4 and ×2
    KXNET_HIDE_CPU_FLAGS=bf16 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/sr_parts.py   # as a CPU with AVX2 only

The photo is the centre of a training wallpaper, blurred uniformly with a setting-2 kernel and
decimated (saved as PNG). The parts are timed in one process with the code `kxnet sr` runs
(kxnet.inference.routing, .upscaler, .job), one thread, ``--repeats`` times after one untimed
warm-up round (which fills OpenVINO's compiled-graph cache, as a user's first photo of a size
does); start-up is a fresh interpreter importing the CLI. Medians; the backend `auto` chose is
printed with the CPU. ``KXNET_HIDE_CPU_FLAGS`` / ``ONEDNN_MAX_CPU_ISA`` emulate an older CPU on a
newer one (oneDNN then uses no AVX-512 or AMX kernels, and auto no bf16).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from regions_cost import DATA, _photo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256x256", help="LR WIDTHxHEIGHT")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 2])
    ap.add_argument("--photo", type=Path, default=DATA / "lomiri16_picosdeeuropa_by_Aitzol_Berasategi.png")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from kxnet.hardware import cpu_name
    from kxnet.inference.job import run_job, write_job
    from kxnet.inference.routing import Router
    from kxnet.inference.upscaler import Upscaler
    from kxnet.io import read_image, to_tensor
    from kxnet.models import resolve

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    print(f"{cpu_name()}{' (oneDNN capped at ' + isa + ')' if isa else ''}; hidden flags: "
          f"{os.environ.get('KXNET_HIDE_CPU_FLAGS') or 'none'}; torch {torch.__version__}; one thread")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import kxnet.cli.sr, kxnet.inference.job"], check=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    startup = time.perf_counter() - t0
    w, h = map(int, args.size.split("x"))
    print(f"start-up (a fresh interpreter importing the CLI): {startup:.2f} s\n")
    print("| LR | scale | backend | load | read | estimate | regions | network | write | total |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.scales:
            image = Path(tmp) / f"photo_x{s}.png"
            _photo(args.photo, s, w, h, 4, image)
            parts: dict[str, list[float]] = {k: [] for k in ("load", "read", "estimate", "regions", "network", "write")}
            backend = None
            for r in range(args.repeats + 1):
                times = {}
                t = time.perf_counter()
                up = Upscaler(resolve(None, s), "cpu", backend=args.backend)
                router = Router(s, lambda name: Upscaler(resolve(name, s), "cpu", backend=args.backend),
                                known={up.resolved.name: up})
                times["load"] = time.perf_counter() - t
                t = time.perf_counter()
                img = read_image(image)
                times["read"] = time.perf_counter() - t
                t = time.perf_counter()
                chosen = router.pick(img).upscaler
                times["estimate"] = time.perf_counter() - t
                t = time.perf_counter()
                regions, _ = chosen.decide_regions(to_tensor(img.rgb)) if chosen._wants_regions(h, w) else (None, {})
                times["regions"] = time.perf_counter() - t
                chosen.regions = "off" if regions is None else "on"     # the decision made, not made again
                t = time.perf_counter()
                job = run_job(chosen, img)
                times["network"] = time.perf_counter() - t
                t = time.perf_counter()
                write_job(job, Path(tmp) / "out" / f"{image.stem}_x{s}.png", image)
                times["write"] = time.perf_counter() - t
                backend = job.info["backend"]
                if r:                                  # round 0 warms up
                    for k, v in times.items():
                        parts[k].append(v)
            med = {k: statistics.median(v) for k, v in parts.items()}
            print(f"| {w}×{h} | ×{s} | {backend['name']} {backend['precision']} | "
                  + " | ".join(f"{med[k]:.2f}" for k in parts) + f" | {startup + sum(med.values()):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
