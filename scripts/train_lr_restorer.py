"""Train a KXNet's LR restorer on its own, against the clean LR image, then put it in front of a
model (docs/photo.md, "Restoring the LR first").

Trained through a held KXNet (configs/cpu_photo_restore_x4.yaml), the restorer gets its gradient
only through the whole unfolding and barely moved the photo cells; here it is told directly what
the LR image was before the noise and the JPEG: ``(X ⊗ K)↓s`` of the same HR crop and kernel,
unquantised. The pairs are a photo recipe's training samples (its ``data`` section).

    python scripts/train_lr_restorer.py configs/cpu_photo_jpeg_x4.yaml --steps 3000 --out runs/lr_restorer_x4.safetensors
    python scripts/train_lr_restorer.py configs/cpu_photo_jpeg_x4.yaml --attach kxnet_x4.setting2 \\
        --out runs/lr_restorer_x4.safetensors -o runs/kxnet_x4_restored.safetensors

One thread; prints the held-out LR PSNR of the input and of the restored image as it goes, and
writes the restorer's weights (atomically) every ``--every`` steps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kxnet.hardware import cpu_name
from kxnet.io import atomic_path
from kxnet.models import load_model, save_model
from kxnet.models.kxnet import LRRestorer, with_restorer
from kxnet.physics import blur_downsample
from kxnet.train import load_config
from kxnet.train.data import recipe_samples


def pairs(samples, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(degraded LR, clean LR) of one step's samples."""
    b = samples.batch(step, range(batch))
    return b["lr"], blur_downsample(b["hr"], b["kernel"], samples.scale)


def lr_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


def save_atomically(state: dict, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp), metadata=meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a photo recipe: its data section makes the pairs")
    ap.add_argument("--out", type=Path, required=True, help="the restorer's weights (written, or read with --attach)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr-patch", type=int, default=48)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--attach", metavar="MODEL", help="put the trained restorer in front of this KXNet instead")
    ap.add_argument("-o", "--output", type=Path, help="with --attach: the joined model's file")
    args = ap.parse_args()
    torch.set_num_threads(1)

    if args.attach:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(args.out), framework="pt") as f:
            meta = f.metadata()
        joined = with_restorer(load_model(args.attach), int(meta["channels"]), int(meta["blocks"]))
        joined.lr_restorer.load_state_dict(load_file(str(args.out)))
        save_model(joined, args.output, extra_metadata={"source": f"{Path(args.attach).name} + {args.out.name}"})
        print(f"wrote {args.output}")
        return

    cfg = load_config(args.config, [f"data.lr_patch={args.lr_patch}"])
    samples = recipe_samples(cfg)
    print(f"CPU {cpu_name()}, 1 thread, torch {torch.__version__}; ×{samples.scale}, LR {args.lr_patch}², "
          f"batch {args.batch}", flush=True)
    torch.manual_seed(cfg.train.seed)
    net = LRRestorer(args.channels, args.blocks)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    held = [pairs(samples, 10_000_000 + i, args.batch) for i in range(4)]
    meta = {"channels": str(args.channels), "blocks": str(args.blocks), "config": str(args.config)}
    t0 = time.process_time()
    for step in range(1, args.steps + 1):
        lr, clean = pairs(samples, step, args.batch)
        loss = (net(lr) - clean).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.every == 0 or step == args.steps:
            with torch.no_grad():
                before = sum(lr_psnr(x, c) for x, c in held) / len(held)
                after = sum(lr_psnr(net(x), c) for x, c in held) / len(held)
            print(f"step {step}: held-out LR PSNR {before:.2f} → {after:.2f} dB "
                  f"({(time.process_time() - t0) / 3600:.2f} CPU-h)", flush=True)
            save_atomically(net.state_dict(), args.out, meta)


if __name__ == "__main__":
    main()
