"""``kxnet export``: write a trained model as ONNX for one input size, checked in onnxruntime (a method
whose descriptor has an ``export`` hook: KXNet)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("export", help="export a model to ONNX (fixed input size and stage count)",
                       description="Write a KXNet as an ONNX graph for one LR input size (batch 1, blind mode, "
                                   "all of the model's stages), run it in onnxruntime and print the largest "
                                   "difference from the PyTorch model. Inputs: 'lr' (1×3×H×W, RGB in [0, 1]); "
                                   "outputs: 'sr' (1×3×sH×sW, unclamped) and 'kernel' (1×p×p).")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="file to write")
    p.add_argument("--model", required=True, metavar="PATH|NAME", help="a weights file or a shipped model name")
    p.add_argument("--size", nargs=2, type=int, default=[64, 64], metavar=("H", "W"),
                   help="LR input height and width the graph is built for (default 64 64)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="do not run the exported graph in onnxruntime")
    p.add_argument("--time", type=int, default=0, metavar="N",
                   help="also time onnxruntime vs PyTorch on the CPU (median of N runs)")
    return p


def run(args) -> int:
    from pathlib import Path

    from ..export import DEFAULT_OPSET, export_onnx
    from ..models import resolve
    from . import UsageError

    h, w = args.size
    if h < 1 or w < 1:
        raise UsageError(f"--size must be positive, got {h} {w}")
    if args.time < 0:
        raise UsageError("--time must be ≥ 0")
    try:
        import onnx  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError("ONNX export needs the 'onnx' extra: pip install 'kxnet[onnx]'") from exc
    if args.check or args.time:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:  # pragma: no cover
            raise UsageError("checking the export needs onnxruntime (or pass --no-check)") from exc
    model = resolve(args.model, photos=False).model
    report = export_onnx(model, Path(args.onnx), size=(h, w), opset=args.opset or DEFAULT_OPSET,
                         check=args.check, time_repeats=args.time)
    print(report.summary())
    return 0
