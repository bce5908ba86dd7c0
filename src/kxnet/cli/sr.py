"""``kxnet sr``: super-resolve photos and videos (blind, or with a given kernel).

A thin layer over :func:`kxnet.models.resolve`, :class:`kxnet.inference.upscaler.Upscaler` and
:mod:`kxnet.inference.job` (the code the Python API and the demo share).

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
                        "(default: kxnet_x<scale>.setting2, or the scale's photo model once its cells "
                        "qualify it: `kxnet models` marks the default)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="CUDA autocast precision (default fp32)")
    p.add_argument("--backend", choices=["auto", "torch", "openvino"], default="auto",
                   help="the engine on the CPU: auto (OpenVINO in bf16 where the CPU has bf16 and the 'openvino' "
                        "extra is installed, else PyTorch's optimised path), torch, or openvino")
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


def _expand(inputs: list[str]):
    """``(found, failures)``: found are ``(file, sub-folder below OUTDIR)``, failures
    ``(input, message)``; each input is expanded on its own so one typo fails alone."""
    from ..io import ImageError, list_images

    from ..inference.video import is_video

    found, failures, seen = [], [], set()
    for item in inputs:
        if is_video(item) and Path(item).is_file():
            if Path(item).resolve() not in seen:
                seen.add(Path(item).resolve())
                found.append((Path(item), Path()))
            continue
        try:
            files = list_images([item])
        except ImageError as e:
            failures.append((item, str(e)))
            continue
        if not files:
            failures.append((item, f"{item}: no images found"))
        root = Path(item) if Path(item).is_dir() else None
        for f in files:
            if f.resolve() not in seen:  # a file named twice (directly and in its folder) runs once
                seen.add(f.resolve())
                found.append((f, f.parent.relative_to(root) if root is not None else Path()))
    return found, failures


VIDEO_CONTAINERS = (".mp4", ".mkv", ".mov", ".webm")


def _output(src: Path, outdir: Path, scale: int, args) -> Path:
    from ..inference.video import is_video

    if is_video(src):
        suffix = src.suffix.lower() if src.suffix.lower() in VIDEO_CONTAINERS else ".mp4"
        return outdir / f"{src.stem}_x{scale}{suffix}"
    return outdir / f"{src.stem}_x{scale}.{args.format}"


def _process_video(up, src: Path, out: Path, args, group=None) -> dict | None:
    """One video: shots, a kernel per shot, every frame; the report as the JSON sidecar. With
    ``group`` every process takes some of its shots (rank 0 joins them and reports)."""
    from ..inference.job import side_paths
    from ..inference.video import upscale_video, upscale_video_shared
    from ..io import atomic_write_json

    options = dict(codec=args.video_codec, crf=args.crf, preset=args.preset,
                   save_kernels=out.parent if args.save_kernel else False, progress=not args.quiet)
    if group is None:
        report = upscale_video(src, out, up, **options)
    else:
        report = upscale_video_shared(src, out, up, group, **options)
    if report is not None:
        atomic_write_json(side_paths(out)["json"], report)
    return report


def _process(up, src: Path, out: Path, args, kernel, router=None) -> dict:
    """Super-resolve one file and write its outputs (none left behind on failure)."""
    from ..inference.job import run_job, write_job
    from ..inference.upscaler import MIN_INPUT_SIDE
    from ..inference.video import is_video
    from ..io import read_image

    if is_video(src):
        return _process_video(up, src, out, args)
    img = read_image(src, min_size=MIN_INPUT_SIDE)
    job = run_job(up, img, kernel, keep_stages=args.stages, kernel_source=str(args.kernel) if args.kernel else None,
                  router=router)
    return write_job(job, out, src, save_kernel=args.save_kernel, stages=args.stages)


def _weight(path: Path) -> float:
    """How much work a file is, for sharing files between processes: its pixels (a video's
    frames × pixels), from the header; its size in bytes where the header cannot say."""
    from ..inference.video import is_video

    try:
        if is_video(path):
            import av

            with av.open(str(path)) as c:
                v = c.streams.video[0]
                return float(v.width * v.height * max(v.frames, 1))
        import warnings

        from PIL import Image as PILImage

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # a bomb-sized header is reported by the file's own job
            with PILImage.open(path) as im:
                return float(im.width * im.height)
    except Exception:  # an unreadable file fails in its own job, with its own message
        return float(path.stat().st_size) if path.exists() else 0.0


def run(args) -> int:
    from tqdm import tqdm

    from ..inference.job import side_paths
    from ..inference.regions import DEFAULT_REGION
    from ..inference.routing import Router, parse_jpeg_quality
    from ..inference.upscaler import DEFAULT_OVERLAP, Upscaler, load_kernel
    from ..inference.video import is_video
    from ..io import ImageError
    from ..models import ScaleMismatchError, resolve
    from ..parallel import Group, shard
    from . import UsageError

    try:
        parse_jpeg_quality(args.jpeg_quality)
    except ValueError as e:
        raise UsageError(f"--jpeg-quality: {e}") from None
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"{outdir}: output exists and is not a folder")
    found, failures = _expand(args.inputs)
    total = len(found) + len(failures)
    with Group(args.device) as group:
        alone = group.world_size == 1
        if total == 1 and failures and alone:
            raise ImageError(None, failures[0][1])
        try:
            model = resolve(args.model, args.scale, device=group.device)
        except ScaleMismatchError as e:
            raise UsageError(f"{e.source}: checkpoint is ×{e.model_scale} but --scale {e.asked} was asked") from None
        scale = model.scale
        kernel = load_kernel(args.kernel, model.config.kernel_size) if args.kernel else None
        overlap = DEFAULT_OVERLAP if args.tile_overlap is None else args.tile_overlap
        if args.tile is not None and args.tile_overlap is None and args.tile:
            overlap = min(overlap, args.tile // 4)   # a small --tile keeps a proportionate overlap
        up = Upscaler(model, group.device, tile=args.tile, tile_overlap=overlap, precision=args.precision,
                      progress=not args.quiet, regions=args.regions, region_size=args.region_size or DEFAULT_REGION,
                      backend=args.backend)
        if kernel is not None and not up.takes_hr_kernel:
            raise UsageError(f"--kernel: a {model.arch.name} model takes no HR blur kernel; run it without --kernel")
        # without --model each photo's model follows its degradation estimate (inference.routing)
        def make(name):
            return Upscaler(resolve(name, scale, device=group.device), group.device, tile=args.tile,
                            tile_overlap=overlap, precision=args.precision, progress=not args.quiet,
                            regions=args.regions, region_size=args.region_size or DEFAULT_REGION, backend=args.backend)
        router = Router(scale, make, forced=up if args.model is not None else None, jpeg_quality=args.jpeg_quality,
                        known={model.name: up})
        # a video's frame bar is the progress; the tiles of each frame do not get their own
        video_up = Upscaler(model, group.device, tile=args.tile, tile_overlap=overlap, precision=args.precision,
                            regions="off", backend=args.backend)

        # Every process makes the same plan before any writes, so they agree on what is left
        # to do (a rerun skips finished outputs) and on who does it.
        jobs = [(f, _output(f, outdir / sub, scale, args)) for f, sub in found]
        inputs = {f.resolve() for f, _ in jobs}
        targets: dict[Path, Path] = {}
        pending, skipped = [], []
        for src, out in jobs:
            resolved = out.resolve()
            if resolved in inputs or any(p.resolve() in inputs for p in side_paths(out).values()):
                failures.append((src, f"{src}: output {out} would overwrite an input; choose another -o"))
            elif resolved in targets:
                failures.append((src, f"{src}: output {out} is also the output of {targets[resolved]}; "
                                      "rename one or run them separately"))
            elif out.exists() and side_paths(out)["json"].exists() and not args.overwrite:
                # the sidecar is written last: an output without it was cut short and is redone
                targets[resolved] = src
                skipped.append(f"skipped {src}: {out} exists (use --overwrite to replace)")
            elif kernel is not None and is_video(src):
                failures.append((src, f"{src}: --kernel applies to images; a video gets a kernel per shot"))
            else:
                targets[resolved] = src
                pending.append((src, out))
        group.barrier()
        # several processes share a video by its shots, every other file whole
        shared = [(src, out) for src, out in pending if is_video(src) and not alone]
        pending = [job for job in pending if job not in shared]
        mine = [pending[i] for i in shard([_weight(src) for src, _ in pending], group.world_size, group.rank)]

        say = (lambda msg: None) if args.quiet else tqdm.write
        if group.is_main:
            for line in skipped:
                say(line)
        done, mine_failed = 0, []
        bar = tqdm(mine, desc=f"sr x{scale}" + (f" [{group.rank}]" if not alone else ""), unit="img",
                   disable=args.quiet or len(mine) < 2)
        for src, out in bar:
            try:
                sc = _process(video_up if is_video(src) else up, src, out, args, kernel, router)
            except (ImageError, ValueError, OSError, RuntimeError) as e:
                if total == 1 and alone:
                    raise ImageError(src, _problem(e, src)) from None
                mine_failed.append((src, f"{src}: {_problem(e, src)}"))
                continue
            done += 1
            say(_summary_line(src, out, sc))
        bar.close()
        for src, out in shared:
            try:
                sc = _process_video(video_up, src, out, args, group)
            except (ImageError, ValueError, OSError, RuntimeError) as e:
                if group.is_main:
                    mine_failed.append((src, f"{src}: {_problem(e, src)}"))
                continue
            if group.is_main:
                done += 1
                say(_summary_line(src, out, sc))
        results = group.gather((done, mine_failed))
        if group.is_main:
            done = sum(d for d, _ in results)
            failures += [f for _, fs in results for f in fs]
        code = group.broadcast(1 if failures else 0)
    if not group.is_main:
        return code
    if failures and total == 1:
        raise ImageError(None, failures[0][1])
    if not args.quiet:
        print(f"{done} written, {len(skipped)} skipped, {len(failures)} failed -> {outdir}")
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

    fields = {k: d[k] for k in ("jpeg_quality", "jpeg_source", "chroma", "grid", "noise_sigma")}
    return DegradationEstimate(**fields).summary()


def _problem(e: BaseException, src: Path) -> str:
    """The exception's text without a repeated ``<path>: `` prefix, on one line."""
    text = " ".join(str(e).split()) or type(e).__name__
    prefix = f"{src}: "
    return text[len(prefix):] if text.startswith(prefix) else text
