"""Video super-resolution: shots found at the cut, one kernel per shot, timing and sound kept,
nothing left behind when interrupted."""

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", minversion="18")

from kxnet.degrade import degrade
from kxnet.inference.upscaler import Upscaler
from kxnet.inference.video import detect_shots, is_video, upscale_video
from kxnet.io import ImageError, from_tensor, quantize
from kxnet.io.chart import draw_chart
from kxnet.kernels import benchmark_kernels
from kxnet.metrics import kernel_l1
from kxnet.models import load_model
from conftest import perturbed_kxnet, run_in_own_session

ROOT = Path(__file__).resolve().parent.parent

LR = 64                          # LR frame side
PER_SHOT = 6                     # frames per shot
RATE = Fraction(24000, 1001)     # a rational rate, kept exactly
SAMPLE_RATE = 48000
TONE_SAMPLES = round(2 * PER_SHOT / RATE * SAMPLE_RATE)   # as long as the video
AUDIO_TAGS = {"language": "fra", "title": "440 Hz"}     # what a player shows of the sound, to be kept
NARROW, WIDE = 1, 6              # setting-2 ×2 benchmark kernels: σ 0.8/1.6 at 45°, σ 2/4 at 90°


def _hr_frames():
    """Two scenes from the bundled chart: shot 1 the chart, shot 2 the chart turned and
    recoloured (a cut changes the picture), each drifting a little from frame to frame."""
    chart = draw_chart(384)
    other = np.rot90(chart, 1)[..., ::-1]
    side = 2 * LR
    for t in range(PER_SHOT):
        yield 0, chart[40 + t: 40 + t + side, 30 + 2 * t: 30 + 2 * t + side]
    for t in range(PER_SHOT):
        yield 1, other[200 - t: 200 - t + side, 150 + t: 150 + t + side]


def _write_clip(path: Path, kernels):
    """The two shots degraded by their kernels, stored losslessly (FFV1 RGB in Matroska) at
    24000/1001 fps with a 440 Hz sine of the same duration."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("ffv1", rate=RATE)
        v.width = v.height = LR
        v.pix_fmt = "bgr0"
        v.time_base = v.codec_context.time_base = 1 / RATE
        a = out.add_stream("aac", rate=SAMPLE_RATE)
        a.layout = "mono"
        a.metadata.update(AUDIO_TAGS)
        for i, (shot, hr) in enumerate(_hr_frames()):
            hr_t = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)
            lr = degrade(hr_t, torch.from_numpy(kernels[shot]), 2, 0.0)
            frame = av.VideoFrame.from_ndarray(quantize(from_tensor(lr), 8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(TONE_SAMPLES) / SAMPLE_RATE)).astype(np.float32)[None]
        for s in range(0, TONE_SAMPLES, 1024):
            af = av.AudioFrame.from_ndarray(tone[:, s:s + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = SAMPLE_RATE, s
            out.mux(a.encode(af))
        out.mux(a.encode(None))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here (the machine is shared), restored for the tests after these."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def true_kernels():
    ks = benchmark_kernels(2, 2)
    return [ks[NARROW].kernel, ks[WIDE].kernel]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, true_kernels):
    path = tmp_path_factory.mktemp("clip") / "two_shots.mkv"
    _write_clip(path, true_kernels)
    return path


@pytest.fixture(scope="module")
def tiny():
    """A random 2-stage ×2 KXNet: fast, for everything that does not judge the kernels."""
    return Upscaler(perturbed_kxnet(2, 2), "cpu")


def _streams(path):
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], (c.streams.audio[0] if c.streams.audio else None)
        frames = [f for f in c.decode(v)]
        info = {"frames": len(frames), "size": (frames[0].width, frames[0].height),
                "rate": v.average_rate, "video_start": float(frames[0].time),
                "video_duration": float(frames[-1].time + frames[-1].duration * v.time_base - frames[0].time),
                "audio": None}
        if a is not None:
            c.seek(0)
            sound = list(c.decode(a))
            info["audio"] = {"codec": a.codec_context.name, "rate": a.codec_context.sample_rate,
                             "samples": sum(f.samples for f in sound), "start": float(sound[0].time),
                             "tags": {k: a.metadata.get(k) for k in AUDIO_TAGS}}
    return info


# ------------------------------------------------------------------------------ the scan


def test_shots_are_found_at_the_cut(clip):
    scan = detect_shots(clip, kernel_frames=3)
    assert scan.frames == 2 * PER_SHOT and (scan.width, scan.height) == (LR, LR)
    assert [(s.start, s.end) for s in scan.shots] == [(0, PER_SHOT), (PER_SHOT, 2 * PER_SHOT)]
    # Matroska stores times in milliseconds: the frames' own pts are used, to that precision
    assert scan.rate == RATE and scan.constant_rate and scan.time_base == Fraction(1, 1000)
    assert math.isclose(scan.shots[1].start_time, float(PER_SHOT / RATE), abs_tol=1e-3)
    assert math.isclose(scan.duration, float(2 * PER_SHOT / RATE), abs_tol=1e-3)
    for s in scan.shots:   # evenly spread, neither the first nor the last frame of the shot
        assert len(s.kernel_frames) == 3 and s.start < min(s.kernel_frames) and max(s.kernel_frames) < s.end - 1


def test_a_flash_is_not_a_cut_nor_a_kernel_frame(tmp_path):
    """One overexposed frame inside a shot differs from both neighbours; it must neither
    split the shot nor be one of the frames its kernel is estimated on."""
    chart = (draw_chart(384) * 255).astype(np.uint8)
    src = tmp_path / "flash.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width = v.height = LR
        v.pix_fmt = "bgr0"
        for i in range(14):
            a = chart[40 + i: 40 + i + LR, 30: 30 + LR] if i < 8 else chart[300 - i: 300 - i + LR, 250: 250 + LR, ::-1]
            if i == 4:
                a = np.clip(a.astype(int) + 120, 0, 255).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    scan = detect_shots(src, kernel_frames=3)
    assert [(s.start, s.end) for s in scan.shots] == [(0, 8), (8, 14)]
    assert 4 not in scan.shots[0].kernel_frames and len(scan.shots[0].kernel_frames) == 3


def test_is_video_by_extension():
    assert is_video("a/clip.MP4") and is_video("x.mkv") and is_video("y.webm") and is_video("z.mov")
    assert not is_video("photo.png") and not is_video("notes.txt") and not is_video("noext")


def test_bad_inputs_raise_one_clear_error(tmp_path, tiny, clip):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    with pytest.raises(ImageError, match="notes.mp4: not a readable video"):
        detect_shots(text)
    with pytest.raises(ImageError, match="file not found"):
        upscale_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", tiny, progress=False)
    sound = tmp_path / "tone.m4a"
    with av.open(str(sound), "w") as out:
        a = out.add_stream("aac", rate=SAMPLE_RATE)
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = SAMPLE_RATE, 0
        out.mux(a.encode(af))
        out.mux(a.encode(None))
    with pytest.raises(ImageError, match=r"no video stream \(audio only\)"):
        upscale_video(sound, tmp_path / "out.mp4", tiny, progress=False)
    # an output FFmpeg cannot write is refused before any decoding
    with pytest.raises(ImageError, match=r"out.xyz: unknown video container '.xyz'"):
        upscale_video(clip, tmp_path / "out.xyz", tiny, progress=False)
    with pytest.raises(ImageError, match="no video encoder 'nosuchcodec'"):
        upscale_video(clip, tmp_path / "out.mp4", tiny, codec="nosuchcodec", progress=False)
    with pytest.raises(ImageError, match="output would overwrite the input"):
        upscale_video(text, text, tiny, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4", "tone.m4a"]


# ------------------------------------------------------------------------- the full run


def test_shipped_x2_keeps_timing_and_sound_and_one_kernel_per_shot(clip, true_kernels, tmp_path):
    model = load_model("kxnet_x2.setting2", expected_scale=2)
    dst = tmp_path / "out" / "two_shots_x2.mp4"
    report = upscale_video(clip, dst, Upscaler(model, "cpu"), progress=False, save_kernels=tmp_path / "k",
                           threads=1)

    got, source = _streams(dst), _streams(clip)
    assert got["frames"] == 2 * PER_SHOT and got["size"] == (2 * LR, 2 * LR)
    assert got["rate"] == RATE
    assert math.isclose(got["video_duration"], source["video_duration"], abs_tol=1e-3)
    # decoders trim AAC's priming/padding by what each container signals: within one frame
    assert got["audio"]["codec"] == "aac" and got["audio"]["rate"] == SAMPLE_RATE
    assert abs(got["audio"]["samples"] - source["audio"]["samples"]) <= 1024
    assert abs(got["audio"]["samples"] - TONE_SAMPLES) <= 1024
    assert report["audio"] == "kept" and report["audio_streams"][0]["mode"] == "copied"
    assert report["frames"] == 2 * PER_SHOT and report["output_size"] == [2 * LR, 2 * LR]
    assert [s["frames"] for s in report["shots"]] == [[0, PER_SHOT], [PER_SHOT, 2 * PER_SHOT]]

    # each shot's kernel is its own blur's, not the other shot's
    index = json.loads((tmp_path / "k" / "two_shots_x2_kernels.json").read_text())
    assert [s["frames"] for s in index["shots"]] == [[0, PER_SHOT], [PER_SHOT, 2 * PER_SHOT]]
    assert index["shots"][0]["kernel"]["sigma_x"] < index["shots"][1]["kernel"]["sigma_x"]
    estimates = [np.load(tmp_path / "k" / s["kernel_file"]) for s in index["shots"]]
    for j, k in enumerate(estimates):
        assert k.shape == true_kernels[j].shape and math.isclose(k.sum(), 1.0, rel_tol=1e-5)
        assert kernel_l1(k, true_kernels[j]) < kernel_l1(k, true_kernels[1 - j])
    assert sorted(p.name for p in dst.parent.iterdir()) == [dst.name]


def test_interrupted_run_leaves_nothing(clip, tiny, tmp_path):
    dst = tmp_path / "clip_x2.mp4"
    (tmp_path / "keep.txt").write_text("already here")

    def stop(done, total):
        if done == 3:
            assert any(p.name.startswith(".clip_x2.") for p in tmp_path.iterdir())   # being written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_video(clip, dst, tiny, progress=False, on_frame=stop, save_kernels=tmp_path, threads=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_subset_of_shots_and_webm_defaults(clip, tiny, tmp_path):
    """Only shot 1, into WebM: VP9 by default; no audio in a piece of a split run."""
    dst = tmp_path / "piece.webm"
    report = upscale_video(clip, dst, tiny, only_shots=[1], progress=False, threads=1)
    got = _streams(dst)
    assert got["frames"] == PER_SHOT and report["frames"] == PER_SHOT
    assert report["video"]["codec"] == "libvpx-vp9" and got["audio"] is None
    assert [s["index"] for s in report["shots"]] == [1] and report["audio"].startswith("left out")


def test_audio_the_container_cannot_take_is_reencoded(clip, tiny, tmp_path):
    dst = tmp_path / "whole.webm"       # WebM takes neither AAC nor H.264
    report = upscale_video(clip, dst, tiny, progress=False, threads=1)
    got, source = _streams(dst), _streams(clip)
    assert report["audio_streams"][0]["mode"] == "re-encoded (libopus)" and got["audio"]["codec"] == "opus"
    assert abs(got["audio"]["samples"] / got["audio"]["rate"] - TONE_SAMPLES / SAMPLE_RATE) <= 1024 / SAMPLE_RATE
    assert math.isclose(got["video_duration"], source["video_duration"], abs_tol=2e-3)


def test_odd_output_sides_are_cropped_to_even(tmp_path):
    """×3 of an odd-sized clip: yuv420p needs even sides, so the last row/column goes."""
    src = tmp_path / "odd.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 15, 11, "bgr0"
        rng = np.random.default_rng(0)
        for i in range(2):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (11, 15, 3), dtype=np.uint8), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    report = upscale_video(src, tmp_path / "odd_x3.mp4", Upscaler(perturbed_kxnet(3, 2), "cpu"),
                           progress=False, threads=1)
    assert report["output_size"] == [44, 32] and report["cropped_to_even"]
    assert _streams(tmp_path / "odd_x3.mp4")["size"] == (44, 32)


def test_variable_frame_rate_keeps_each_frames_time(tmp_path, tiny):
    """Irregular timestamps (a phone's variable rate) come out as they went in."""
    src = tmp_path / "vfr.mkv"
    times_ms = [0, 40, 100, 120, 200, 260, 270, 400]
    rng = np.random.default_rng(1)
    with av.open(str(src), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 24, 16, "bgr0"
        v.time_base = v.codec_context.time_base = Fraction(1, 1000)
        for t in times_ms:
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    dst = tmp_path / "vfr_x2.mp4"
    report = upscale_video(src, dst, tiny, progress=False, threads=1)
    assert report["timing"].startswith("variable")
    with av.open(str(dst)) as c:
        got = [round(float(f.time) * 1000) for f in c.decode(video=0)]
    assert got == times_ms


class _Nearest:
    """Stands in for an Upscaler (nearest-neighbour ×2, a delta kernel), so that what the
    encoder receives is known exactly."""

    scale, kernel_crop, takes_hr_kernel = 2, 64, True

    def blind_kernels(self, image):
        k = np.zeros((3, 3), np.float32)
        k[1, 1] = 1.0
        return [k]

    def run(self, image, kernel=None, keep_output=False):
        from kxnet.io import Image
        from kxnet.models.output import SROutput

        k = torch.zeros(1, 3, 3)
        k[0, 1, 1] = 1.0
        rgb = image.rgb.repeat(2, axis=0).repeat(2, axis=1)
        return Image(rgb=rgb), k[0].numpy(), {}, SROutput(None, k, [], [k])


PATCHES = np.array([[200, 30, 40], [30, 180, 60], [40, 50, 210], [235, 220, 30],
                    [20, 20, 20], [128, 128, 128], [250, 250, 250], [160, 60, 170]], np.uint8)


@pytest.mark.parametrize("source", ["rgb", "bt709", "bt709-full"])
def test_colours_survive_the_round_trip(tmp_path, source):
    """Flat patches come out the colour they went in, whatever matrix/range the source is in:
    the source's YUV is read with its own tags and the output tagged as it was written."""
    src = tmp_path / f"{source}.mkv"
    picture = np.repeat(np.repeat(PATCHES.reshape(2, 4, 3), 16, axis=0), 16, axis=1)   # 32×64
    with av.open(str(src), "w") as out:
        if source == "rgb":
            v = out.add_stream("ffv1", rate=25)
            v.pix_fmt = "bgr0"
        else:
            v = out.add_stream("libx264", rate=25, options={"qp": "0"})
            v.pix_fmt = "yuv444p"
            v.codec_context.colorspace = v.codec_context.color_primaries = v.codec_context.color_trc = 1
            v.codec_context.color_range = 2 if source.endswith("full") else 1
        v.width, v.height = 64, 32
        for i in range(2):
            f = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if source != "rgb":
                f = f.reformat(format="yuv444p", dst_colorspace="itu709", src_color_range=2,
                               dst_color_range=v.codec_context.color_range)
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    dst = tmp_path / "out.mp4"
    upscale_video(src, dst, _Nearest(), progress=False, threads=1)
    with av.open(str(dst)) as c:
        f = next(c.decode(video=0))
        rgb = f.to_ndarray(format="rgb24", src_color_range=f.color_range, dst_color_range=2,
                           interpolation="BILINEAR").astype(int)
    assert (f.colorspace, f.color_range) == ((6, 1) if source == "rgb" else (1, 1))   # untagged SD → BT.601
    centres = rgb[16::32, 16::32].reshape(-1, 3)            # the middle of each 32×32 output patch
    # a wrong matrix or range is off by 10–30 levels on these colours
    assert np.abs(centres - PATCHES.astype(int)).max() <= 3


def test_rotation_and_pixel_aspect_are_carried_over(tmp_path):
    """A phone clip shot upright (stored sideways + a display rotation), anamorphic pixels."""
    src = tmp_path / "phone.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=30, options={"qp": "0"})
        v.width, v.height, v.pix_fmt = 32, 16, "yuv444p"
        v.codec_context.sample_aspect_ratio = Fraction(4, 3)
        v.set_display_rotation(90)
        for i in range(2):
            f = av.VideoFrame.from_ndarray(np.full((16, 32, 3), 100 + 50 * i, np.uint8), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    dst = tmp_path / "phone_x2.mp4"
    upscale_video(src, dst, _Nearest(), progress=False, threads=1)
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        f = next(c.decode(v))
        assert (f.width, f.height, f.rotation) == (64, 32, 90)
        assert v.sample_aspect_ratio == Fraction(4, 3)


def test_sr_command_line_takes_a_video(clip, tmp_path, capsys):
    from kxnet.cli import main
    from kxnet.models import save_model

    weights = save_model(perturbed_kxnet(2, 2), tmp_path / "tiny.safetensors")
    args = ["sr", str(clip), "-o", str(tmp_path / "out"), "--model", str(weights), "--save-kernel", "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "two_shots_x2.json").read_text())
    assert (tmp_path / "out" / "two_shots_x2.mkv").stat().st_size > 0        # its own container kept
    assert report["frames"] == 2 * PER_SHOT and len(report["shots"]) == 2 and report["audio"] == "kept"
    assert sorted(p.name for p in (tmp_path / "out").glob("two_shots_x2_shot*.npy")) == \
        ["two_shots_x2_shot000.npy", "two_shots_x2_shot001.npy"]
    # an existing output is skipped, and says so: without --quiet (which prints nothing), on stdout
    written = (tmp_path / "out" / "two_shots_x2.mkv").stat().st_mtime_ns
    capsys.readouterr()
    assert main([a for a in args if a != "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"skipped {clip}: " in printed and "0 written, 1 skipped, 0 failed" in printed, printed
    assert (tmp_path / "out" / "two_shots_x2.mkv").stat().st_mtime_ns == written
    k = tmp_path / "k.npy"
    np.save(k, np.ones((3, 3), np.float32))
    assert main(args + ["--overwrite", "--kernel", str(k)]) == 2
    assert "a kernel per shot" in capsys.readouterr().err


def test_torchrun_shares_the_shots_of_one_video(clip, tmp_path):
    """Two processes take a shot each; rank 0 joins the pieces with the sound."""
    import os
    import sys

    from kxnet.models import save_model

    weights = save_model(perturbed_kxnet(2, 2), tmp_path / "tiny.safetensors")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max_restarts=0",
           "-m", "kxnet", "sr", str(clip), "-o", str(tmp_path / "out"), "--model", str(weights), "--save-kernel",
           "--quiet"]
    done = run_in_own_session(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "two_shots_x2.json").read_text())
    assert report["processes"] == 2 and report["frames"] == 2 * PER_SHOT and report["audio"] == "kept"
    assert [s["frames"] for s in report["shots"]] == [[0, PER_SHOT], [PER_SHOT, 2 * PER_SHOT]]
    with av.open(str(tmp_path / "out" / "two_shots_x2.mkv")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 2 * PER_SHOT
        assert c.streams.video[0].average_rate == RATE and len(c.streams.audio) == 1
    # the join puts the sound back whole and in step, its tags kept: as long as the joined video
    # to within one AAC frame (1024 samples, 21 ms; measured 0.491 s of sound, 0.500 s of video,
    # as in the source), and as far from the video's start as in the source to Matroska's 1 ms
    got, source = _streams(tmp_path / "out" / "two_shots_x2.mkv"), _streams(clip)
    sound = got["audio"]["samples"] / got["audio"]["rate"]
    assert abs(sound - got["video_duration"]) <= 1024 / SAMPLE_RATE, (sound, got["video_duration"])
    assert abs(got["audio"]["samples"] - source["audio"]["samples"]) <= 1024
    offset, was = (s["audio"]["start"] - s["video_start"] for s in (got, source))
    assert abs(offset - was) <= 0.001, (offset, was)
    assert source["audio"]["tags"] == AUDIO_TAGS and got["audio"]["tags"] == AUDIO_TAGS
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]     # the pieces are gone
    assert len(list((tmp_path / "out").glob("two_shots_x2_shot*.npy"))) == 2
