"""How fast ``kxnet eval`` / ``kxnet benchmark`` score a set, old way and new way, side by side.

    python benchmarks/eval_speed.py                                   # shipped ×4, Set5 setting 2 σn 0
    python benchmarks/eval_speed.py --model kxnet_x2.setting2 --set B100 --max-images 5 --threads 1

Three ways over the same pairs, in one run, same weights:

* ``per-pair plain`` — one pair at a time through the plain model, metrics in line (how the
  benchmark worked before batching);
* ``per-pair optimized`` — one pair at a time through :func:`kxnet.models.fast.optimize`;
* ``batched optimized`` — the benchmark's way now: the 8 LR images of an HR image as one
  batch through the optimized model, metrics on a worker thread overlapping the next batch.

Prints seconds per pair (the fastest of ``--repeats`` rounds, the ways' order rotating each
round, so a load change on a shared machine does not favour one way), the speed-up and the
largest PSNR difference between the ways (they must agree to float32 rounding). Set synthesis
is cached and not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="kxnet_x4.setting2")
    ap.add_argument("--data", default="../shared/data/benchmarks")
    ap.add_argument("--set", default="Set5")
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="runs/benchmark_sets")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from kxnet.degrade.testsets import synthesise
    from kxnet.inference.evaluate import evaluate
    from kxnet.io import list_images
    from kxnet.models import load_model
    from kxnet.models.kxnet.fast import optimize

    model = load_model(args.model)
    c = model.config
    images = list_images([Path(args.data) / args.set], recursive=False)[: args.max_images or None]
    set_dir = Path(args.work) / f"setting{c.setting}" / f"x{c.scale}" / f"noise{args.noise:g}" / f"{args.set}_{len(images)}"
    if not (set_dir / "manifest.json").is_file():
        synthesise(images, set_dir, c.setting, c.scale, args.noise, seed=0, overwrite=True, progress=False)
    fast = optimize(model)
    ways = {"per-pair plain": (model, 1), "per-pair optimized": (fast, 1), "batched optimized": (fast, 8)}
    evaluate(fast, set_dir, per_stage=True, limit=2, progress=False)  # warm-up (oneDNN primitives)
    print(f"{args.model} on {set_dir} ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s), load {os.getloadavg()[0]:.2f})")
    results, times = {}, {}
    names = list(ways)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            net, batch = ways[name]
            t0 = time.perf_counter()
            results[name] = evaluate(net, set_dir, per_stage=True, batch_size=batch, progress=False)
            times[name] = min(times.get(name, float("inf")), time.perf_counter() - t0)
    base = times["per-pair plain"]
    ref = [p.psnr for p in results["per-pair plain"].pairs]
    n = len(ref)
    print(f"{'way':<22}{'s / pair':>10}{'speed-up':>10}{'max |ΔPSNR| dB':>16}{'PSNR':>9}")
    for name, r in results.items():
        diff = max(abs(a.psnr - b) for a, b in zip(r.pairs, ref))
        print(f"{name:<22}{times[name] / n:>10.3f}{base / times[name]:>9.2f}×{diff:>16.2e}{r.summary()['psnr']:>9.3f}")
    print(f"{n} pairs; load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
