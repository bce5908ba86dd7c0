"""Run ×4 KXNet on every RealSRSet photo and draw a panel of a few results.

Every image is super-resolved (failures are reported at the end, exit code 1); for the first
``--rows`` images that worked, one row shows the LR input (nearest-neighbour enlarged to the
SR size) | the SR output | the estimated kernel, with its Gaussian fit. Real photos have no
ground truth: the panel is for looking, not for scoring.

    python scripts/realsrset_panel.py --model kxnet_x4.setting2            # all of RealSRSet
    python scripts/realsrset_panel.py a.png b.png --model m.safetensors --out /tmp/panel.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "real" / "RealSRSet"
DEFAULT_OUT = REPO / "docs" / "realsrset_panel.png"
_GAP, _LABEL = 6, 16


def _row(lr_rgb: np.ndarray, sr_rgb: np.ndarray, kernel: np.ndarray, title: str, height: int) -> PILImage.Image:
    from kxnet.io import to_uint8
    from kxnet.kernels import kernel_to_image

    sr = PILImage.fromarray(to_uint8(sr_rgb))
    lr = PILImage.fromarray(to_uint8(lr_rgb)).resize(sr.size, PILImage.Resampling.NEAREST)
    if sr.height != height:  # same display height for every row; LR stays blocky
        w = max(1, round(sr.width * height / sr.height))
        lr = lr.resize((w, height), PILImage.Resampling.NEAREST)
        sr = sr.resize((w, height), PILImage.Resampling.LANCZOS)
    ker = PILImage.fromarray(kernel_to_image(kernel, size=height)).convert("RGB")
    ker = ker.resize((height, height), PILImage.Resampling.NEAREST)
    width = lr.width + sr.width + ker.width + 4 * _GAP
    row = PILImage.new("RGB", (width, height + 2 * _LABEL + _GAP), "white")
    draw = ImageDraw.Draw(row)
    draw.text((_GAP, 2), title, fill="black")   # ASCII only: Pillow's default font has no σ, θ, ×
    x = _GAP
    for label, im in (("LR (nearest)", lr), ("KXNet SR", sr), ("estimated kernel", ker)):
        draw.text((x, _LABEL + 2), label, fill="black")
        row.paste(im, (x, 2 * _LABEL))
        x += im.width + _GAP
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="*", default=[str(DEFAULT_INPUT)],
                    help=f"images or folders (default: {DEFAULT_INPUT})")
    ap.add_argument("--model", required=True, help="shipped weights name or checkpoint file (×4)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tile", type=int, default=None, help="tile side in LR pixels (default: the library's)")
    ap.add_argument("--rows", type=int, default=4, help="images shown in the panel (default 4)")
    ap.add_argument("--height", type=int, default=256, help="display height of a row in pixels")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"panel PNG (default: {DEFAULT_OUT})")
    args = ap.parse_args(argv)

    from kxnet.api import MIN_INPUT_SIDE, open_model
    from kxnet.inference.upscaler import Upscaler, resolve_device
    from kxnet.io import ImageError, atomic_path, list_images, read_image

    device = resolve_device(args.device)
    model, meta = open_model(args.model, args.scale, device=device)
    up = Upscaler(model, device, tile=args.tile)
    files, failures, rows, done = [], [], [], 0
    for item in args.inputs:
        try:
            files += list_images([item])
        except ImageError as e:
            failures.append(str(e))
    for path in files:
        t0 = time.perf_counter()
        try:
            img = read_image(path, min_size=MIN_INPUT_SIDE)
            out, kernel, info, _ = up.run(img)
        except (ImageError, ValueError, RuntimeError, OSError) as e:
            failures.append(f"{path}: {' '.join(str(e).split())}")
            print(f"FAILED {failures[-1]}", file=sys.stderr)
            continue
        done += 1
        k = info["kernel"]
        print(f"{path.name:<24} {img.width}×{img.height} -> {out.width}×{out.height}  "
              f"{time.perf_counter() - t0:6.1f} s  tiles {info['tiles']:>3}  "
              f"kernel σ {k['sigma_x']:.2f}/{k['sigma_y']:.2f} θ {k['theta_deg']:5.1f}°")
        if len(rows) < args.rows:
            title = (f"{path.name} ({img.width}x{img.height}): kernel sigma {k['sigma_x']:.2f}/{k['sigma_y']:.2f} px, "
                     f"theta {k['theta_deg']:.0f} deg")
            rows.append(_row(img.rgb, out.rgb, kernel, title, args.height))

    if rows:
        width = max(r.width for r in rows)
        header = f"KXNet x{model.config.scale} ({meta['name']}, sha256 {str(meta['sha256'])[:12]}) on real photos"
        panel = PILImage.new("RGB", (width, _LABEL + sum(r.height for r in rows)), "white")
        ImageDraw.Draw(panel).text((_GAP, 2), header, fill="black")
        y = _LABEL
        for r in rows:
            panel.paste(r, (0, y))
            y += r.height
        out_path = Path(args.out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_path) as tmp:
            panel.save(tmp, format="PNG")
        print(f"wrote {out_path} ({len(rows)} rows)")
    print(f"{done} of {len(files)} images done")
    if failures:
        print(f"{len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
