"""``kxnet benchmark``: the paper's protocol on shipped (or given) models, beside the paper."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("benchmark", help="score models on regenerated Set5/Set14/B100 beside the paper's numbers",
                       description="Regenerate the paper's test sets (setting 1: Gaussian8; setting 2: 8 anisotropic "
                                   "kernels), score each model and bicubic, and write results.md, results.json, "
                                   "stage_psnr.png, kernel_width.png and kernels_<model>_<set>.png. Default cells: "
                                   "complete Set5, Set14 and B100 at σn 0, and Set5 and Set14 at σn 5 and 15 "
                                   "(setting 2). Finished cells are cached in --work, keyed by the weights.")
    p.add_argument("--models", nargs="+", default=None,
                   help="shipped model names or weights files (default: every shipped model)")
    p.add_argument("--data", default=str(Path("..") / "shared" / "data" / "benchmarks"),
                   help="folder holding Set5/, Set14/, B100/ HR images")
    p.add_argument("--sets", nargs="+", default=None, help="only these sets (default Set5 Set14 B100)")
    p.add_argument("--max-images", nargs="*", default=[], metavar="SET=N",
                   help="evaluate only the first N images of a set, e.g. B100=20 (reported as such)")
    p.add_argument("--noise", nargs="+", type=float, default=None,
                   help="these noise levels on every set (setting 2; default: 0 5 15 on Set5/Set14, 0 on B100)")
    p.add_argument("--oracle", action="store_true",
                   help="also run each model non-blind with the true kernels (the oracle column)")
    p.add_argument("--work", default="runs/benchmark_sets", help="cache of regenerated sets and finished cells")
    p.add_argument("--out", default="runs/benchmark", help="where the table and plots go")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-sweep", action="store_true", help="skip the kernel-width sweep")
    return p


def _cells(sets: list[str] | None, noise: list[float] | None) -> dict:
    from ..inference.benchmark import DEFAULT_CELLS

    plan = {}
    for setting, default in DEFAULT_CELLS.items():
        names = sets or list(default)
        levels = (0.0,) if setting == 1 else None
        plan[setting] = {n: levels or tuple(noise or default.get(n, (0.0,))) for n in names}
    return plan


def run(args) -> int:
    from ..inference.benchmark import run_benchmark
    from ..models import load_model
    from ..models.loading import shipped_models

    names = args.models or list(shipped_models())
    if not names:
        raise ValueError("no shipped models are installed; pass --models PATH")
    limits = {}
    for item in args.max_images:
        set_name, _, n = item.partition("=")
        if not n.isdigit():
            raise ValueError(f"--max-images takes SET=N, got {item!r}")
        limits[set_name] = int(n)
    models = [(n, load_model(n, device=args.device)) for n in names]
    report = run_benchmark(models, Path(args.data), Path(args.out), Path(args.work), _cells(args.sets, args.noise),
                           limits, args.device, args.oracle, sweep_set=None if args.no_sweep else "Set5")
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.md, results.json, stage_psnr.png, kernels_*.png"
          + ("" if args.no_sweep else ", kernel_width.png") + f" in {report['seconds']:.0f} s")
    return 0
