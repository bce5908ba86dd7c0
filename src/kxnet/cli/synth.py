"""``kxnet synth``: make a benchmark set the paper's way."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("synth", help="make a benchmark LR/HR set from a folder of HR images",
                       description="Modcrop every HR image and degrade it with the setting's 8 benchmark "
                                   "kernels (docs/protocol.md). Same command, same bytes.")
    p.add_argument("--hr", required=True, help="folder of HR images (e.g. shared/data/benchmarks/Set5)")
    p.add_argument("--setting", type=int, choices=[1, 2], required=True,
                   help="1: isotropic Gaussian8, no noise; 2: anisotropic kernels (+ noise)")
    p.add_argument("--scale", type=int, choices=[2, 3, 4], required=True)
    p.add_argument("--noise", default="0", metavar="SIGMA|DEGRADATION",
                   help="noise σ in 8-bit units (setting 2; paper: 0, 5, 15), or a degradation beyond the paper: "
                        "5+jpeg75 (σ 5 then JPEG 75), cam+jpeg80 (camera noise then JPEG 80); docs/photo.md")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise generator")
    p.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from ..degrade.photo import parse_degradation
    from ..degrade.testsets import synthesise

    try:
        noise = float(args.noise)
    except ValueError:
        noise = args.noise          # a degradation beyond the paper: "5+jpeg75"
    how = parse_degradation(noise)
    m = synthesise(args.hr, args.out, args.setting, args.scale, how, args.seed, args.overwrite,
                   progress=not args.quiet)
    print(f"wrote {len(m['pairs'])} LR/HR pairs ({len(m['images'])} images × {len(m['kernels'])} kernels) to {args.out}")
    return 0
