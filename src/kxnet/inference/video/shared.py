"""One video, many processes (``torchrun``): its shots dealt out, the pieces joined.

Rank 0 scans the clip and hands the scan to the others; the shots are dealt by frame count
(:func:`kxnet.parallel.shard`); each process estimates its shots' kernels and writes its frames
as a piece (a hidden file beside the output, its frames on their original timestamps, no
sound); rank 0 then copies the pieces' packets in order into the output together with the
source's sound, writes it atomically and removes the pieces. Each piece starts on a keyframe
and is encoded without B-frames, so the joined stream's decoding order is the pieces' order.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ...io import ImageError, atomic_path
from .codec import AudioOut, audio_plan, output_plan
from .shots import _av, _open, _reason, detect_shots
from .upscale import _kernel_prefix, _write_kernels, estimate_shot_kernels, upscale_video

__all__ = ["join_pieces", "upscale_video_shared"]


def join_pieces(pieces: list[Path], src: Path, dst: Path) -> str:
    """Copy the video packets of ``pieces`` (in order) and the sound of ``src`` into ``dst``,
    atomically; returns what became of the sound."""
    av = _av()
    container_format, _ = output_plan(dst, None, "yuv420p")
    with atomic_path(dst) as tmp, contextlib.ExitStack() as stack:
        first = stack.enter_context(av.open(str(pieces[0])))
        out = av.open(str(tmp), "w")
        stack.callback(out.close)
        vout = out.add_stream_from_template(first.streams.video[0])
        source, _ = _open(src)
        stack.enter_context(source)
        had = bool(source.streams.audio)
        audio = AudioOut(out, audio_plan(container_format, source.streams.audio))
        for path in pieces:
            with av.open(str(path)) as piece:
                for packet in piece.demux(piece.streams.video[0]):
                    if packet.dts is not None:       # None: the demuxer's end-of-stream marker
                        packet.stream = vout
                        out.mux(packet)
        if audio:
            for packet in source.demux(*(s for s in source.streams.audio if s.index in audio.streams)):
                audio.add(packet)
            audio.flush()
    return "kept" if audio else ("dropped (no audio codec this container takes)" if had else "none in source")


def upscale_video_shared(src, dst, upscaler, group, *, save_kernels=False, progress: bool = True, **options) -> dict | None:
    """:func:`~kxnet.inference.video.upscale_video` with the shots shared by the processes of
    ``group`` (a :class:`kxnet.parallel.Group`); every process calls it. Returns the report on
    rank 0, None elsewhere; a failure on any process fails the video on every one."""
    from ...parallel import shard

    src, dst = Path(src), Path(dst)
    scan, error = None, None
    if group.is_main:
        try:
            scan = detect_shots(src, progress=progress)
        except (ImageError, ValueError, OSError) as e:
            error = str(e)
    scan, error = group.broadcast((scan, error))
    if error:
        raise ImageError(None, error)
    mine = shard([float(s.frames) for s in scan.shots], group.world_size, group.rank)
    piece = dst.with_name(f".{dst.stem}.piece{group.rank}{dst.suffix}")
    # no B-frames: a piece's decoding order is then its display order, and pieces join in order
    encoder_options = {**(options.pop("encoder_options", None) or {}), "bf": "0"}
    report, kernels, error = None, {}, None
    try:
        if mine:
            kernels = estimate_shot_kernels(src, scan, upscaler, only_shots=mine, progress=False)
            report = upscale_video(src, piece, upscaler, scan=scan, kernels=kernels, only_shots=mine,
                                   encoder_options=encoder_options, progress=progress and group.is_main, **options)
    except (ImageError, ValueError, OSError, RuntimeError) as e:
        error = f"{src}: {' '.join(str(e).split())}"
    results = group.gather((mine, report, kernels, error, str(piece) if report else None))
    outcome = None
    if group.is_main:
        try:   # whatever happens, the others must hear of it: they wait in the broadcast below
            outcome = _join(results, scan, src, dst, upscaler.scale, save_kernels)
        except Exception as e:  # noqa: BLE001 - reported to every process, then raised there
            outcome = f"{dst}: {type(e).__name__}: {' '.join(str(e).split())}"
    outcome = group.broadcast(outcome)
    if isinstance(outcome, str):
        raise ImageError(None, outcome)
    return outcome if group.is_main else None


def _join(results, scan, src: Path, dst: Path, scale: int, save_kernels) -> dict | str:
    """On rank 0: the joined video and its report, or the first error (every piece removed)."""
    pieces = sorted((r for r in results if r[4]), key=lambda r: min(r[0]))
    try:
        errors = [r[3] for r in results if r[3]]
        if errors:
            return errors[0]
        audio = join_pieces([Path(r[4]) for r in pieces], src, dst)
    except (ImageError, OSError, ValueError) as e:
        return f"{dst}: cannot join the pieces ({_reason(e)})"
    finally:
        for r in results:
            if r[4]:
                Path(r[4]).unlink(missing_ok=True)
    kernels = {k: v for r in results for k, v in r[2].items()}
    report = dict(pieces[0][1])
    report.update(output=str(dst), frames=sum(r[1]["frames"] for r in pieces), audio=audio, processes=len(results),
                  shots=sorted((s for r in pieces for s in r[1]["shots"]), key=lambda s: s["index"]),
                  seconds={"total": max(r[1]["seconds"]["total"] for r in pieces)})
    if save_kernels not in (None, False):
        report["kernel_files"] = _write_kernels(_kernel_prefix(save_kernels, dst), scan, kernels, src, dst, scale)
    return report
