"""Peak memory and wall time of ``kxnet sr`` ×4 on a 1000×1000 LR image, on CPU, with defaults.

The command runs in a fresh child process; its peak resident set size is the kernel's
``ru_maxrss`` for that child (``os.wait4``), so nothing of this script counts. Without
``--model`` a paper-sized model (×4, setting 2, 19 stages, ~27.6 M parameters) with random
weights is written to a temporary folder: memory and time do not depend on the weights' values.

    python benchmarks/sr_memory.py                     # the figure the docs quote (slow on CPU)
    python benchmarks/sr_memory.py --stages 4          # quicker; memory is nearly the same
    python benchmarks/sr_memory.py --model kxnet_x4.setting2 --tile 128

Per-tile memory does not grow with the number of stages except for the stage images each
forward keeps (T HR tiles) and the weights (~7 MB per stage), so a run with fewer stages
under-states the 19-stage peak only by a little; the script prints the stage count it used.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _test_image(size: int, seed: int = 0) -> np.ndarray:
    """A photo-like LR image: smooth shapes plus fine texture (content barely matters)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((size // 16, size // 16, 3)) * 255).astype(np.uint8))
    smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC)).astype(np.float32) / 255
    return np.clip(smooth + 0.03 * rng.standard_normal(smooth.shape).astype(np.float32), 0, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000, help="LR side in pixels (default 1000)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--stages", type=int, default=19, help="stages of the random model (default 19)")
    ap.add_argument("--model", default=None, help="use this weights name/file instead of a random model")
    ap.add_argument("--tile", type=int, default=None, help="--tile for kxnet sr (default: its default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the child (default: torch's)")
    args = ap.parse_args(argv)

    import torch

    from kxnet.io import write_image
    from kxnet.models import create_model, save_model

    with tempfile.TemporaryDirectory(prefix="kxnet-srmem-") as tmp:
        tmp = Path(tmp)
        if args.model is None:
            torch.manual_seed(0)
            model_arg = str(save_model(create_model("kxnet", scale=args.scale, setting=2, stages=args.stages),
                                       tmp / "random.safetensors"))
            what = f"random ×{args.scale} setting-2 model, {args.stages} stages"
        else:
            model_arg, what = args.model, f"model {args.model}"
        lr = write_image(tmp / "lr.png", _test_image(args.size))
        cmd = [sys.executable, "-m", "kxnet", "sr", str(lr), "-o", str(tmp / "out"), "--model", model_arg,
               "--scale", str(args.scale), "--device", args.device, "--quiet"]
        if args.tile is not None:
            cmd += ["--tile", str(args.tile)]
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
            env["MKL_NUM_THREADS"] = str(args.threads)
        print(f"{what}; LR {args.size}×{args.size} → ×{args.scale}; {args.device}; torch threads "
              f"{args.threads or torch.get_num_threads()}", flush=True)
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            print(f"kxnet sr failed with exit code {child.returncode}", file=sys.stderr)
            return 1
        import json

        side = json.loads(next((tmp / "out").glob("*.json")).read_text())
        peak_gib = usage.ru_maxrss * 1024 / 2**30   # Linux reports KiB
        tiling = side["tiling"]
        print(f"peak RSS {peak_gib:.2f} GiB   wall {wall:.1f} s (sr itself {side['seconds']:.1f} s)   "
              f"tiles {tiling['tiles']} ({tiling['tile_grid'][0]}×{tiling['tile_grid'][1]}, tile {tiling['tile']}, "
              f"overlap {tiling['tile_overlap']})   output {side['output']['width']}×{side['output']['height']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
