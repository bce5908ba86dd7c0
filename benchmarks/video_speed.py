"""What super-resolving a video costs per frame, with the shipped setting-2 models.

    python benchmarks/video_speed.py                          # 854×480, 5 frames, ×2 and ×4, 1 thread
    python benchmarks/video_speed.py --scales 2 --frames 5 --size 640x480 --threads 2

A synthetic clip — the bundled test chart (scripts/make_example.py) drifting across the
frame, H.264 CRF 18 yuv420p, with a stereo AAC tone — is written to a temporary folder and
run through :func:`kxnet.inference.video.upscale_video` (default tiles, one shot). The
figures are the run's own timers (``report["seconds"]``):

* ``kernel/shot`` — the one-time blind estimate of the shot's kernel (``kernel_frames``
  centre crops of one tile each, plus decoding up to the last of them; a shot's first and
  last frames are never used, so 3 kernel frames need a clip of 5);
* ``model/frame`` — ``Upscaler.run`` with the shot's kernels, every tile of the frame;
* ``decode/frame`` — demuxing, decoding and YUV→RGB of the upscaling pass (audio copied);
* ``encode/frame`` — RGB→YUV, the encoder and the muxer, at the output size;
* ``scan/frame`` — the shot-detection pass (decode + grey thumbnail);
* ``total/frame`` — everything but the kernel estimate, divided by the frames.

The model's cost does not depend on the picture, so the chart is not blurred first. torch
and FFmpeg use ``--threads`` threads each. Timings on a shared machine are noisy: the load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def make_clip(path: Path, width: int, height: int, frames: int, threads: int) -> None:
    import av

    spec = importlib.util.spec_from_file_location("make_example", ROOT / "scripts" / "make_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    side = max(width, height) + 8 * frames
    chart = (example.draw_chart(side) * 255).round().astype(np.uint8)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25, options={"crf": "18", "preset": "medium"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.codec_context.thread_count = threads
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(chart[4 * i:4 * i + height, 6 * i:6 * i + width]),
                                           format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        n = round(frames / 25 * 48000)
        tone = np.tile((0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)).astype(np.float32), (2, 1))
        for s in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, s:s + 1024]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, s
            out.mux(a.encode(af))
        out.mux(a.encode(None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4], choices=[2, 3, 4])
    ap.add_argument("--size", default="854x480", help="LR frame size WxH (default 854x480)")
    ap.add_argument("--frames", type=int, default=5, help="frames in the clip (default 5)")
    ap.add_argument("--kernel-frames", type=int, default=3, help="frames the shot's kernel is estimated on")
    ap.add_argument("--threads", type=int, default=1, help="torch and FFmpeg threads (default 1)")
    args = ap.parse_args()

    import av

    from kxnet.inference.upscaler import Upscaler
    from kxnet.inference.video import upscale_video
    from kxnet.models import load_model

    torch.set_num_threads(args.threads)
    width, height = (int(x) for x in args.size.lower().split("x"))
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores); torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); PyAV {av.__version__} (FFmpeg libavcodec "
          f"{'.'.join(map(str, av.library_versions['libavcodec']))}), {args.threads} FFmpeg thread(s)")
    print(f"load average before: {load_average()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / f"clip_{width}x{height}.mp4"
        make_clip(clip, width, height, args.frames, args.threads)
        for s in args.scales:
            up = Upscaler(load_model(f"kxnet_x{s}.setting2", expected_scale=s), "cpu")
            t = time.perf_counter()
            r = upscale_video(clip, Path(tmp) / f"out_x{s}.mp4", up, kernel_frames=args.kernel_frames,
                              threads=args.threads, progress=False)
            wall = time.perf_counter() - t
            sec, n = r["seconds"], r["frames"]
            assert n == args.frames and len(r["shots"]) == 1, (n, r["shots"])
            used = len(r["shots"][0]["kernel_frames"])
            rows.append((f"×{s}", "{}×{}".format(*r["output_size"]), up.plan(height, width).count, used,
                         sec["kernels"], sec["model"] / n, sec["decode"] / n, sec["encode"] / n,
                         sec["scan"] / n, (sec["total"] - sec["kernels"]) / n, wall))
    print(f"load average after:  {load_average()}")
    print(f"\n{width}×{height} clip, {args.frames} frames, one shot; tiles {up.tile} LR px "
          f"(overlap {up.tile_overlap}); seconds\n")
    head = ("scale", "output", "tiles/frame", "kernel frames", "kernel/shot", "model/frame", "decode/frame",
            "encode/frame", "scan/frame", "total/frame", "run wall")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in row) + " |")


if __name__ == "__main__":
    main()
