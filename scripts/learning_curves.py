"""Validation PSNR and kernel error of long training runs against CPU-hours, with the slope
(kxnet.train.curves).

    python scripts/learning_curves.py runs/x4_cont --label "×4 continued" \\
        --anchor runs/x4_cont=960:2148 --out docs/history/study/main_runs
    python scripts/learning_curves.py runs/w1_x4+runs/w2_x4 --clock wall --out docs/history/study/gpu_windows
    python scripts/learning_curves.py runs/cpu_photo_x4 --extra 0 --out docs/history/study/photo_clean

Writes ``<out>.md`` (CPU-hours, PSNR first → last, best, slope over the last third in dB per
CPU-hour, kernel error) and ``<out>.png``. ``--extra SPEC`` plots one of the runs' ``val.extra``
sets instead of the main validation set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kxnet.train.curves import curves_table, joined_curve, plot_curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders; A+B for a run B that continued A's weights")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="x axis: CPU-hours (default) or wall minutes of training (GPU runs)")
    ap.add_argument("--label", nargs="*", default=None)
    ap.add_argument("--anchor", nargs="*", default=[], metavar="RUN=STEP:CPU_SECONDS")
    ap.add_argument("--extra", default=None, metavar="SPEC", help="a val.extra degradation instead of the main set")
    ap.add_argument("--out", default="docs/history/study/main_runs")
    args = ap.parse_args()
    anchors = {}
    for item in args.anchor:
        run, _, rest = item.partition("=")
        step, _, sec = rest.partition(":")
        anchors[Path(run).resolve()] = (int(step), float(sec))
    labels = args.label or [Path(r).name for r in args.runs]
    unit, axis = (("GPU-min", "minutes of training on the GPU (wall)") if args.clock == "wall"
                  else ("CPU-h", "CPU-hours of this run (1 thread)"))
    data = {label: val for run, label in zip(args.runs, labels)
            if (val := joined_curve(run, anchors, args.clock, args.extra))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = curves_table(data, unit)
    out.with_suffix(".md").write_text(table)
    print(table)
    plot_curves(data, out.with_suffix(".png"), axis)
    print(f"wrote {out}.md, {out}.png")


if __name__ == "__main__":
    main()
