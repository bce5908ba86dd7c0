"""Can a small learned estimator read the noise *before* compression from a JPEG's decoded pixels,
told the quality? The experiment the patch estimate (the noise left) and the quantised-Gaussian
fit (benchmarks/noise_before_jpeg.py) leave open (docs/photo.md, "The degradation estimate").

    python benchmarks/noise_learned.py                       # train ≈20 min of one core, then score
    python benchmarks/noise_learned.py --steps 500 --sets Set5

Training pairs come from the training photos only: 64×64 LR crops (×2 or ×4, a setting-2
training kernel), white noise σ 0–15 or camera noise (as the project synthesises it; truth: the
RMS of its σ over the crop, as benchmarks/degradation_estimate.py defines it), then JPEG at a
quality of 30–95 (4:2:0 or 4:4:4, the block grid shifted at random). The network is the
package's (kxnet.degrade.noise_net: seven 3×3 convolutions of 32 channels on the pixels less
their 3×3 mean and the quality; ``--pooling mean`` the first design). It is scored as the
package runs it (a centre crop of at most 160×160) on degradation_estimate.py's JPEG cells (the
same draws: Set5, Set14, B100; ×2, ×4; the JPEG file and the PNG of its pixels), given the
quality the shipped estimate found, beside the patch estimate (the noise left).

    python benchmarks/noise_learned.py --steps 4000 --save src/kxnet/degrade/noise_before_jpeg.safetensors
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from degradation_estimate import DATA, benchmark_images, noisy_lr

from kxnet.degrade import degrade
from kxnet.degrade.estimate import estimate_degradation
from kxnet.degrade.noise_net import NoiseBeforeJPEG, noise_before_jpeg
from kxnet.degrade.photo import jpeg_roundtrip
from kxnet.degrade.testsets import load_hr
from kxnet.hardware import cpu_name
from kxnet.io import atomic_path, list_images
from kxnet.kernels.settings import sample_training_kernels

TRAIN = DATA.parent / "train"
CROP = 64


def clean_pool(n: int, seed: int) -> list[torch.Tensor]:
    """``n`` noise-free 64×64 LR crops of the training photos, ×2 and ×4 alternately."""
    photos = list_images([TRAIN], recursive=True)
    gen = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        s = 2 if len(out) % 2 == 0 else 4
        hr = load_hr(photos[int(torch.randint(len(photos), (1,), generator=gen))], 1)
        size = CROP * s
        if min(hr.shape[-2:]) < size:
            continue
        top = int(torch.randint(hr.shape[-2] - size + 1, (1,), generator=gen))
        left = int(torch.randint(hr.shape[-1] - size + 1, (1,), generator=gen))
        k = sample_training_kernels(2, s, 1, gen).kernels
        out.append(degrade(hr[None, :, top:top + size, left:left + size].contiguous(), k, s)[0])
    return out


def batch(pool, rng: np.random.Generator, size: int):
    xs, qs, ts = [], [], []
    for _ in range(size):
        clean = pool[int(rng.integers(len(pool)))]
        lr, truth = noisy_lr(clean, rng, bool(rng.random() < 0.3), float(rng.uniform(0, 15)))
        q = int(rng.integers(30, 96))
        chroma = "4:2:0" if rng.random() < 0.6 else "4:4:4"
        xs.append(jpeg_roundtrip(lr[None], q, chroma, (int(rng.integers(8)), int(rng.integers(8))))[0])
        qs.append(q)
        ts.append(truth)
    return torch.stack(xs), torch.tensor(qs), torch.tensor(ts, dtype=torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pool", type=int, default=1500)
    ap.add_argument("--sets", nargs="+", default=["Set5", "Set14", "B100"])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pooling", choices=["mean", "weighted"], default="weighted")
    ap.add_argument("--save", help="write the trained network's weights here (safetensors)")
    ap.add_argument("--load", help="start from these weights (safetensors); with --steps 0, only score them")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam's rate at the start of the cosine decay")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    print(f"CPU {cpu_name()}, 1 thread, torch {torch.__version__}", flush=True)
    t0 = time.process_time()
    pool = clean_pool(args.pool, args.seed)
    net = NoiseBeforeJPEG(pooling=args.pooling)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    rng = np.random.default_rng(args.seed)
    held = batch(pool, np.random.default_rng(args.seed + 1), 256)
    if args.load:
        from safetensors.torch import load_file
        net.load_state_dict(load_file(args.load))
    for step in range(1, args.steps + 1):
        x, q, t = batch(pool, rng, args.batch)
        loss = (net(x, q) - t).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                err = (net(*held[:2]) - held[2]).abs()
            print(f"step {step}: held-out training crops |σ error| mean {err.mean():.2f}, within ±1.5 "
                  f"{100 * (err <= 1.5).float().mean():.1f}% ({(time.process_time() - t0) / 60:.1f} CPU-min)",
                  flush=True)

    if args.save:
        from safetensors.torch import save_file

        with atomic_path(args.save) as tmp:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
                      metadata={"pooling": args.pooling})
    rows = []
    net.eval()
    for s, _, cells in benchmark_images(DATA, args.sets, args.scales):
        for label, _camera, quality, truth, forms in cells:
            if label != "jpeg":
                continue
            for form, rgb, file in forms:
                est = estimate_degradation(rgb, file)
                learned = None
                if est.jpeg_quality is not None:
                    learned = noise_before_jpeg(rgb, est.jpeg_quality, net)
                rows.append(dict(scale=s, form=form, quality=quality, truth=truth, patch=est.noise_sigma,
                                 learned=learned if learned is not None else est.noise_sigma))

    def share(sel, key):
        return f"{100 * np.mean([abs(r[key] - r['truth']) <= 1.5 for r in sel]):.1f}%" if sel else "—"

    print("\n| LR | form | images | patch estimate within ±1.5 | learned within ±1.5 | learned, q ≥ 80 | learned, q < 60 |")
    print("|---|---|---|---|---|---|---|")
    for s in args.scales:
        for form in ("jpeg file", "png of jpeg"):
            sel = [r for r in rows if r["scale"] == s and r["form"] == form]
            print(f"| ×{s} | {form} | {len(sel)} | {share(sel, 'patch')} | {share(sel, 'learned')} | "
                  f"{share([r for r in sel if r['quality'] >= 80], 'learned')} | "
                  f"{share([r for r in sel if r['quality'] < 60], 'learned')} |")
    print(f"mean |error|: patch {np.mean([abs(r['patch'] - r['truth']) for r in rows]):.2f}, "
          f"learned {np.mean([abs(r['learned'] - r['truth']) for r in rows]):.2f}")


if __name__ == "__main__":
    main()
