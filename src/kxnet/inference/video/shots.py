"""The first pass over a video: its frames as grey thumbnails, cut into shots (see
:mod:`kxnet.inference.video` for why and how)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...io import ImageError

__all__ = ["CUT_RATIO", "MIN_CUT", "MIN_DETAIL", "MIN_SHOT", "THUMB_SIDE", "VIDEO_EXTENSIONS", "Shot", "VideoScan",
           "detect_shots", "is_video"]

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".mpg", ".mpeg",
    ".m2v", ".ts", ".m2ts", ".mts", ".vob", ".3gp", ".3g2", ".ogv", ".mxf", ".y4m", ".dv", ".hevc",
    ".h264", ".264", ".265",
})
THUMB_SIDE = 64            # long side of the grey thumbnails the scan compares
CUT_RATIO = 3.0            # a cut differs this many times more than its neighbourhood's median
MIN_CUT = 0.04             # … and by at least this mean |Δ| (grey levels / 255, ≈ 10 levels)
CUT_WINDOW = 8             # frames on each side whose differences make the local median
MIN_SHOT = 3               # cuts closer than this many frames are merged
MIN_DETAIL = 0.02          # thumbnail deviation below which a frame is too flat for a kernel
_INSTALL = "video support needs PyAV 18 or newer: pip install -U 'kxnet[video]'"


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a video file, by its extension (the CLI dispatches on this)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av():
    try:
        import av
    except ImportError:
        raise ImportError(_INSTALL) from None
    # 18 is the first to write display rotation and to read frames' colour primaries and
    # transfer; with 12.3, most of tests/test_video.py fails on missing attributes.
    if int(av.__version__.split(".")[0]) < 18:
        raise ImportError(f"{_INSTALL} (found {av.__version__})")
    return av


@dataclass(frozen=True)
class Shot:
    """Frames ``start`` … ``end − 1`` (decoding order = display order); times in seconds on
    the source's timeline, ``end_time`` being where the last frame stops showing."""

    index: int
    start: int
    end: int
    start_time: float
    end_time: float
    kernel_frames: tuple[int, ...]

    @property
    def frames(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {"index": self.index, "frames": [self.start, self.end],
                "time": [round(self.start_time, 6), round(self.end_time, 6)],
                "kernel_frames": list(self.kernel_frames)}


@dataclass
class VideoScan:
    """What the first pass learnt about a clip: its shots and what the later passes need.

    ``differences[i]`` is frame i's cut score against frame i−1 (0 for frame 0); kept so a
    threshold can be tuned without decoding again. Picklable, so one process can scan and
    hand the result to others.
    """

    path: str
    frames: int
    width: int
    height: int
    time_base: Fraction             # of the source's video stream
    rate: Fraction                  # average frame rate
    constant_rate: bool             # frames on the 1/rate grid (to the time base's precision),
                                    # or pts unusable: the output is timed at exactly ``rate``
    start_time: float               # seconds, of the first frame
    rotation: int                   # display rotation, degrees counter-clockwise
    colour: dict                    # the first frame's pixel format and colour tags (AVCOL_* numbers)
    duration: float                 # seconds from the first frame's start to the last's end
    shots: list[Shot]
    differences: np.ndarray = field(repr=False)


def _open(path: Path):
    """The opened container and its (first real) video stream, or one clear ImageError."""
    av = _av()
    if not path.exists():
        raise ImageError(path, "file not found")
    if path.is_dir():
        raise ImageError(path, "is a folder, not a video file")
    try:
        container = av.open(str(path), metadata_errors="replace")
    except av.FFmpegError as e:
        raise ImageError(path, f"not a readable video ({_reason(e)})") from None
    # Cover art in music files is a one-frame "video" stream marked attached_pic.
    streams = [s for s in container.streams.video
               if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        kind = "audio only" if container.streams.audio else "no streams FFmpeg can decode"
        container.close()
        raise ImageError(path, f"no video stream ({kind})")
    return container, streams[0]


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return " ".join(str(text).split()) or type(e).__name__


def _set_threads(stream, threads: int) -> None:
    stream.codec_context.thread_count = threads
    stream.codec_context.thread_type = "AUTO"


def _decoded(container, streams, path: Path) -> Iterator:
    """``(packet_stream, frame_or_packet)``: decoded video frames, other streams' packets.

    Demuxing/decoding errors become one ImageError naming the file; errors raised by the
    caller's loop body (the model, the encoder, Ctrl-C) pass through untouched.
    """
    av = _av()
    video = streams[0]
    it = container.demux(*streams)
    n = 0
    while True:
        try:
            packet = next(it)
            frames = packet.decode() if packet.stream.index == video.index else None
        except StopIteration:
            return
        except av.FFmpegError as e:
            raise ImageError(path, f"corrupt or unreadable video data after frame {n} ({_reason(e)})") from None
        if frames is None:
            yield packet.stream, packet
            continue
        for frame in frames:
            n += 1
            yield video, frame


def _difference(g: np.ndarray, before: np.ndarray | None, reach: int = 1) -> float:
    """Mean |Δ| between two thumbnails, the smallest over shifts of up to ``reach`` thumbnail
    pixels per frame apart, so that a pan (at 1080p up to ~30 pixels a frame) does not read
    as a change of picture while a cut, which no shift explains, still does."""
    if before is None:
        return 0.0
    if min(g.shape) <= 2 * reach + 1:
        return float(np.abs(g - before).mean())
    core = g[reach:-reach, reach:-reach]
    h, w = core.shape
    shifts = range(-reach, reach + 1)
    return float(min(np.abs(core - before[reach + dy:reach + dy + h, reach + dx:reach + dx + w]).mean()
                     for dy in shifts for dx in shifts))


def _pick_kernel_frames(start: int, end: int, usable: np.ndarray, k: int) -> tuple[int, ...]:
    """``k`` frames spread evenly over the shot (centres of k equal parts, never its first or
    last frame, where a transition may linger), among the ``usable`` ones if there are enough."""
    inner = np.arange(start + 1, end - 1) if end - start > 2 else np.arange(start, end)
    good = inner[usable[inner]]
    pool = good if len(good) >= min(k, len(inner)) else inner
    if k <= 0 or not len(pool):
        return ()
    if k >= len(pool):
        return tuple(int(f) for f in pool)
    return tuple(int(pool[int((j + 0.5) * len(pool) / k)]) for j in range(k))


def _limits(d: np.ndarray, cut_ratio: float, min_cut: float) -> np.ndarray:
    """Per frame, the difference above which it would start a new shot."""
    padded = np.concatenate([np.full(CUT_WINDOW, np.nan), d[1:], np.full(CUT_WINDOW, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * CUT_WINDOW + 1)
    local = np.concatenate([[0.0], np.nanmedian(windows, axis=1)])
    return np.maximum(min_cut, cut_ratio * local)


def _cuts(d: np.ndarray, skip: np.ndarray, limit: np.ndarray) -> list[int]:
    """Frames that start a new shot (frame 0 excluded); ``d``/``skip`` as in :func:`detect_shots`."""
    n = len(d)
    cuts: list[int] = []
    for i in np.flatnonzero(d > limit):
        # A flash (or glitch) frame f differs from both neighbours, so d[f] and d[f+1] are both
        # high; but f+1 resembles f−1, which no real cut does.
        if i + 1 < n and skip[i + 1] <= limit[i]:
            continue                       # frame i is the flash
        if i >= 2 and skip[i] <= limit[i]:
            continue                       # frame i−1 was, and i returns to the shot
        if i - (cuts[-1] if cuts else 0) < MIN_SHOT:
            continue
        cuts.append(int(i))
    return cuts


def detect_shots(src: str | os.PathLike[str], *, kernel_frames: int = 3, cut_ratio: float = CUT_RATIO,
                 min_cut: float = MIN_CUT, threads: int = 0, progress: bool = False) -> VideoScan:
    """Decode ``src`` once at thumbnail cost and split it into shots (see the module notes).

    ``kernel_frames``: how many frames per shot the kernel is later estimated on.
    ``cut_ratio`` / ``min_cut``: the adaptive cut threshold. ``threads``: FFmpeg decoding and
    scaling threads (0 = FFmpeg's choice). Bad input raises :class:`~kxnet.io.ImageError`.
    """
    from tqdm import tqdm

    path = Path(src)
    container, stream = _open(path)
    with container:
        _set_threads(stream, threads)
        tb = stream.time_base or Fraction(1, 90000)
        pts, diffs, skips, detail = [], [], [], []
        prev = prev2 = None
        rotation, last_duration = 0, None
        with tqdm(total=stream.frames or None, desc="scan", unit="frame", leave=False,
                  disable=not progress) as bar:
            for _, frame in _decoded(container, [stream], path):
                if not pts:
                    rotation = int(round(frame.rotation or 0))
                    colour = {"format": frame.format.name, "rgb": bool(frame.format.is_rgb),
                              "matrix": int(frame.colorspace), "range": int(frame.color_range),
                              "primaries": int(frame.color_primaries), "trc": int(frame.color_trc)}
                    width, height = frame.width, frame.height
                    scale = THUMB_SIDE / max(width, height)
                    tw, th = max(1, round(width * min(scale, 1))), max(1, round(height * min(scale, 1)))
                g = frame.reformat(width=tw, height=th, format="gray", interpolation="AREA",
                                   threads=threads).to_ndarray().astype(np.float32) / 255.0
                diffs.append(_difference(g, prev))
                skips.append(_difference(g, prev2, reach=2))    # two frames apart: twice the motion
                detail.append(float(g.std()))
                pts.append(frame.pts)
                last_duration = frame.duration
                prev2, prev = prev, g
                bar.update()
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    if not pts:
        raise ImageError(path, "no video frames could be decoded")

    n = len(pts)
    rate = Fraction(rate)
    grid = np.arange(n) / float(rate)
    if all(p is not None for p in pts) and all(b > a for a, b in zip(pts, pts[1:])):
        times = np.asarray([float(p * tb) for p in pts])
        # Matroska stores milliseconds, so 23.976 fps arrives as 0, 42, 83 … ms: still constant.
        constant = bool(np.abs(times - times[0] - grid).max() <= float(tb) + 1e-9)
    else:   # missing or disordered pts (some AVI, raw streams): time frames by the rate
        times, constant = grid, True
    if constant or n == 1:
        last_frame = 1 / float(rate)
    else:   # a variable-rate clip's last frame lasts what it says, else as long as the one before
        last_frame = float(last_duration * tb) if last_duration else float(times[-1] - times[-2])
    end_time = float(times[-1]) + last_frame
    d = np.asarray(diffs)
    limit = _limits(d, cut_ratio, min_cut)
    starts = [0, *_cuts(d, np.asarray(skips), limit)]
    ends = [*starts[1:], n]
    # Kernels come from textured frames that are steady: not flat (black), and neither a flash
    # nor next to one (unlike their neighbours); shot starts are excluded anyway.
    jumps = d > limit
    usable = (np.asarray(detail) >= MIN_DETAIL) & ~jumps & ~np.append(jumps[1:], False)
    shots = [Shot(j, a, b, float(times[a]), float(times[b]) if b < n else end_time,
                  _pick_kernel_frames(a, b, usable, kernel_frames))
             for j, (a, b) in enumerate(zip(starts, ends))]
    return VideoScan(path=str(path), frames=n, width=width, height=height, time_base=tb, rate=rate,
                     constant_rate=constant, start_time=float(times[0]), rotation=rotation, colour=colour,
                     duration=end_time - float(times[0]), shots=shots, differences=d.astype(np.float32))


