"""The folder job: many inputs into one output folder — the code behind ``kxnet sr`` and
:func:`kxnet.super_resolve_folder`.

Three steps, each usable alone:

1. :func:`find_inputs` expands what was named (files, folders, glob patterns, videos) into
   files, each with its sub-folder below the output folder; one bad name fails alone.
2. :func:`plan_folder` names each output (``OUTDIR/<sub>/<stem>_x<s>.<format>``, a video
   ``<stem>_x<s>.mp4`` or its own container) and sorts the files into pending, skipped (the
   output and its JSON sidecar exist: the sidecar is written last, so an output without it was
   cut short and is redone) and failed (an output that would overwrite an input, or that two
   inputs share). Every process of a ``torchrun`` job makes the same plan, so they agree on
   what is left and on who does it without messages.
3. :func:`run_folder` shares the pending files among the processes (:func:`kxnet.parallel.shard`,
   by pixels; a video by its shots), runs each photo through :mod:`kxnet.inference.job` with the
   model its :class:`~kxnet.inference.routing.Router` picks, and gathers what was written and
   what failed (one line per input) into a :class:`FolderResult` every process receives.

Nothing is ever written onto an input, and a failure leaves no partial output. The demo page
takes one photo at a time (:mod:`kxnet.inference.job` is its code path), so it has no folder job.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from PIL import Image as PILImage
from tqdm import tqdm

from ..io import ImageError, atomic_write_json, list_images, read_image
from ..parallel import shard
from .job import run_job, side_paths, write_job
from .upscaler import MIN_INPUT_SIDE
from .video import is_video, upscale_video, upscale_video_shared

__all__ = ["JOB_ERRORS", "VIDEO_CONTAINERS", "FolderResult", "Inputs", "Plan", "find_inputs",
           "output_path", "plan_folder", "run_folder"]

VIDEO_CONTAINERS = (".mp4", ".mkv", ".mov", ".webm")
JOB_ERRORS = (ImageError, ValueError, OSError, RuntimeError)   # one input's failure; anything else stops the job


@dataclass
class Inputs:
    """What the arguments name: ``found`` as ``(file, sub-folder below the output folder)``,
    ``failures`` as ``(argument, message)``."""

    found: list[tuple[Path, Path]] = field(default_factory=list)
    failures: list[tuple[object, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many inputs the job has: the files found and the arguments that found none."""
        return len(self.found) + len(self.failures)


@dataclass
class Plan:
    """The outputs of a folder job: ``pending`` and ``skipped`` as ``(input, output)``,
    ``failures`` as ``(input, one-line message)``; ``total`` counts every input."""

    outdir: Path
    scale: int
    total: int
    pending: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)
    failures: list[tuple[object, str]] = field(default_factory=list)


@dataclass
class FolderResult:
    """What a folder job did: ``written`` and ``skipped`` as ``(input, output)``, ``failures``
    as ``(input, one-line message naming it)``; ``total`` the inputs, ``outdir`` where they went."""

    outdir: Path
    total: int
    written: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)
    failures: list[tuple[object, str]] = field(default_factory=list)


def find_inputs(items: Iterable[str | os.PathLike]) -> Inputs:
    """Expand files, folders and glob patterns (a video file is taken as named); each is
    expanded on its own so one typo fails alone, and a file named twice runs once."""
    found, failures, seen = [], [], set()
    for item in items:
        item = str(item)
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
    return Inputs(found, failures)


def output_path(src: Path, outdir: Path, scale: int, format: str = "png") -> Path:
    """``outdir/<stem>_x<scale>.<format>``; a video keeps its container where it is one of
    :data:`VIDEO_CONTAINERS`, else becomes ``.mp4``."""
    if is_video(src):
        suffix = src.suffix.lower() if src.suffix.lower() in VIDEO_CONTAINERS else ".mp4"
        return outdir / f"{src.stem}_x{scale}{suffix}"
    return outdir / f"{src.stem}_x{scale}.{format}"


def plan_folder(inputs: Inputs | Iterable[str | os.PathLike], outdir: str | os.PathLike, scale: int, *,
                format: str = "png", overwrite: bool = False, kernel=None) -> Plan:
    """Name every output and sort the inputs into pending, skipped and failed (see the module
    docstring). ``inputs``: :func:`find_inputs`' answer, or the names to give it. ``kernel``
    (a given kernel, or None): videos are then refused, since a video gets a kernel per shot."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(f"{outdir}: output exists and is not a folder")
    if not isinstance(inputs, Inputs):
        inputs = find_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    plan = Plan(outdir, scale, inputs.total, failures=list(inputs.failures))
    jobs = [(f, output_path(f, outdir / sub, scale, format)) for f, sub in inputs.found]
    sources = {f.resolve() for f, _ in jobs}
    targets: dict[Path, Path] = {}
    for src, out in jobs:
        resolved = out.resolve()
        if resolved in sources or any(p.resolve() in sources for p in side_paths(out).values()):
            plan.failures.append((src, f"{src}: output {out} would overwrite an input; choose another -o"))
        elif resolved in targets:
            plan.failures.append((src, f"{src}: output {out} is also the output of {targets[resolved]}; "
                                       "rename one or run them separately"))
        elif out.exists() and side_paths(out)["json"].exists() and not overwrite:
            # the sidecar is written last: an output without it was cut short and is redone
            targets[resolved] = src
            plan.skipped.append((src, out))
        elif kernel is not None and is_video(src):
            plan.failures.append((src, f"{src}: --kernel applies to images; a video gets a kernel per shot"))
        else:
            targets[resolved] = src
            plan.pending.append((src, out))
    return plan


class _OneProcess:
    """The group of a job run without ``torchrun`` (:class:`kxnet.parallel.Group`'s interface)."""

    world_size, rank, is_main = 1, 0, True

    def barrier(self) -> None:
        pass

    def gather(self, obj) -> list:
        return [obj]

    def broadcast(self, obj):
        return obj


def _weight(path: Path) -> float:
    """How much work a file is, for sharing files between processes: its pixels (a video's
    frames × pixels), from the header; its size in bytes where the header cannot say."""
    try:
        if is_video(path):
            import av

            with av.open(str(path)) as c:
                v = c.streams.video[0]
                return float(v.width * v.height * max(v.frames, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # a bomb-sized header is reported by the file's own job
            with PILImage.open(path) as im:
                return float(im.width * im.height)
    except Exception:  # an unreadable file fails in its own job, with its own message
        return float(path.stat().st_size) if path.exists() else 0.0


def _problem(e: BaseException, src: Path) -> str:
    """The exception's text without a repeated ``<path>: `` prefix, on one line."""
    text = " ".join(str(e).split()) or type(e).__name__
    prefix = f"{src}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def run_folder(plan: Plan, router, video_upscaler=None, *, group=None, kernel=None, kernel_source: str | None = None,
               save_kernel: bool = False, stages: bool = False, video: dict | None = None, progress: bool = True,
               on_written: Callable[[Path, Path, dict], None] | None = None) -> FolderResult:
    """Run the pending files of ``plan``: photos through ``router``
    (:class:`~kxnet.inference.routing.Router`: each photo's upscaler), videos through
    ``video_upscaler`` (one kernel per shot; ``video``: ``codec``, ``crf``, ``preset``).
    ``kernel`` (``kernel_source`` naming its file) makes every photo non-blind; ``save_kernel``
    and ``stages`` add the kernel files and the stages strip. ``group``: a
    :class:`kxnet.parallel.Group` to share the files with (None: this process alone).
    ``on_written(input, output, sidecar)`` is called for each file this process writes;
    ``progress`` shows a bar over the files and each video's frames. Every process returns the
    whole job's :class:`FolderResult`."""
    group = _OneProcess() if group is None else group
    alone = group.world_size == 1
    video = dict(video or {})
    group.barrier()   # every process has planned before any writes
    # several processes share a video by its shots, every other file whole
    shared = [(src, out) for src, out in plan.pending if is_video(src) and not alone]
    pending = [job for job in plan.pending if job not in shared]
    mine = [pending[i] for i in shard([_weight(src) for src, _ in pending], group.world_size, group.rank)]

    def process_video(src, out, shared_by=None):
        options = dict(codec=video.get("codec"), crf=video.get("crf", 18), preset=video.get("preset", "medium"),
                       save_kernels=out.parent if save_kernel else False, progress=progress)
        if shared_by is None:
            report = upscale_video(src, out, video_upscaler, **options)
        else:
            report = upscale_video_shared(src, out, video_upscaler, shared_by, **options)
        if report is not None:
            atomic_write_json(side_paths(out)["json"], report)
        return report

    def process(src, out):
        if is_video(src):
            return process_video(src, out)
        img = read_image(src, min_size=MIN_INPUT_SIDE)
        job = run_job(None, img, kernel, keep_stages=stages, kernel_source=kernel_source, router=router)
        return write_job(job, out, src, save_kernel=save_kernel, stages=stages)

    written, failed = [], []
    bar = tqdm(mine, desc=f"sr x{plan.scale}" + (f" [{group.rank}]" if not alone else ""), unit="img",
               disable=not progress or len(mine) < 2)
    for src, out in bar:
        try:
            record = process(src, out)
        except JOB_ERRORS as e:
            failed.append((src, f"{src}: {_problem(e, src)}"))
            continue
        written.append((src, out))
        if on_written is not None:
            on_written(src, out, record)
    bar.close()
    for src, out in shared:
        try:
            record = process_video(src, out, group)
        except JOB_ERRORS as e:
            if group.is_main:
                failed.append((src, f"{src}: {_problem(e, src)}"))
            continue
        if group.is_main:
            written.append((src, out))
            if on_written is not None:
                on_written(src, out, record)
    results = group.gather((written, failed))
    result = None
    if group.is_main:
        result = FolderResult(plan.outdir, plan.total, [w for ws, _ in results for w in ws], list(plan.skipped),
                              plan.failures + [f for _, fs in results for f in fs])
    return group.broadcast(result)
