"""Reading frames in their colours and writing the output video: the encoder, the kept audio,
the colour tags, the timing (see :mod:`kxnet.inference.video`)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...io import Image, ImageError, quantize
from .shots import VideoScan, _av

__all__ = ["Colour", "Writer", "audio_plan", "encoding_options", "output_plan"]


_MATRIX = {1: "itu709", 4: "fcc", 5: "itu601", 6: "itu601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}


@dataclass(frozen=True)
class Colour:
    """How the source's YUV maps to RGB, resolved once so the output is tagged the same."""

    matrix: str          # swscale colorspace name
    tag: int             # AVColorSpace written into the output
    full_range: bool
    primaries: int
    trc: int

    @classmethod
    def of(cls, scan: VideoScan) -> Colour:
        c = scan.colour
        space = c["matrix"] if c["matrix"] in _MATRIX else 1 if scan.height >= 720 else 6  # untagged: as players
        # RGB sources have no range to expand; yuvj* formats are full range by definition.
        full = c["rgb"] or c["format"].startswith("yuvj") or c["range"] == 2
        return cls(_MATRIX[space], space, full, c["primaries"], c["trc"])

    def to_image(self, frame, threads: int) -> Image:
        deep = frame.format.components[0].bits > 8
        rgb = frame.to_ndarray(format="rgb48le" if deep else "rgb24", src_colorspace=self.matrix,
                               src_color_range=2 if self.full_range else 1, dst_color_range=2,
                               interpolation=_exact_conversion(), threads=threads)
        return Image(rgb=rgb.astype(np.float32) / np.float32(65535.0 if deep else 255.0),
                     bit_depth=16 if deep else 8)


def _exact_conversion():
    # swscale's default YUV↔RGB rounding is biased by 1–2 levels through yuv420p and back;
    # accurate rounding with full chroma interpolation brings a round trip within ½ level.
    from av.video.reformatter import Interpolation as I

    return I.BILINEAR | I.ACCURATE_RND | I.FULL_CHR_H_INT


def output_plan(dst: Path, codec: str | None, pix_fmt: str) -> tuple[str, str]:
    """``(container format, video encoder)`` for ``dst``, checked before any decoding."""
    av = _av()
    named = io.BytesIO()
    named.name = dst.name               # FFmpeg guesses the container from the name alone
    try:
        probe = av.open(named, "w")
    except (av.FFmpegError, ValueError):
        raise ImageError(dst, f"unknown video container {dst.suffix or '(no extension)'!r} "
                              "(use e.g. .mp4, .mkv, .mov or .webm)") from None
    with contextlib.closing(probe):
        if codec is None:
            codec = "libx264" if "h264" in probe.supported_codecs else {"vp9": "libvpx-vp9"}.get(
                probe.default_video_codec, probe.default_video_codec)
        try:
            formats = {f.name for f in av.codec.Codec(codec, "w").video_formats or ()}
        except (av.FFmpegError, ValueError):
            raise ImageError(dst, f"no video encoder {codec!r} in this FFmpeg build") from None
        if formats and pix_fmt not in formats:
            raise ImageError(dst, f"encoder {codec} cannot write pixel format {pix_fmt} "
                                  f"(it takes: {', '.join(sorted(formats))})")
        return probe.format.name, codec


def audio_plan(container_format: str, streams) -> list[tuple[object, str]]:
    """``(input stream, "copy" | encoder name)`` per audio stream the output can hold."""
    av = _av()
    with contextlib.closing(av.open(io.BytesIO(), "w", format=container_format)) as probe:
        supported = set(probe.supported_codecs)
    plan = []
    for a in streams:
        probe = av.open(io.BytesIO(), "w", format=container_format)
        try:   # the only reliable test: codec lists accept e.g. FLAC in MOV, whose header then fails
            probe.add_stream_from_template(a)
            probe.start_encoding()
            how = "copy"
        except (av.FFmpegError, ValueError):
            how = "aac" if "aac" in supported else "libopus" if "opus" in supported else ""
        finally:
            with contextlib.suppress(Exception):
                probe.close()
        if how:
            plan.append((a, how))
    return plan


class AudioOut:
    """The kept audio streams of an output container, as :func:`audio_plan` says: copied, or
    re-encoded with the source's rate and layout (Opus at 48 kHz); language and title kept."""

    def __init__(self, out, audio):
        self.out, self.streams = out, {}
        for a, how in audio:
            if how == "copy":
                o = out.add_stream_from_template(a)
            else:
                o = out.add_stream(how, rate=48000 if how == "libopus" else a.codec_context.sample_rate)
                o.layout = a.codec_context.layout
            for key in ("language", "title"):
                if key in a.metadata:
                    o.metadata[key] = a.metadata[key]
            self.streams[a.index] = (o, how)

    def __bool__(self) -> bool:
        return bool(self.streams)

    def add(self, packet) -> None:
        """One demuxed packet of a kept source stream."""
        o, how = self.streams[packet.stream.index]
        if how != "copy":
            for frame in packet.decode():
                self.out.mux(o.encode(frame))
        elif packet.dts is not None:         # None: the demuxer's end-of-stream marker
            packet.stream = o
            self.out.mux(packet)

    def flush(self) -> None:
        for o, how in self.streams.values():
            if how != "copy":
                self.out.mux(o.encode(None))


class Writer:
    """The output container: one super-resolved video stream and the kept audio streams."""

    def __init__(self, path: Path, scan: VideoScan, vin, audio, encoder: str, size: tuple[int, int],
                 pix_fmt: str, options: dict[str, str], colour: Colour, threads: int):
        av = _av()
        self.out = av.open(str(path), "w")
        self.scan, self.colour, self.threads, self.pix_fmt = scan, colour, threads, pix_fmt
        self.fmt = av.VideoFormat(pix_fmt)
        v = self.out.add_stream(encoder, rate=scan.rate)
        v.width, v.height = size
        v.pix_fmt = pix_fmt
        # Constant-rate clips are re-timed on their exact grid, variable ones keep their pts.
        self.time_base = 1 / scan.rate if scan.constant_rate else scan.time_base
        self.first = round(scan.start_time * scan.rate)
        v.time_base = self.time_base
        cc = v.codec_context
        cc.time_base, cc.thread_count, cc.options = self.time_base, threads, options
        if vin.codec_context.sample_aspect_ratio:
            cc.sample_aspect_ratio = vin.codec_context.sample_aspect_ratio
        if not self.fmt.is_rgb:
            cc.colorspace, cc.color_range = colour.tag, 1
            cc.color_primaries, cc.color_trc = colour.primaries, colour.trc
        if scan.rotation:
            v.set_display_rotation(scan.rotation)
        self.video = v
        self.audio = AudioOut(self.out, audio)

    def add_frame(self, rgb: np.ndarray, index: int, source_frame) -> None:
        av = _av()
        deep = self.fmt.components[0].bits > 8
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(quantize(rgb, 16 if deep else 8)),
                                        format="rgb48le" if deep else "rgb24")
        if not self.fmt.is_rgb:
            vf = vf.reformat(format=self.pix_fmt, dst_colorspace=self.colour.matrix, src_color_range=2,
                             dst_color_range=1, interpolation=_exact_conversion(), threads=self.threads)
        vf.time_base = self.time_base
        if self.scan.constant_rate:
            vf.pts, vf.duration = self.first + index, 1
        else:
            vf.pts = source_frame.pts
            if source_frame.duration:        # the last frame's, which sets the duration
                vf.duration = source_frame.duration
        self.out.mux(self.video.encode(vf))

    def add_audio(self, packet) -> None:
        self.audio.add(packet)

    def close(self) -> None:
        self.out.mux(self.video.encode(None))
        self.audio.flush()
        self.out.close()

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self.out.close()


def encoding_options(encoder: str, crf: int | None, preset: str | None, extra: dict | None) -> dict[str, str]:
    options = {}
    if crf is not None and encoder in ("libx264", "libx265", "libvpx-vp9", "libvpx", "libsvtav1"):
        options["crf"] = str(crf)
        if encoder.startswith("libvpx"):
            options["b"] = "0"          # libvpx: CRF alone is only a cap; b=0 makes it constant quality
    if preset is not None and encoder in ("libx264", "libx265"):
        options["preset"] = preset
    return {**options, **{k: str(v) for k, v in (extra or {}).items()}}


