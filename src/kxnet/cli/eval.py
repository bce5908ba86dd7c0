"""``kxnet eval``: score a method on a ``kxnet synth`` set with the paper's metrics."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("eval", help="PSNR/SSIM (Y channel) of a method on a benchmark set",
                       description="Run a method on every LR image of a set made by `kxnet synth` and report "
                                   "the paper's Y-channel PSNR/SSIM (border crop = scale), plus kernel metrics "
                                   "for methods that estimate kernels.")
    p.add_argument("--data", required=True, help="set folder made by `kxnet synth`")
    p.add_argument("--method", default="bicubic",
                   help="a registered method (bicubic), a shipped model name (see `kxnet models`) or a weights file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--per-stage", action="store_true", help="also report PSNR after every stage")
    p.add_argument("--per-image", action="store_true", help="print every pair, not only the average")
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    p.add_argument("--oracle", action="store_true",
                   help="non-blind: give the method each pair's true kernel (the oracle row)")
    p.add_argument("--json", help="write summary and per-image results as JSON")
    p.add_argument("--csv", help="write per-image results as CSV")
    p.add_argument("--quiet", action="store_true")
    return p


def run(args) -> int:
    from ..degrade.testsets import load_manifest
    from ..inference.evaluate import evaluate, write_reports
    from ..models import resolve

    manifest = load_manifest(args.data)
    model = resolve(args.method, scale=manifest["scale"], device=args.device, photos=False)
    result = evaluate(model.runner, args.data, args.method, args.device, args.per_stage, args.limit,
                      progress=not args.quiet, oracle=args.oracle, arch=model.arch)
    if args.per_image:
        for p in result.pairs:
            extra = f"  kernel PSNR {p.kernel_psnr:.2f}" if p.kernel_psnr is not None else ""
            print(f"{p.lr}\t{p.psnr:.4f}\t{p.ssim:.4f}{extra}")
    s = result.summary()
    mode = ", oracle: true kernels" if args.oracle else ""
    line = f"{s['set']} x{s['scale']} setting {s['setting']} noise {s['noise']:g} [{args.method}{mode}] " \
           f"{s['pairs']} pairs: PSNR {s['psnr']:.4f} dB  SSIM {s['ssim']:.4f}"
    if s["kernel_psnr"] is not None:
        line += (f"  kernel PSNR {s['kernel_psnr']:.2f} dB  kernel L1 {s['kernel_l1']:.3f}  "
                 f"LR-consistency {s['lr_psnr']:.2f} dB")
    print(line)
    if s["stage_psnr"]:
        print("per-stage PSNR: " + " ".join(f"{v:.2f}" for v in s["stage_psnr"]))
    write_reports(result, args.json, args.csv)
    return 0
