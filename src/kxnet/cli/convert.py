"""``kxnet convert``: any checkpoint ``load_model`` reads → our safetensors format."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("convert", help="convert a checkpoint (.pth/.safetensors) to kxnet safetensors",
                       description="Read a checkpoint of any registered architecture (the authors' .pth state "
                                   "dicts, nested or module.-prefixed, or a safetensors file; hyper-parameters "
                                   "inferred from the tensor shapes) and write it as a kxnet safetensors file.")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    # both flags set one ``storage`` value (save_model's argument); neither keeps float32
    storage = p.add_mutually_exclusive_group()
    p.set_defaults(storage="fp32")
    storage.add_argument("--fp16", dest="storage", action="store_const", const="fp16",
                         help="store float16 tensors (half the size)")
    storage.add_argument("--int8", dest="storage", action="store_const", const="int8",
                         help="store the convolution weights as int8 with a float32 scale per output channel, "
                              "the rest float16 (half of --fp16; README, \"Weights and results\", says what it cost)")
    p.add_argument("--stages", type=int, metavar="T",
                   help="KXNet only: grow to T stages, the extra ones copies of the last "
                        "(stages are iterations of one solver)")
    p.add_argument("--estimator", metavar="KENET",
                   help="KXNet only: a trained KENet's weights that give K⁰ per image from the LR photo "
                        "(instead of the fixed Gaussian)")
    p.add_argument("--pass-kernel", action="store_true",
                   help="with --estimator: zero the K-steps' data step and last prox layer, so the "
                        "estimate reaches every X-step (a start for training; K-nets trained from the "
                        "fixed K⁰ may discard it)")
    p.add_argument("--restorer", metavar="CxN", type=_restorer_shape,
                   help="KXNet only: put an LR restorer of C channels and N residual blocks in front "
                        "(e.g. 64x4), starting as the identity: a start for training on photos "
                        "(docs/photo.md, \"Restoring the LR first\")")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return p


def run(args) -> int:
    from pathlib import Path

    from ..models import architecture, convert_checkpoint
    from . import UsageError

    src, dst = Path(args.checkpoint), Path(args.output)
    if dst.suffix != ".safetensors":
        raise UsageError(f"{dst}: the output must end in .safetensors")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UsageError(f"{dst}: output is the input checkpoint")
    if args.pass_kernel and not args.estimator:
        raise UsageError("--pass-kernel needs --estimator")
    if dst.exists() and not args.overwrite:
        raise UsageError(f"{dst}: exists (use --overwrite to replace)")
    config = convert_checkpoint(src, dst, storage=args.storage, stages=args.stages, estimator=args.estimator,
                                pass_kernel=args.pass_kernel, restorer=args.restorer)
    arch = architecture(_arch_name(dst))
    stored = {"fp32": "", "fp16": ", float16", "int8": ", int8 weights"}[args.storage]
    print(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MB): {arch.name} ×{config.scale}, "
          f"setting {config.setting}, {arch.summary(config)}{stored}")
    return 0


def _restorer_shape(text: str) -> tuple[int, int]:
    import argparse

    try:
        channels, blocks = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CxN (channels x blocks, e.g. 64x4), got {text!r}") from None
    if channels < 1 or blocks < 0:
        raise argparse.ArgumentTypeError(f"expected channels ≥ 1 and blocks ≥ 0, got {text!r}")
    return channels, blocks


def _arch_name(path) -> str:
    """The architecture a file we just wrote records."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {})["arch"]
