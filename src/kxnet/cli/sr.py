"""``kxnet sr``: super-resolve photos and videos (blind, or with a given kernel).

A thin layer that parses the arguments, builds the upscalers (:func:`kxnet.models.resolve`,
:class:`kxnet.inference.upscaler.Upscaler`, :class:`kxnet.inference.routing.Router`), runs the folder
job of :mod:`kxnet.inference.folder` (which ``kxnet.super_resolve_folder`` runs too; each photo
through :mod:`kxnet.inference.job`, the code the demo shares) and prints what it did.

Outputs go to ``OUTDIR/<stem>_x<s>.<format>`` (inputs found inside a folder argument keep their
sub-folder below OUTDIR), with ``<stem>_x<s>.json`` beside each (model, sizes, tiling, device,
time and the estimated kernel's Gaussian fit). A video named on the command line
(:func:`kxnet.inference.video.is_video`) becomes ``OUTDIR/<stem>_x<s>.mp4`` (or its own
container when that is .mkv, .mov or .webm), one kernel per shot, sound kept. Nothing is ever written onto an input. An
existing output is **skipped** (reported, not an error, so an interrupted folder run resumes)
unless ``--overwrite``. Exit codes: 0 all done (or skipped); 2 the single input, the model or
the arguments are bad; 1 some of several inputs failed (the others are written).
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import BACKEND_CHOICES

FORMATS = ("png", "jpg", "webp")


def add_parser(sub):
    p = sub.add_parser(
        "sr", help="super-resolve images (estimates the blur kernel)",
        description="Super-resolve images with KXNet, estimating each photo's blur kernel (or using "
                    "--kernel). Writes OUTDIR/<stem>_x<scale>.<format> and a JSON sidecar per image; "
                    "existing outputs are skipped unless --overwrite. Large images are processed in "
                    "blended tiles that share one kernel estimate (from the image's centre crop).",
        epilog="exit status: 0 every image written or skipped; 1 some of several inputs failed (the rest "
               "are written, failures listed at the end); 2 a bad single input, model, kernel or argument "
               "(one line on stderr, nothing written).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns, or video files")
    p.add_argument("-o", "--output", default="results", metavar="OUTDIR",
                   help="output folder (default: ./results)")
    p.add_argument("--scale", type=int, choices=[2, 3, 4], default=None,
                   help="upscaling factor (default: the model's; ×4 for the bundled weights)")
    p.add_argument("--model", default=None, metavar="NAME|PATH",
                   help="shipped weights name (see `kxnet models`) or checkpoint file "
                        "(default: chosen per photo: the scale's photo model where a JPEG history is "
                        "found, else kxnet_x<scale>.setting2; see --jpeg-quality)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="CUDA autocast precision (default fp32)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="the engine on the CPU: auto (with the 'openvino' extra: OpenVINO in bf16 where the CPU has "
                        "bf16, its int8 graphs elsewhere for shipped models measured within 0.05 dB; else "
                        "PyTorch's optimised path), torch, openvino, or openvino-int8")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="tile side in LR pixels (default 256; 0 = never tile)")
    p.add_argument("--tile-overlap", type=int, default=None, metavar="N",
                   help="minimum overlap of neighbouring tiles in LR pixels (default 32)")
    p.add_argument("--kernel", default=None, metavar="FILE",
                   help="non-blind: use this kernel (.npy, or an image normalised to sum 1) at every stage")
    p.add_argument("--jpeg-quality", default="auto", metavar="auto|none|Q",
                   help="the input's JPEG history: auto (read from a JPEG file's tables, else estimated from the "
                        "pixels; the default), none (never compressed) or the quality Q you know. Without --model, "
                        "inputs with a JPEG history go to the scale's photo model, the rest to the paper's model")
    p.add_argument("--regions", choices=["auto", "on", "off"], default="auto",
                   help="a kernel per region for photos blurred unevenly: auto (where the photo is large enough "
                        "and its regions disagree; the default), on, or off (one kernel for the photo)")
    p.add_argument("--region-size", type=int, default=None, metavar="N",
                   help="side of a region in LR pixels (default 64, the size auto's rule was measured at)")
    p.add_argument("--save-kernel", action="store_true",
                   help="also write <stem>_x<s>_kernel.npy, a visible _kernel.png and, where regions were "
                        "estimated, _kernel_map.png (each region's kernel over a thumbnail)")
    p.add_argument("--stages", action="store_true",
                   help="also write <stem>_x<s>_stages.png (the estimate over the stages; for tiled "
                        "images, of the kernel crop)")
    p.add_argument("--format", choices=FORMATS, default="png",
                   help="output format (default png: lossless, keeps alpha and 16 bits)")
    p.add_argument("--video-codec", default=None, metavar="ENCODER",
                   help="videos: an FFmpeg encoder (default H.264, VP9 for .webm)")
    p.add_argument("--crf", type=int, default=18, help="videos: the encoder's constant quality (default 18)")
    p.add_argument("--preset", default="medium", help="videos: x264/x265 preset (default medium)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-image lines")
    return p


def run(args) -> int:
    from tqdm import tqdm

    from ..inference.folder import find_inputs, plan_folder, run_folder
    from ..inference.regions import DEFAULT_REGION
    from ..inference.routing import parse_jpeg_quality, router_for
    from ..inference.upscaler import DEFAULT_OVERLAP, Upscaler, load_kernel
    from ..io import ImageError
    from ..models import ScaleMismatchError, resolve
    from ..parallel import Group
    from . import UsageError

    try:
        parse_jpeg_quality(args.jpeg_quality)
    except ValueError as e:
        raise UsageError(f"--jpeg-quality: {e}") from None
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"{outdir}: output exists and is not a folder")
    inputs = find_inputs(args.inputs)
    total = inputs.total
    with Group(args.device) as group:
        alone = group.world_size == 1
        if total == 1 and inputs.failures and alone:
            raise ImageError(None, inputs.failures[0][1])
        try:
            model = resolve(args.model, args.scale, device=group.device)
        except ScaleMismatchError as e:
            raise UsageError(f"{e.source}: checkpoint is ×{e.model_scale} but --scale {e.asked} was asked") from None
        scale = model.scale
        kernel = load_kernel(args.kernel, model.config.kernel_size) if args.kernel else None
        overlap = DEFAULT_OVERLAP if args.tile_overlap is None else args.tile_overlap
        if args.tile is not None and args.tile_overlap is None and args.tile:
            overlap = min(overlap, args.tile // 4)   # a small --tile keeps a proportionate overlap
        # without --model each photo's model follows its degradation estimate (inference.routing)
        router = router_for(model, lambda m: Upscaler(
            m, group.device, tile=args.tile, tile_overlap=overlap, precision=args.precision, progress=not args.quiet,
            regions=args.regions, region_size=args.region_size or DEFAULT_REGION, backend=args.backend),
            given=args.model is not None, jpeg_quality=args.jpeg_quality)
        if kernel is not None and not router.upscaler(model.name).takes_hr_kernel:
            raise UsageError(f"--kernel: a {model.arch.name} model takes no HR blur kernel; run it without --kernel")
        # a video's frame bar is the progress; the tiles of each frame do not get their own
        video_up = Upscaler(model, group.device, tile=args.tile, tile_overlap=overlap, precision=args.precision,
                            regions="off", backend=args.backend)

        # every process makes the same plan (inference.folder), so they agree on what is left and who does it
        plan = plan_folder(inputs, outdir, scale, format=args.format, overwrite=args.overwrite, kernel=kernel)
        say = (lambda msg: None) if args.quiet else tqdm.write
        if group.is_main:
            for src, out in plan.skipped:
                say(f"skipped {src}: {out} exists (use --overwrite to replace)")
        result = run_folder(plan, router, video_up, group=group, kernel=kernel,
                            kernel_source=str(args.kernel) if args.kernel else None, save_kernel=args.save_kernel,
                            stages=args.stages, video=dict(codec=args.video_codec, crf=args.crf, preset=args.preset),
                            progress=not args.quiet,
                            on_written=None if args.quiet else lambda src, out, sc: say(_summary_line(src, out, sc)))
    failures, code = result.failures, 1 if result.failures else 0
    if not group.is_main:
        return code
    if failures and total == 1:
        raise ImageError(None, failures[0][1])
    if not args.quiet:
        print(f"{len(result.written)} written, {len(result.skipped)} skipped, {len(failures)} failed -> {outdir}")
    if failures:
        print(f"kxnet sr: {len(failures)} of {total} inputs failed:", file=sys.stderr)
        for _, msg in failures:
            print(f"  {msg}", file=sys.stderr)
    return code


def _summary_line(src: Path, out: Path, sc: dict) -> str:
    from ..metrics import fit_label

    if "shots" in sc:
        return (f"{src} -> {out}  ({sc['output_size'][0]}×{sc['output_size'][1]}, {sc['frames']} frames, "
                f"{len(sc['shots'])} shot(s), {sc['seconds']['total']:.1f} s, audio {sc['audio']})")
    k = sc["kernel"]
    return (f"{src} -> {out}  ({sc['output']['width']}×{sc['output']['height']}, {sc['seconds']:.1f} s"
            + (f", {sc['tiling']['tiles']} tiles" if sc["tiling"]["tiled"] else "")
            + (f", kernel {fit_label(k)}" if k.get("sigma_x") else "")   # σ₁ ≥ σ₂, θ of σ₁ (FIT_CONVENTION)
            + (", a kernel per region ({}×{})".format(*k["regions"]["grid"]) if (k.get("regions") or {}).get("used")
               else "")
            + (f"; {_degradation_text(sc['degradation'])}, {sc['model']['name']}" if sc.get("degradation") else "")
            + ")")


def _degradation_text(d: dict) -> str:
    from ..degrade.estimate import DegradationEstimate

    return DegradationEstimate.from_dict(d).summary()
