"""Can the noise *before* compression be read from a JPEG's quantised DCT coefficients? A negative
result, kept so that it can be measured again (docs/photo.md, "The degradation estimate").

    python benchmarks/noise_before_jpeg.py          # Set5 and Set14, ×2 and ×4, 4 JPEG cells an image

The cells are benchmarks/degradation_estimate.py's JPEG cells (the same draws), as PNGs of the
decoded pixels with the grid shifted. Beside the shipped patch estimate (the noise left after compression)
it prints a maximum-likelihood σ: the luma AC coefficients of the flattest half of the blocks (by
their five lowest frequencies), from the sixth zig-zag frequency on, taken as zero-mean Gaussian
noise quantised by the table of the quality found; converted to RGB σ as white noise would be.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from degradation_estimate import DATA, benchmark_images

from kxnet.degrade.estimate import _block_dct, _luma, estimate_degradation, ijg_table
from kxnet.hardware import cpu_name

ZIGZAG = np.array([0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
                   13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
                   52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63])
LUMA_GAIN = float(np.sqrt(0.299 ** 2 + 0.587 ** 2 + 0.114 ** 2))    # σ_Y of white RGB noise of σ 1
SIGMAS = np.exp(np.linspace(np.log(0.1), np.log(25), 120))


def quantised_gaussian_sigma(rgb: np.ndarray, quality: int, grid: tuple[int, int], low: int = 6) -> float:
    c = _block_dct(_luma(rgb), *grid)
    steps = ijg_table(quality).astype(np.float64)
    k = np.round(c / steps)
    energy = np.abs(k[:, ZIGZAG[1:low]] * steps[ZIGZAG[1:low]]).sum(1)
    flat = energy <= np.quantile(energy, 0.5)
    kk, q = np.abs(k[flat][:, ZIGZAG[low:]]), steps[ZIGZAG[low:]][None]

    kk, q = torch.from_numpy(kk), torch.from_numpy(q)
    ndtr = torch.special.ndtr

    def loglik(s: float) -> float:
        p = torch.where(kk == 0, 2 * ndtr(0.5 * q / s) - 1, ndtr((kk + 0.5) * q / s) - ndtr((kk - 0.5) * q / s))
        return float(torch.log(p.clamp_min(1e-300)).sum())

    return float(max(SIGMAS, key=loglik)) / LUMA_GAIN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"CPU {cpu_name()}, 1 thread")
    rows = []
    for _, _, cells in benchmark_images(args.data, args.sets, args.scales):
        for _, _, quality, truth, forms in cells:
            if quality is None:
                continue
            rgb = dict((form, pixels) for form, pixels, _ in forms)["png of jpeg"]
            est = estimate_degradation(rgb)
            found = quantised_gaussian_sigma(rgb, est.jpeg_quality or quality, est.grid or (0, 0))
            rows.append((truth, est.noise_sigma, found))
    r = np.array(rows)
    for name, col in (("patch estimate (noise left)", 1), ("quantised-Gaussian σ", 2)):
        ok = 100 * np.mean(np.abs(r[:, col] - r[:, 0]) <= 1.5)
        print(f"{name:<28} within ±1.5 of the σ before compression: {ok:5.1f}% of {len(r)}; "
              f"mean error {np.mean(r[:, col] - r[:, 0]):+.2f}")


if __name__ == "__main__":
    main()
