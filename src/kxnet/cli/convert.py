"""``kxnet convert``: any checkpoint ``load_model`` reads → our safetensors format."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("convert", help="convert a checkpoint (.pth/.safetensors) to kxnet safetensors",
                       description="Read a checkpoint of any registered architecture (the authors' .pth state "
                                   "dicts, nested or module.-prefixed, or a safetensors file; hyper-parameters "
                                   "inferred from the tensor shapes) and write it as a kxnet safetensors file.")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    storage = p.add_mutually_exclusive_group()
    storage.add_argument("--fp16", action="store_true", help="store float16 tensors (half the size)")
    storage.add_argument("--int8", action="store_true",
                         help="store the convolution weights as int8 with a float32 scale per output channel, "
                              "the rest float16 (half of --fp16; README, \"Weights and results\", says what it cost)")
    p.add_argument("--stages", type=int, metavar="T",
                   help="KXNet only: grow to T stages, the extra ones copies of the last "
                        "(stages are iterations of one solver)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return p


def run(args) -> int:
    from pathlib import Path

    from ..models import architectures, convert_checkpoint
    from . import UsageError

    src, dst = Path(args.checkpoint), Path(args.output)
    if dst.suffix != ".safetensors":
        raise UsageError(f"{dst}: the output must end in .safetensors")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UsageError(f"{dst}: output is the input checkpoint")
    if dst.exists() and not args.overwrite:
        raise UsageError(f"{dst}: exists (use --overwrite to replace)")
    storage = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    config = convert_checkpoint(src, dst, storage=storage, stages=args.stages)
    arch = next(a for a in architectures() if isinstance(config, a.config_class))
    stored = {"fp32": "", "fp16": ", float16", "int8": ", int8 weights"}[storage]
    print(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MB): {arch.name} ×{config.scale}, "
          f"setting {config.setting}, {arch.summary(config)}{stored}")
    return 0
