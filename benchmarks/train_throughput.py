"""Training throughput per recipe: a few timed steps (forward + backward + Adam) on this device.

    python benchmarks/train_throughput.py                      # every recipe in configs/
    python benchmarks/train_throughput.py cpu_setting2_x2 paper_setting2_x4 --steps 1
    python benchmarks/train_throughput.py paper_setting2_x4 --amp bf16 --channels-last

Batches are synthetic (random smooth HR crops degraded on the fly with the recipe's kernel and
noise distribution, made outside the timed region), so no image data is needed. The paper
recipes are heavy on a CPU (×4, 19 stages, batch 12: tens of seconds per step): use ``--steps 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kxnet.degrade import degrade
from kxnet.kernels import sample_training_kernels
from kxnet.train import build_model, build_optimizer, kxnet_loss, load_config

ROOT = Path(__file__).resolve().parents[1]


def _recipes(names: list[str]) -> list[Path]:
    if not names:
        return sorted((ROOT / "configs").glob("*.yaml"))
    out = []
    for n in names:
        p = Path(n)
        if not p.is_file():
            p = ROOT / "configs" / (n if n.endswith(".yaml") else f"{n}.yaml")
        if not p.is_file():
            raise SystemExit(f"{n}: no such recipe (looked in {ROOT / 'configs'})")
        out.append(p)
    return out


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def synthetic_batch(cfg, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random smooth HR crops (low-res noise, bicubic-upsampled) degraded like training batches."""
    s, p = cfg.model.scale, cfg.data.lr_patch
    base = torch.rand(batch, 3, p // 2 + 1, p // 2 + 1, generator=gen)
    hr = F.interpolate(base, size=(p * s, p * s), mode="bicubic", align_corners=False).clamp(0, 1)
    hr = torch.round(hr * 255) / 255
    kb = sample_training_kernels(cfg.model.setting, s, batch, gen)
    return {"lr": degrade(hr, kb.kernels, s, kb.noise_sigma, gen), "hr": hr, "kernel": kb.kernels}


def bench(path: Path, args, device: torch.device) -> dict:
    overrides = [f"train.amp={args.amp}"] + ([f"train.batch={args.batch}"] if args.batch else [])
    cfg = load_config(path, overrides)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = build_optimizer(cfg, model)
    fwd = torch.compile(model) if args.compile else model
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    if amp is torch.float16 and device.type != "cuda":
        amp = None
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    gen = torch.Generator().manual_seed(0)
    b = cfg.train.batch

    def step() -> float:
        batch = {k: v.to(device) for k, v in synthetic_batch(cfg, b, gen).items()}
        lr = batch["lr"].contiguous(memory_format=torch.channels_last) if args.channels_last else batch["lr"]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
            out = fwd(lr)
        loss, _ = kxnet_loss(out, batch["hr"], batch["kernel"], cfg.train.loss)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        step()
    times = [step() for _ in range(args.steps)]
    sec = sum(times) / len(times)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    mem = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    return {"recipe": path.stem, "scale": cfg.model.scale, "setting": cfg.model.setting, "stages": getattr(cfg.model.method_config(), "stages", None),
            "batch": b, "lr_patch": cfg.data.lr_patch, "params_m": params / 1e6, "s_per_step": sec,
            "it_s": 1 / sec, "samples_s": b / sec, "peak_gib": mem}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipes", nargs="*", help="recipe names or paths (default: all of configs/)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per recipe")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--batch", type=int, default=0, help="override the recipe's batch")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--json", action="store_true", help="one JSON object per recipe instead of the table")
    args = ap.parse_args(argv)
    if args.steps < 1:
        raise SystemExit("--steps must be ≥ 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if args.json:
        for path in _recipes(args.recipes):
            print(json.dumps({**bench(path, args, device), "device": _device_name(device)}), flush=True)
        return 0
    print(f"device: {_device_name(device)}; torch {torch.__version__}; amp {args.amp}"
          f"{'; channels_last' if args.channels_last else ''}{'; compile' if args.compile else ''}; "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    print(f"{'recipe':<20} {'model':>16} {'params':>8} {'batch':>5} {'LR patch':>8} {'s/step':>8} {'it/s':>8} "
          f"{'samples/s':>9} {'peak GiB':>8}")
    for path in _recipes(args.recipes):
        r = bench(path, args, device)
        mem = f"{r['peak_gib']:8.2f}" if r["peak_gib"] is not None else f"{'-':>8}"
        model = f"x{r['scale']} s{r['setting']} T={r['stages']}"
        print(f"{r['recipe']:<20} {model:>16} {r['params_m']:7.2f}M {r['batch']:5d} {r['lr_patch']:8d} "
              f"{r['s_per_step']:8.3f} {r['it_s']:8.3f} {r['samples_s']:9.2f} {mem}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
