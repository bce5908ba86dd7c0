"""Blind-SR methods trained from scratch for the same CPU time, then scored on one protocol.

    python scripts/equal_budget.py train                  # every method not yet trained, one after another
    python scripts/equal_budget.py train --only dan --hours 1.0      # kenet and usrnet share the pair's budget
    python scripts/equal_budget.py report                 # the table (README) from the finished runs

Each method uses its own CPU recipe (``configs/cpu_*_setting2_x4.yaml``: ×4 setting 2, batch 8,
LR patch 24, the same training photos and the same validation set) with its release's
learning rate held constant — within a first CPU-hour every release is still in its first,
constant phase — and ``train.cpu_budget_h`` so that every run gets exactly the same training
CPU time (validation excluded), one thread, ``data.workers=0`` so synthesis is counted too.

The report scores each run's final weights on complete cells (default Set5 σn 0 and 15, Set14 σn 0) with
``kxnet benchmark``'s cached cells, and times one 128×128 LR image on one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# method → (recipe, extra overrides, what the row is)
METHODS = {
    # from scratch at the release's rate, whatever the CPU recipe continues from
    "kxnet": ("configs/cpu_setting2_x4.yaml", ["train.init_weights=null", "train.lr=2.0e-4"], "KXNet, 4 stages"),
    "dan": ("configs/cpu_dan_setting2_x4.yaml", [], "DANv1 (release size: 40 + 5 blocks, 4 loops)"),
    "dcls": ("configs/cpu_dcls_setting2_x4.yaml", [], "DCLS (release size)"),
}
# The pair is two separately trained models sharing one budget: KENet is ~25× cheaper per step.
PAIR = {"kenet": ("configs/cpu_kenet_setting2_x4.yaml", 0.25), "usrnet": ("configs/cpu_usrnet_tiny_setting2_x4.yaml", 0.75)}
PAIR_WHAT = "KENet (paper reading) + USRNet-tiny, trained separately"
COMMON = ["train.iterations=1000000", "train.schedule=constant", "data.workers=0", "train.threads=1",
          "val.every=200", "checkpoint.every=200", "train.tensorboard=false"]


def _jobs(args):
    for name, (recipe, overrides, _) in METHODS.items():
        yield name, recipe, overrides, args.hours
    for name, (recipe, share) in PAIR.items():
        yield name, recipe, [], args.hours * share


def train(args) -> None:
    for name, recipe, overrides, hours in _jobs(args):
        if args.only and name not in args.only:
            continue
        run_dir = Path(args.out) / name
        if (run_dir / "summary.json").is_file():
            continue
        cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", "kxnet", "train", recipe, "--continue",
               f"name={name}", f"out={args.out}", f"train.cpu_budget_h={hours}", *COMMON, *overrides]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _seconds_per_image(model, size: int = 128, repeats: int = 3) -> float:
    import torch

    from kxnet.inference.benchmark import inference_runner

    torch.set_num_threads(1)
    runner = inference_runner(model)
    y = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        runner(y)
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner(y)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(args) -> None:
    import yaml

    from kxnet.inference.benchmark import benchmark_model
    from kxnet.inference.paper import paper_value
    from kxnet.models import load_model
    from kxnet.models.kenet_usrnet import combine

    specs = [(name, float(noise)) for name, _, noise in (c.partition(":") for c in args.cells)]  # (set, σn)
    sets: dict[str, tuple[float, ...]] = {}
    for set_name, noise in specs:
        sets[set_name] = sets.get(set_name, ()) + (noise,)
    rows = []
    for name, what, run_names in [*((n, m[2], [n]) for n, m in METHODS.items()), ("kenet_usrnet", PAIR_WHAT, list(PAIR))]:
        run_dirs = [Path(args.out) / n for n in run_names]
        if not all((d / "summary.json").is_file() for d in run_dirs):
            print(f"{name}: not trained yet ({', '.join(map(str, run_dirs))})")
            continue
        summaries = [json.loads((d / "summary.json").read_text()) for d in run_dirs]
        batches = [yaml.safe_load((d / "config.yaml").read_text())["train"]["batch"] for d in run_dirs]
        models = [load_model(d / "model.safetensors") for d in run_dirs]
        model = models[0] if len(models) == 1 else combine(*models)
        params = sum(p.numel() for p in model.parameters())
        cells = benchmark_model(model, name, Path(args.data), Path(args.work), sets, {}, progress=True)
        rows.append({"method": name, "what": what, "params": params, "cpu_h": sum(x["cpu_s"] for x in summaries) / 3600,
                     "steps": " + ".join(str(x["step"]) for x in summaries),
                     "samples": sum(x["step"] * b for x, b in zip(summaries, batches)),
                     "cells": {(c.set, c.noise): c for c in cells}, "sec_128": _seconds_per_image(model)})
    head = ("| method | parameters | training CPU-h | steps | samples | " +
            " | ".join(f"{n} σn {v:g} PSNR / SSIM" for n, v in specs) +
            f" | kernel L1, {specs[0][0]} σn {specs[0][1]:g} (K⁰) | s per 128² LR image |")
    lines = [head, "|" + "---|" * (7 + len(specs))]
    for r in rows:
        cells = [r["cells"][spec] for spec in specs]
        k = cells[0].kernel
        kern = f"{k['kernel_l1']:.3f} ({k['initial_kernel_l1']:.3f})" if k else "– (no HR kernel)"
        lines.append(f"| {r['what']} | {r['params']:,} | {r['cpu_h']:.2f} | {r['steps']} | {r['samples']:,} | " +
                     " | ".join(f"{c.psnr:.2f} / {c.ssim:.4f}" for c in cells) + f" | {kern} | {r['sec_128']:.2f} |")
    bic = [rows[0]["cells"][spec] for spec in specs] if rows else []
    if bic:
        lines.append("| bicubic | – | – | – | – | " + " | ".join(f"{c.bicubic_psnr:.2f} / {c.bicubic_ssim:.4f}" for c in bic)
                     + " | – | – |")
    for method in ("DAN", "KXNet"):  # the published, fully trained models on this protocol (no DCLS/KENet cells exist)
        cells = [paper_value(method, 2, noise, 4, set_name) for set_name, noise in specs]
        lines.append(f"| paper: {method}, fully trained (the paper's table) | – | – | – | – | " +
                     " | ".join(f"{c[0]:.2f} / {c[1]:.4f}" for c in cells) + " | – | – |")
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["train", "report"])
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--hours", type=float, default=1.0, help="training CPU-hours per method")
    ap.add_argument("--out", default="runs/equal_budget")
    ap.add_argument("--nice", type=int, default=19)
    ap.add_argument("--data", default="../shared/data/benchmarks")
    ap.add_argument("--work", default="runs/benchmark_sets")
    ap.add_argument("--report", default="docs/equal_budget.md")
    ap.add_argument("--cells", nargs="+", default=["Set5:0", "Set5:15", "Set14:0"], metavar="SET:NOISE",
                    help="complete cells to score (×4 setting 2)")
    args = ap.parse_args()
    train(args) if args.action == "train" else report(args)


if __name__ == "__main__":
    main()
