"""Does a KXNet's kernel estimate use the image? Two probes of the K-steps, no training.

    python scripts/kernel_step_probe.py kxnet_x4.setting2 runs/x4_cont/val_set --gammas 1 4 16

1. Per stage, on the narrowest and the widest kernel of the set's first image: the size of the
   data step γ/10·∇_K relative to the incoming kernel, and how far the K-net moves the kernel
   (both as ‖·‖/‖K‖). A K-net that makes the same change for a narrow and a wide true kernel
   is not reading the image.
2. The step sizes γ scaled at inference by each factor of ``--gammas``: the set's mean kernel
   unit-sum L1 (0 exact, 2 disjoint) and PSNR. Where a larger data step changes nothing, the
   prox nets have learnt to ignore their input kernel.
3. ``--least-squares``: on every pair of the set's first image, the kernel that best explains
   Y from a given X (non-negative least squares of ‖D_K X − Y‖², then scaled to unit sum) and
   its unit-sum L1 to the truth, for X = the true HR image, the last stage's X of the blind
   forward and of the forward given the true kernel. The K-step's data term can only point at
   the true kernel as far as the X it is given allows. Needs scipy (installed with the test
   extra's scikit-image); slow at ×4 (≈1 min per pair).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from kxnet.degrade.testsets import load_manifest
from kxnet.inference.evaluate import evaluate
from kxnet.io import read_image, to_tensor
from kxnet.metrics.kernel import kernel_l1
from kxnet.models.kxnet import GAMMA_DIVISOR, kernel_step_gradient
from kxnet.models.loading import load_model
from kxnet.physics import blur_downsample


def stage_moves(model, y: torch.Tensor) -> list[tuple[float, float]]:
    """(‖data step‖/‖K‖, ‖K-net output − K‖/‖K‖) for every stage of a blind forward of ``y``."""
    moves = []

    def record(stage, args, out):
        x, y_, k, _aux, gamma = args
        step = gamma / GAMMA_DIVISOR * kernel_step_gradient(x, y_, k, stage.scale)
        moves.append(((step.norm() / k.norm()).item(), ((out[0] - k).norm() / k.norm()).item()))

    hooks = [stage.register_forward_hook(record) for stage in model.K_stage]
    try:
        with torch.no_grad():
            model(y)
    finally:
        for h in hooks:
            h.remove()
    return moves


def least_squares_kernel(x: torch.Tensor, y: torch.Tensor, size: int, scale: int) -> np.ndarray:
    """argmin_{K ≥ 0} ‖D_K X − Y‖², scaled to unit sum: D_K is linear in K, so its matrix has
    one column per tap (the operator applied to that tap's unit kernel)."""
    from scipy.optimize import nnls

    taps = torch.eye(size * size, dtype=x.dtype).reshape(-1, size, size)
    a = torch.stack([blur_downsample(x, t[None], scale).reshape(-1) for t in taps], dim=1)
    k, _ = nnls(a.numpy(), y.reshape(-1).numpy(), maxiter=2000)
    return (k / max(k.sum(), 1e-12)).reshape(size, size)


def least_squares_probe(model, set_dir: Path, pairs: list[dict], scale: int, size: int) -> None:
    model = model.double()
    rows = []
    for pair in pairs:
        y = to_tensor(read_image(set_dir / pair["lr"]).rgb).double()
        hr = to_tensor(read_image(set_dir / pair["hr"]).rgb).double()
        hr = hr[..., : y.shape[-2] * scale, : y.shape[-1] * scale]
        k_true = np.load(set_dir / pair["kernel"])
        with torch.no_grad():
            blind = model(y)
            given = model(y, torch.from_numpy(k_true))
        row = [kernel_l1(least_squares_kernel(x, y, size, scale), k_true)
               for x in (hr, blind.stage_images[-1], given.stage_images[-1])]
        rows.append(row + [kernel_l1(blind.kernel[0].numpy(), k_true)])
        print(f"{pair['kernel_tag']}: kernel L1 of least squares from X = HR {row[0]:.3f}, blind X^T "
              f"{row[1]:.3f}, X^T given the true kernel {row[2]:.3f}; the model's kernel {rows[-1][3]:.3f}")
    mean = np.mean(rows, axis=0)
    print(f"mean: HR {mean[0]:.3f}, blind X^T {mean[1]:.3f}, X^T given K {mean[2]:.3f}, model {mean[3]:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="weights or a shipped model name")
    ap.add_argument("set_dir", help="a `kxnet synth` set (e.g. a run's val_set)")
    ap.add_argument("--gammas", type=float, nargs="*", default=[1.0, 4.0, 16.0])
    ap.add_argument("--least-squares", action="store_true", help="run probe 3 (slow)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model).eval()
    manifest = load_manifest(args.set_dir)
    area = {k["tag"]: k["params"]["sigma_x"] * k["params"]["sigma_y"] for k in manifest["kernels"]}
    first = [p for p in manifest["pairs"] if p["hr"] == manifest["images"][0]["hr"]]
    by_width = sorted(first, key=lambda p: area[p["kernel_tag"]])
    for pair in (by_width[0], by_width[-1]):
        y = to_tensor(read_image(Path(args.set_dir) / pair["lr"]).rgb)
        cells = "  ".join(f"t{t}: {s:.3f}/{m:.3f}" for t, (s, m) in enumerate(stage_moves(model, y), 1))
        print(f"{Path(pair['lr']).name}: data step / K-net move (÷‖K‖)  {cells}")
    gamma0 = model.gamma_stage.detach().clone()
    for factor in args.gammas:
        with torch.no_grad():
            model.gamma_stage.copy_(gamma0 * factor)
        s = evaluate(model, args.set_dir, "probe", "cpu", progress=False).summary()
        print(f"γ × {factor:g}: PSNR {s['psnr']:.3f} dB, kernel L1 {s['kernel_l1']:.3f}, "
              f"kernel PSNR {s['kernel_psnr']:.2f} dB")
    if args.least_squares:
        with torch.no_grad():
            model.gamma_stage.copy_(gamma0)
        least_squares_probe(model, Path(args.set_dir), first, manifest["scale"], manifest["kernel_size"])


if __name__ == "__main__":
    main()
