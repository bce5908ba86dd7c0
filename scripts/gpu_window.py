"""Train one or more recipes side by side inside a fixed window of GPU time, annealed to its end.

    python scripts/gpu_window.py configs/gpu_setting2_x4.yaml configs/gpu_setting2_x2.yaml \
        --minutes 8 --out OUT -o 'data.hr_dirs=[photos]' -o val.hr_dir=Set5

A lent GPU comes for minutes, not days, and a cosine schedule needs its length up front. So the
window is spent in four parts: (1) every recipe's step time is measured with all of them running
at once (``benchmarks/train_throughput.py --json``: synthetic batches, so the rate is the GPU's);
(2) each recipe's ``train.iterations`` is set to the steps its rate fits into what is left, less a
reserve for validation and export; (3) the runs train side by side (``kxnet train``), each sent
SIGTERM at the reserve's edge should it run slow (it stops after that step with a checkpoint);
(4) each run's fp16 weights (exported from its last checkpoint when it was stopped), its
``metrics.jsonl`` and its log are copied flat into ``--out``, and a summary is printed.

Everything the recipes read must be on the machine: point ``data.hr_dirs`` and ``val.hr_dir`` at
copies with ``-o`` overrides (they apply to every recipe). The package must be installed there
first (``pip install --no-deps -e .``, the machine's own torch kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    # the package must be installed on the machine (`pip install --no-deps -e .` beside its torch)
    return dict(os.environ, PYTHONUNBUFFERED="1")


def measure_rates(recipes: list[Path], steps: int, out: Path) -> list[float]:
    """Seconds per step of each recipe while all of them run at once."""
    probes = []
    for r in recipes:
        log = open(out / f"{r.stem}.log", "w")     # the run's log; its training appends
        cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), str(r), "--json",
               "--steps", str(steps), "--warmup", "3", "--threads", "2"]
        probes.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=_env()), log))
    seconds = []
    for (p, log), r in zip(probes, recipes):
        text, _ = p.communicate()
        log.close()
        if p.returncode != 0:
            raise SystemExit(f"{r}: the throughput probe failed (exit {p.returncode}); see {log.name}")
        row = json.loads(text.strip().splitlines()[-1])
        print(f"probe {r.stem}: {row['s_per_step']:.3f} s/step side by side on {row['device']}", flush=True)
        seconds.append(row["s_per_step"])
    return seconds


def export_last(run_dir: Path, out: Path) -> Path | None:
    """The run's fp16 weights: its export if it finished, else one made from its last checkpoint."""
    from kxnet.train.checkpoint import export_weights, latest_checkpoint

    final = run_dir / "model.safetensors"   # written at the end, in fp16 when the recipe says so
    if final.is_file():
        shutil.copyfile(final, out)
        return out
    state = latest_checkpoint(run_dir)
    if state is None:
        return None
    return export_weights(state, out, storage="fp16")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipes", nargs="+", type=Path)
    ap.add_argument("--minutes", type=float, required=True, help="the whole window, probes and export included")
    ap.add_argument("--out", type=Path, required=True, help="where weights, curves and logs are copied")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs", help="run folders (checkpoints stay here)")
    ap.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every recipe (repeatable)")
    ap.add_argument("--reserve", type=float, default=60.0,
                    help="seconds kept back at the end for the last validation, export and copies")
    ap.add_argument("--startup", type=float, default=30.0,
                    help="seconds a run spends before its first step (decoding photos, the validation set)")
    ap.add_argument("--probe-steps", type=int, default=12)
    ap.add_argument("--safety", type=float, default=0.9, help="the share of the measured rate that is planned on")
    args = ap.parse_args(argv)
    start = time.monotonic()
    deadline = start + args.minutes * 60
    args.out.mkdir(parents=True, exist_ok=True)
    names = [r.stem for r in args.recipes]
    if len(set(names)) != len(names):
        raise SystemExit("each recipe must have its own file name (the runs are named after them)")

    seconds = measure_rates(args.recipes, args.probe_steps, args.out)
    train_s = deadline - time.monotonic() - args.reserve - args.startup
    if train_s <= 0:
        raise SystemExit(f"the probes left no time to train in a {args.minutes}-minute window")
    runs = []
    for recipe, s in zip(args.recipes, seconds):
        iterations = max(1, int(train_s / s * args.safety))
        run_dir = args.runs / recipe.stem
        log = open(args.out / f"{recipe.stem}.log", "a")
        cmd = [sys.executable, "-m", "kxnet", "train", str(recipe), *args.override,
               f"train.iterations={iterations}", f"name={recipe.stem}", "--run-dir", str(run_dir), "--no-progress"]
        print(f"train {recipe.stem}: {iterations} steps planned in {train_s:.0f} s", flush=True)
        runs.append((recipe, run_dir, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env()), log))

    stop_at = deadline - args.reserve
    while any(p.poll() is None for _, _, p, _ in runs) and time.monotonic() < stop_at:
        time.sleep(2)
    for recipe, _, p, _ in runs:
        if p.poll() is None:
            print(f"{recipe.stem}: out of time, stopping it with a checkpoint", flush=True)
            p.send_signal(signal.SIGTERM)
    for recipe, _, p, log in runs:
        try:
            p.wait(timeout=args.reserve / 2)
        except subprocess.TimeoutExpired:   # stuck (e.g. in a validation): abort; its last checkpoint stands
            print(f"{recipe.stem}: no checkpoint in {args.reserve / 2:.0f} s, aborting it", flush=True)
            p.send_signal(signal.SIGTERM)
            p.wait()
        log.close()

    from kxnet.train import read_metrics

    for recipe, run_dir, p, _ in runs:
        weights = export_last(run_dir, args.out / f"{recipe.stem}_fp16.safetensors")
        metrics = run_dir / "metrics.jsonl"
        if metrics.is_file():
            shutil.copyfile(metrics, args.out / f"{recipe.stem}_metrics.jsonl")
        curve = ", ".join(f"{v['step']}: {v['psnr']:.3f}" for v in read_metrics(run_dir, "val"))
        print(f"{recipe.stem}: exit {p.returncode}, weights {weights}, validation PSNR by step {curve}", flush=True)
    print(f"window used {time.monotonic() - start:.0f} s of {args.minutes * 60:.0f}", flush=True)
    return 0 if all(p.returncode == 0 for _, _, p, _ in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
