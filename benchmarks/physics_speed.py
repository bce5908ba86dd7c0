"""Speed of the physics operators against the paper's patch-matrix formulation (CPU).

    python benchmarks/physics_speed.py [--size 1024] [--batch 2] [--scale 4] [--kernel 21] [--repeats 5]

One "step" is what a KXNet stage needs from the physics: A(X;K), Aᵀ(R) and ∇_K ½‖A(X;K) − Y‖².
The straightforward version builds U(X), the (C·p²)×(h·w) patch matrix of the paper, and
gets all three from it (A = Uᵀk, Aᵀ = fold(U-shaped k·r), ∇_K = U r). Both are timed
interleaved in one run; the figure is the median over repeats, and the outputs are compared.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from kxnet.physics import blur_downsample, blur_downsample_adjoint, kernel_gradient, reflect_pad_adjoint
from kxnet.physics.reference import kernel_gradient_reference, patch_matrix


def fast_step(x, k, y, s):
    ax = blur_downsample(x, k, s)
    r = ax - y
    return ax, blur_downsample_adjoint(r, k, s, x.shape[-2:]), kernel_gradient(x, r, s, k.shape[-1])


def patch_matrix_step(x, k, y, s):
    b, c, hh, ww = x.shape
    p = k.shape[-1]
    rad = p // 2
    u = patch_matrix(x, p, s).reshape(b, c, p * p, -1)                # the p²-fold copy of X
    ax = torch.einsum("bcnl,bn->bcl", u, k.reshape(b, -1)).reshape(y.shape)
    r = ax - y
    cols = torch.einsum("bn,bcl->bcnl", k.reshape(b, -1), r.reshape(b, c, -1)).reshape(b, c * p * p, -1)
    padded = F.fold(cols, (hh + 2 * rad, ww + 2 * rad), p, stride=s)
    adj = reflect_pad_adjoint(padded, rad)
    grad = kernel_gradient_reference(x, r, s, p)
    return ax, adj, grad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="HR side")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--kernel", type=int, default=21)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    g = torch.Generator().manual_seed(0)
    s, p = args.scale, args.kernel
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    k = torch.rand(args.batch, p, p, generator=g)
    k /= k.sum((-2, -1), keepdim=True)
    h = -(-args.size // s)
    y = torch.rand(args.batch, 3, h, h, generator=g)

    with torch.inference_mode():
        outs = [fast_step(x, k, y, s), patch_matrix_step(x, k, y, s)]  # warm-up and agreement
        diffs = [float((a - b).abs().max() / b.abs().max()) for a, b in zip(*outs)]
        times = {"fast": [], "patch matrix": []}
        for _ in range(args.repeats):
            for name, fn in (("fast", fast_step), ("patch matrix", patch_matrix_step)):
                t = time.perf_counter()
                fn(x, k, y, s)
                times[name].append(time.perf_counter() - t)
    fast, ref = statistics.median(times["fast"]), statistics.median(times["patch matrix"])
    patch_bytes = args.batch * 3 * p * p * h * h * 4
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"HR batch {args.batch}×3×{args.size}×{args.size}, scale {s}, kernel {p}×{p}, float32, median of {args.repeats}")
    print(f"patch matrix U(X): {patch_bytes / 2**20:.0f} MiB (the fast path allocates none)")
    print(f"A + Aᵀ + ∇K   fast: {fast:.3f} s   patch matrix: {ref:.3f} s   ratio: {ref / fast:.2f}×")
    print("max relative difference (A, Aᵀ, ∇K): " + ", ".join(f"{d:.1e}" for d in diffs))


if __name__ == "__main__":
    main()
