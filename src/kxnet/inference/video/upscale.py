"""Super-resolving a video: the shots' kernels, then every frame non-blind with its shot's
(see :mod:`kxnet.inference.video`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ...io import Image, ImageError, atomic_path, atomic_write_json
from ...metrics import gaussian_fit
from .codec import Colour, Writer, audio_plan, encoding_options, output_plan
from .shots import CUT_RATIO, MIN_CUT, VideoScan, _av, _decoded, _open, _reason, _set_threads, detect_shots

__all__ = ["estimate_shot_kernels", "upscale_video"]


def _check_upscaler(upscaler) -> None:
    if not upscaler.takes_hr_kernel:
        raise ValueError(f"a {upscaler.arch.name} model cannot reuse a kernel estimate non-blind "
                         "(its estimate is not an HR blur kernel), so it cannot keep a shot consistent")


def _combine(estimates: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Stage-by-stage mean of several frames' per-stage kernels, each renormalised to sum 1
    (the mean of unit-sum kernels sums to one already; clipping guards rounding)."""
    out = []
    for stage in zip(*estimates):
        k = np.clip(np.mean(np.stack(stage).astype(np.float64), axis=0), 0.0, None)
        out.append((k / k.sum()).astype(np.float32))
    return out


def estimate_shot_kernels(src: str | os.PathLike[str], scan: VideoScan, upscaler, *,
                          only_shots: Iterable[int] | None = None, threads: int = 0,
                          progress: bool = False) -> dict[int, list[np.ndarray]]:
    """Per shot index, the per-stage kernels (T arrays p×p, each summing to 1) to run it with.

    The blind model runs on the centre crop of each of the shot's ``kernel_frames`` (a crop
    of at most ``upscaler.kernel_crop`` LR pixels, the whole frame for an untiled upscaler),
    and the estimates are averaged stage by stage. ``only_shots`` restricts the work to some
    shots (decoding stops after the last frame needed). A shot without kernel frames (none
    were asked for) is missing from the result and will run blind per frame.
    """
    from tqdm import tqdm

    _check_upscaler(upscaler)
    path = Path(src)
    wanted = set(range(len(scan.shots))) if only_shots is None else set(only_shots)
    owner = {f: s.index for s in scan.shots if s.index in wanted for f in s.kernel_frames}
    if not owner:
        return {}
    pending = {s.index: len(s.kernel_frames) for s in scan.shots if s.index in wanted}
    estimates: dict[int, list[list[np.ndarray]]] = {i: [] for i in pending}
    result: dict[int, list[np.ndarray]] = {}
    last = max(owner)
    container, stream = _open(path)
    with container, tqdm(total=len(owner), desc="kernels", unit="frame", leave=False,
                         disable=not progress) as bar:
        _set_threads(stream, threads)
        colour = Colour.of(scan)
        for i, (_, frame) in enumerate(_decoded(container, [stream], path)):
            if i in owner:
                shot = owner[i]
                estimates[shot].append(_blind_stage_kernels(upscaler, colour.to_image(frame, threads)))
                bar.update()
                if len(estimates[shot]) == pending[shot]:
                    result[shot] = _combine(estimates.pop(shot))
            if i >= last:
                break
    if len(result) != len(set(owner.values())):
        raise ImageError(path, "the video ended earlier than when it was scanned (frames missing)")
    return result


def _blind_stage_kernels(upscaler, image: Image) -> list[np.ndarray]:
    crop = upscaler.kernel_crop or max(image.height, image.width)
    ch, cw = min(crop, image.height), min(crop, image.width)
    y0, x0 = (image.height - ch) // 2, (image.width - cw) // 2
    part = Image(rgb=np.ascontiguousarray(image.rgb[y0:y0 + ch, x0:x0 + cw]), bit_depth=image.bit_depth)
    return upscaler.blind_kernels(part)


def _kernel_prefix(save_kernels: str | os.PathLike[str] | bool, dst: Path) -> Path:
    folder = dst.parent if save_kernels is True else Path(save_kernels)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / dst.stem


def _write_kernels(prefix: Path, scan: VideoScan, kernels: dict[int, list[np.ndarray]], src: Path,
                   dst: Path, scale: int) -> list[str]:
    """One ``<prefix>_shotNNN.npy`` (the final-stage p×p kernel, as ``kxnet sr --kernel``
    takes it) per shot, and ``<prefix>_kernels.json`` describing them all."""
    files, shots = [], []
    for shot in scan.shots:
        if shot.index in kernels:
            f = prefix.with_name(f"{prefix.name}_shot{shot.index:03d}.npy")
            with atomic_path(f) as tmp:
                np.save(tmp, kernels[shot.index][-1])
            files.append(str(f))
            shots.append({**shot.to_dict(), "kernel_file": f.name,
                          "kernel": gaussian_fit(kernels[shot.index][-1])})
    index = prefix.with_name(f"{prefix.name}_kernels.json")
    atomic_write_json(index, {"source": str(src), "output": str(dst), "scale": scale, "shots": shots})
    return [*files, str(index)]


def upscale_video(src: str | os.PathLike[str], dst: str | os.PathLike[str], upscaler, *,
                  codec: str | None = None, crf: int | None = 18, preset: str | None = "medium",
                  pix_fmt: str = "yuv420p", encoder_options: dict[str, str] | None = None,
                  kernel_frames: int = 3, cut_ratio: float = CUT_RATIO, min_cut: float = MIN_CUT,
                  scan: VideoScan | None = None, kernels: dict[int, list[np.ndarray]] | None = None,
                  only_shots: Iterable[int] | None = None, save_kernels: str | os.PathLike[str] | bool = False,
                  threads: int = 0, progress: bool = True,
                  on_frame: Callable[[int, int], None] | None = None) -> dict:
    """Super-resolve every frame of ``src`` ×``upscaler.scale`` into ``dst``; returns a report.

    ``upscaler``: a :class:`~kxnet.inference.upscaler.Upscaler` (its tiling applies to each
    frame). ``codec``: an FFmpeg encoder (default H.264, VP9 for .webm); ``crf`` and
    ``preset`` are passed as the encoder's options of those names (``preset`` only to
    x264/x265; ``None`` leaves the encoder's default); ``encoder_options`` adds/overrides
    any. ``kernel_frames``, ``cut_ratio``, ``min_cut``: see :func:`detect_shots`.
    ``scan`` / ``kernels``: results of :func:`detect_shots` / :func:`estimate_shot_kernels`
    to reuse (else computed here). ``only_shots``: shot indices to process — the output
    then holds only their frames (original timestamps) and no audio, a piece to be joined
    with the others'. ``save_kernels``: a folder (``True``: ``dst``'s) to write
    ``<dst stem>_shotNNN.npy`` per shot and ``<dst stem>_kernels.json`` into, once the
    video is in place. ``threads``: FFmpeg's decoding, scaling and encoding threads (0 =
    its choice; the model's are torch's). ``on_frame(done, total)`` is called after each
    encoded frame.

    ``dst`` is replaced if it exists. Interrupted or failed, nothing is left at ``dst`` or
    beside it. Bad input raises :class:`~kxnet.io.ImageError`, as does an output container
    or encoder FFmpeg lacks (checked before any decoding).
    """
    from tqdm import tqdm

    av = _av()
    _check_upscaler(upscaler)
    src, dst = Path(src), Path(dst)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ImageError(dst, "output would overwrite the input video")
    container_format, encoder = output_plan(dst, codec, pix_fmt)
    options = encoding_options(encoder, crf, preset, encoder_options)

    t0 = time.perf_counter()
    if scan is None:
        scan = detect_shots(src, kernel_frames=kernel_frames, cut_ratio=cut_ratio, min_cut=min_cut,
                            threads=threads, progress=progress)
    t_scan = time.perf_counter() - t0
    selected = sorted(set(range(len(scan.shots))) if only_shots is None else set(only_shots))
    if not selected or not set(selected) <= set(range(len(scan.shots))):
        raise ValueError(f"only_shots must name shots 0…{len(scan.shots) - 1}, got {only_shots!r}")
    t1 = time.perf_counter()
    if kernels is None:
        kernels = estimate_shot_kernels(src, scan, upscaler, only_shots=selected, threads=threads,
                                        progress=progress)
    t_kernels = time.perf_counter() - t1

    shot_of = np.full(scan.frames, -1, np.int32)
    for j in selected:
        shot_of[scan.shots[j].start:scan.shots[j].end] = j
    total, last = int((shot_of >= 0).sum()), int(np.flatnonzero(shot_of >= 0).max())
    s = upscaler.scale
    fmt = av.VideoFormat(pix_fmt)
    # yuv420p stores one chroma sample per 2×2 pixels, so its sides must be even: an odd side
    # loses its last HR row/column (a third of an LR pixel at ×3) rather than gain a copied one.
    ow = scan.width * s - (scan.width * s) % 2 * (not fmt.is_rgb and fmt.chroma_width(2) == 1)
    oh = scan.height * s - (scan.height * s) % 2 * (not fmt.is_rgb and fmt.chroma_height(2) == 1)
    colour = Colour.of(scan)
    dst.parent.mkdir(parents=True, exist_ok=True)

    t2 = time.perf_counter()
    t_model = t_encode = 0.0
    done = 0
    container, vin = _open(src)
    with container, atomic_path(dst) as tmp:
        _set_threads(vin, threads)
        had_audio = bool(container.streams.audio)
        audio = audio_plan(container_format, container.streams.audio) if only_shots is None else []
        audio_streams = [{"stream": a.index, "codec": a.codec_context.codec.name,
                          "mode": "copied" if how == "copy" else f"re-encoded ({how})"} for a, how in audio]
        try:
            writer = Writer(tmp, scan, vin, audio, encoder, (ow, oh), pix_fmt, options, colour, threads)
        except (av.FFmpegError, ValueError) as e:
            raise ImageError(dst, f"cannot write video ({_reason(e)})") from None
        try:
            with tqdm(total=total, desc=f"×{s} {src.name}", unit="frame", disable=not progress,
                      dynamic_ncols=True) as bar:
                i = -1
                for stream, item in _decoded(container, [vin, *(a for a, _ in audio)], src):
                    if stream.index != vin.index:
                        writer.add_audio(item)
                        continue
                    i += 1
                    if i > last and not audio:
                        break
                    if i >= scan.frames or shot_of[i] < 0:
                        continue
                    if (item.width, item.height) != (scan.width, scan.height):
                        raise ImageError(src, f"frame {i} is {item.width}×{item.height}, not {scan.width}×"
                                              f"{scan.height}: streams that change size are not supported")
                    tm = time.perf_counter()
                    result, *_ = upscaler.run(colour.to_image(item, threads), kernel=kernels.get(int(shot_of[i])))
                    te = time.perf_counter()
                    writer.add_frame(result.rgb[:oh, :ow], i, item)
                    t_model += te - tm
                    t_encode += time.perf_counter() - te
                    done += 1
                    bar.update()
                    if on_frame is not None:
                        on_frame(done, total)
                te = time.perf_counter()
                writer.close()
                t_encode += time.perf_counter() - te
        except av.FFmpegError as e:
            writer.abandon()
            raise ImageError(dst, f"cannot write video ({_reason(e)})") from None
        except BaseException:
            writer.abandon()
            raise
        if done != total:
            raise ImageError(src, f"the video ended after {done} of {total} frames (shorter than when scanned)")
    t_upscale = time.perf_counter() - t2

    kernel_files = (_write_kernels(_kernel_prefix(save_kernels, dst), scan, kernels, src, dst, s)
                    if save_kernels not in (None, False) else None)
    if only_shots is not None:
        audio_note = "left out (a subset of shots is a piece to be joined)"
    elif had_audio and not audio:
        audio_note = "dropped (no audio codec this container takes)"
    else:
        audio_note = "kept" if had_audio else "none in source"
    return {
        "source": str(src), "output": str(dst), "scale": s,
        "frames": done, "frames_in_source": scan.frames,
        "shots": [{**scan.shots[j].to_dict(),
                   "kernel": gaussian_fit(kernels[j][-1]) if j in kernels else None} for j in selected],
        "fps": round(float(scan.rate), 6), "rate": str(scan.rate),
        "timing": "constant rate" if scan.constant_rate else "variable (source timestamps kept)",
        "duration": round(scan.duration, 6),
        "input_size": [scan.width, scan.height], "output_size": [ow, oh],
        "cropped_to_even": (ow, oh) != (scan.width * s, scan.height * s),
        "rotation": scan.rotation,
        "video": {"codec": encoder, "pix_fmt": pix_fmt, "options": options, "colour_matrix": colour.matrix},
        "audio": audio_note,
        "audio_streams": audio_streams,
        "kernel_files": kernel_files,
        "seconds": {"scan": round(t_scan, 3), "kernels": round(t_kernels, 3), "upscale": round(t_upscale, 3),
                    "model": round(t_model, 3), "encode": round(t_encode, 3),
                    "decode": round(t_upscale - t_model - t_encode, 3),
                    "total": round(time.perf_counter() - t0, 3)},
    }
