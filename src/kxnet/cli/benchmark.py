"""``kxnet benchmark``: the paper's protocol on shipped (or given) models, beside the paper."""

from __future__ import annotations

from pathlib import Path

from . import BACKEND_CHOICES


def add_parser(sub):
    p = sub.add_parser("benchmark", help="score models on regenerated Set5/Set14/B100 beside the paper's numbers",
                       description="Regenerate the paper's test sets (setting 1: Gaussian8; setting 2: 8 anisotropic "
                                   "kernels), score each model and bicubic, and write results.md, results.json, "
                                   "stage_psnr.png, kernel_width.png and kernels_<model>_<set>.png. Default cells: "
                                   "complete Set5, Set14 and B100 at σn 0, and Set5 and Set14 at σn 5 and 15 "
                                   "(setting 2). Finished cells are cached in --work, keyed by the weights. Under "
                                   "torchrun the pairs of each cell are shared between the processes "
                                   "(torchrun --nproc_per_node=2 -m kxnet benchmark … fills a 2-core CPU).")
    p.add_argument("--models", nargs="+", default=None,
                   help="shipped model names or weights files (default: every shipped model)")
    p.add_argument("--data", metavar="DIR",
                   help="folder holding Set5/, Set14/, B100/ HR images (the test sets do not ship with the package)")
    p.add_argument("--sets", nargs="+", default=None, help="only these sets (default Set5 Set14 B100)")
    p.add_argument("--max-images", nargs="*", default=[], metavar="SET=N",
                   help="evaluate only the first N images of a set, e.g. B100=20 (reported as such)")
    p.add_argument("--noise", nargs="+", default=None, metavar="SIGMA|DEGRADATION",
                   help="these noise levels on every set (setting 2; default: 0 5 15 on Set5/Set14, 0 on B100), "
                        "or degradations beyond the paper: 5+jpeg75 (σn 5 then JPEG 75), cam+jpeg80 (camera "
                        "noise then JPEG 80); docs/photo.md")
    p.add_argument("--photo", action="store_true",
                   help="the cells beyond the paper instead: Set5 and Set14 at 5+jpeg75, 5+jpeg90 and cam+jpeg80 "
                        "(setting-2 models; --sets narrows them)")
    p.add_argument("--oracle", action="store_true",
                   help="also run each model non-blind with the true kernels (the oracle column)")
    p.add_argument("--work", default="runs/benchmark_sets", help="cache of regenerated sets and finished cells")
    p.add_argument("--out", default="runs/benchmark", help="where the table and plots go")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-sweep", action="store_true", help="skip the kernel-width sweep")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="what runs the network: auto (OpenVINO bf16 for a model whose manifest records a cost of at "
                        "most 0.01 dB in every cell measured both ways, on a bf16 CPU with the extra; PyTorch "
                        "otherwise; never int8), torch (the exact path), openvino or openvino-int8; each cell "
                        "says which ran it")
    return p


def _cells(sets: list[str] | None, noise: list[str] | None, photo: bool = False) -> dict:
    from ..degrade.photo import parse_degradation
    from ..inference.benchmark import DEFAULT_CELLS, PHOTO_CELLS

    levels = None
    if noise:
        try:
            levels = tuple(parse_degradation(float(n) if _is_number(n) else n).spec for n in noise)
        except ValueError as e:
            raise ValueError(f"--noise: {e}") from None
        if photo:
            raise ValueError("--photo picks its own degradations; give --noise without it")
    plan = {}
    for setting, default in DEFAULT_CELLS.items():
        default = PHOTO_CELLS if photo else default
        if setting == 1:
            plan[1] = {} if photo else {n: ("0",) for n in (sets or list(default))}
            continue
        plan[setting] = {n: levels or tuple(default.get(n, ("0",))) for n in (sets or list(default))}
    return plan


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run(args) -> int:
    from ..inference.benchmark import run_benchmark
    from ..models import resolve
    from ..models.zoo import read_manifest
    from ..parallel import Group

    if not args.data:       # checked here, not by argparse, so that a bad option is still the error named
        raise ValueError("--data: give the folder holding Set5/, Set14/, B100/ HR images "
                         "(the test sets do not ship with the package)")
    names = args.models or sorted(read_manifest())
    if not names:
        raise ValueError("no shipped models are installed; pass --models PATH")
    limits = {}
    for item in args.max_images:
        set_name, _, n = item.partition("=")
        if not n.isdigit():
            raise ValueError(f"--max-images takes SET=N, got {item!r}")
        limits[set_name] = int(n)
    plan = _cells(args.sets, args.noise, args.photo)
    with Group(args.device) as group:
        models = [(n, resolve(n, device=group.device, photos=False)) for n in names]
        report = run_benchmark(models, Path(args.data), Path(args.out), Path(args.work), plan, limits, args.device,
                               args.oracle, sweep_set=None if args.no_sweep else "Set5", group=group,
                               backend=args.backend)
    if report is None:      # another process under torchrun: rank 0 reports
        return 0
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.md, results.json, stage_psnr.png, kernels_*.png"
          + ("" if args.no_sweep else ", kernel_width.png") + f" in {report['seconds']:.0f} s"
          + (f" ({report['processes']} processes)" if report["processes"] > 1 else ""))
    return 0
