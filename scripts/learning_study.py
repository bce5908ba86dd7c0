"""Learning efficiency on a CPU: validation PSNR and kernel error against CPU-hours, per recipe.

    python scripts/learning_study.py run                 # every variant not yet finished, one after another
    python scripts/learning_study.py run --only kw30 cosine
    python scripts/learning_study.py report              # table + plot from the run folders

Every variant continues the same weights (``--init``: a copy of the shipped ×2 setting-2 model
taken when the study started, so that shipping newer weights midway cannot change the start)
with ``configs/cpu_setting2_x2.yaml`` and a few overrides, for the same number of steps,
validating every ``--every`` steps on the recipe's validation set (Set5 bird, butterfly,
head × the 8 setting-2 kernels). Runs use one thread and ``data.workers=0`` so the trainer's
``cpu_s`` (its process's CPU time spent training; validation excluded) is the whole cost. A
variant whose folder exists is resumed, so the study survives interruptions.

The report also reads earlier runs given with ``--extra NAME=metrics.jsonl`` (e.g. the
continuation runs in ../shared/runs, which predate ``cpu_s``): their steps are converted to
CPU time with the CPU seconds per step measured here for the same recipe (``base``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from kxnet.train import read_metrics

RECIPE = "configs/cpu_setting2_x2.yaml"
INIT = "runs/study/init_x2.safetensors"   # cp src/kxnet/weights/kxnet_x2_setting2.safetensors runs/study/

# name → (overrides, description). "nonblind" is two phases: non-blind, then blind from its weights.
VARIANTS = {
    "base": ([], "Adam 8e-4 constant (the continuation runs' rate)"),
    "kw30": (["train.loss.kernel_weight=3.0", "train.loss.kernel_weight_last=30.0"],
             "8e-4, kernel L1 weighted 30× (0.1/1 → 3/30)"),
    "gamma100": (["train.lr_mult.gamma_stage=100"], "8e-4, the K-steps' step sizes γ at 100× the rate (8e-2)"),
    "kw30+gamma100": (["train.loss.kernel_weight=3.0", "train.loss.kernel_weight_last=30.0",
                       "train.lr_mult.gamma_stage=100"], "kw30 and gamma100 together"),
    "nonblind": (["train.nonblind=true"], "first half non-blind (true kernels), second half blind, 8e-4"),
    "cosine": (["train.schedule=cosine", "train.warmup=30"], "8e-4, 30-step warm-up, cosine decay to 0 at the end"),
    "lr1.6e-3": (["train.lr=1.6e-3", "train.warmup=50"], "1.6e-3 constant after a 50-step warm-up"),
    "ema": (["train.ema_decay=0.995"], "8e-4, validated on an EMA of the weights (decay 0.995)"),
    "patch64": (["data.lr_patch=64", "train.batch=2"], "8e-4, LR patch 64 × batch 2 (same pixels as 32 × 8)"),
}
COMMON = ["train.lr=8.0e-4", "train.schedule=constant", "data.workers=0", "train.threads=1", "val.at_start=true",
          "train.tensorboard=false"]


def _train(args, name: str, overrides: list[str], steps: int, init: str) -> Path:
    """``kxnet train --continue``: starts the variant, or resumes it after an interruption."""
    cmd = [sys.executable, "-m", "kxnet", "train", RECIPE, "--continue", f"name={name}", f"out={args.out}",
           f"train.init_weights={init}", f"train.iterations={steps}", f"val.every={args.every}",
           f"checkpoint.every={args.every}", *COMMON, *overrides]
    print(" ".join(cmd), flush=True)
    subprocess.run(["nice", "-n", str(args.nice), *cmd], check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return Path(args.out) / name


def run(args) -> None:
    for name, (overrides, _) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        last = f"{name}_blind" if name == "nonblind" else name     # the nonblind variant has two phases
        if (Path(args.out) / last / "summary.json").is_file():
            continue
        if name == "nonblind":
            half = args.steps // 2
            first = _train(args, name, overrides, half, args.init)
            blind = [o for o in overrides if not o.startswith("train.nonblind")]
            _train(args, f"{name}_blind", blind, args.steps - half, str(first / "model.safetensors"))
        else:
            _train(args, name, overrides, args.steps, args.init)


def curves(args) -> dict[str, list[dict]]:
    """name → validation records with ``cpu_h`` (CPU-hours since the common start)."""
    out: dict[str, list[dict]] = {}
    for name in VARIANTS:
        val = read_metrics(Path(args.out) / name, "val")
        if name == "nonblind" and val:
            offset = max(r["cpu_s"] for r in val)
            tail = read_metrics(Path(args.out) / f"{name}_blind", "val")
            val = val + [dict(r, step=r["step"] + val[-1]["step"], cpu_s=r["cpu_s"] + offset) for r in tail[1:]]
        if val:
            zero = val[0]["cpu_s"]     # runs made before the trainer excluded its setup time from cpu_s
            out[name] = [dict(r, cpu_h=(r["cpu_s"] - zero) / 3600) for r in val]
    base_train = read_metrics(Path(args.out) / "base", "train")
    if base_train and args.extra:
        sec_per_step = base_train[-1]["cpu_s"] / base_train[-1]["step"]
        for item in args.extra:
            label, _, path = item.partition("=")
            val = read_metrics(Path(path).parent, "val")      # NAME=<run>/metrics.jsonl
            if val and all("cpu_s" in r for r in val):    # a run of this trainer: its own CPU time
                out[label] = [dict(r, cpu_h=(r["cpu_s"] - val[0]["cpu_s"]) / 3600) for r in val]
            else:
                out[label] = [dict(r, cpu_h=r["step"] * sec_per_step / 3600, converted=True) for r in val]
    return out


def _fit_slope(val: list[dict]) -> float:
    """Least-squares slope of PSNR on CPU-hours over the whole run: validation PSNR jumps by
    ±0.2 dB from one check to the next at a constant high rate, so two-point slopes mislead."""
    import numpy as np

    x = np.array([r["cpu_h"] for r in val])
    y = np.array([r["psnr"] for r in val])
    return float(np.polyfit(x, y, 1)[0]) if len(val) > 1 and np.ptp(x) > 0 else float("nan")


def report(args) -> None:
    data = curves(args)
    lines = ["| recipe | what | steps | CPU-h | val PSNR at start | mean of last 2 | best | fitted slope dB/CPU-h "
             "| kernel L1 start → end (K⁰ 0.846) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, val in data.items():
        first, last = val[0], val[-1]
        tail = sum(r["psnr"] for r in val[-2:]) / len(val[-2:])
        kl1 = (f"{first.get('kernel_l1_sum1'):.3f} → {last.get('kernel_l1_sum1'):.3f}"
               if last.get("kernel_l1_sum1") is not None else f"– (kernel PSNR {last['kernel_psnr']:.2f} dB)")
        what = VARIANTS[name][1] if name in VARIANTS else (
            "earlier run (CPU-h from steps × base's s/step)" if val[0].get("converted") else "earlier run")
        lines.append(f"| {name} | {what} | {first['step']}–{last['step']} | {last['cpu_h']:.2f} | {first['psnr']:.2f} | "
                     f"{tail:.2f} | {max(r['psnr'] for r in val):.2f} | {_fit_slope(val):+.2f} | {kl1} |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_study.md").write_text(table)
    (out / "learning_study.json").write_text(json.dumps(data, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, val in data.items():
        x = [r["cpu_h"] for r in val]
        style = "--" if val[0].get("converted") else "-"
        a.plot(x, [r["psnr"] for r in val], style, marker=".", label=name)
        if val[-1].get("kernel_l1_sum1") is not None:   # runs before kernel_l1_sum1 was logged are left out
            b.plot(x, [r["kernel_l1_sum1"] for r in val], style, marker=".", label=name)
    b.axhline(0.846, color="grey", linestyle=":", label="K⁰ (fixed initial kernel)")
    a.set_xlabel("CPU-hours (1 thread)")
    a.set_ylabel("validation PSNR (dB, Y)")
    b.set_xlabel("CPU-hours (1 thread)")
    b.set_ylabel("kernel error, unit-sum L1 (0 = exact)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("KXNet ×2 setting 2, 4 stages, continued from the shipped weights: recipes compared")
    fig.savefig(out / "learning_study.png", dpi=110, bbox_inches="tight")
    print(f"wrote {out}/learning_study.md, .json, .png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--init", default=INIT)
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--nice", type=int, default=19)
    ap.add_argument("--extra", nargs="*", default=[], metavar="NAME=metrics.jsonl")
    ap.add_argument("--report-dir", default="docs/history/study")
    args = ap.parse_args()
    run(args) if args.action == "run" else report(args)


if __name__ == "__main__":
    main()
