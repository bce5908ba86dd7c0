"""The user-facing commands: ``kxnet sr``, ``kxnet models``, ``kxnet convert``, and the panel script.

Run in-process through ``kxnet.cli.main`` with a tiny random ×2 model (2 stages) and images of
a few dozen pixels, plus one real subprocess call of the console script.
"""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from kxnet.cli import main
from kxnet.io import read_image
from kxnet.kernels import isotropic_gaussian
from kxnet.models import create_model, load_model, save_model
from kxnet.models import zoo
from kxnet.models.zoo import WeightsEntry, write_manifest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    m = create_model("kxnet", scale=2, setting=2, stages=2)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return save_model(m, tmp_path_factory.mktemp("model") / "tiny_x2.safetensors")


def _img(path, h=12, w=16, mode="RGB", seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    arr = (rng.random((h, w, channels)) * top).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    if dtype == np.uint16:
        import png
        png.Writer(w, h, greyscale=mode.startswith("L"), alpha=mode.endswith("A"), bitdepth=16).write(
            open(path, "wb"), arr.reshape(h, w * channels))
    else:
        PILImage.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path)
    return path


def _sr(argv, capsys):
    code = main(["sr", *map(str, argv), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------- sr


def test_sr_writes_image_sidecar_kernel_and_stages(model_file, tmp_path, capsys):
    src = _img(tmp_path / "in" / "photo.png")
    out = tmp_path / "out"
    code, _, err = _sr([src, "-o", out, "--model", model_file, "--save-kernel", "--stages"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["photo_x2.json", "photo_x2.png", "photo_x2_kernel.npy",
                                                    "photo_x2_kernel.png", "photo_x2_stages.png"]
    assert read_image(out / "photo_x2.png").rgb.shape == (24, 32, 3)
    side = json.loads((out / "photo_x2.json").read_text())
    assert side["model"]["file"] == str(model_file) and side["model"]["name"] == "tiny_x2"
    assert side["model"]["sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert side["scale"] == 2 and side["device"] == "cpu" and side["seconds"] > 0
    assert side["input"] == {"path": str(src), "width": 16, "height": 12, "mode": "RGB", "bit_depth": 8}
    assert side["output"]["width"] == 32 and side["output"]["mode"] == "RGB"
    assert side["tiling"]["tiled"] is False and side["tiling"]["tiles"] == 1
    k = side["kernel"]
    assert k["mode"] == "blind" and k["estimated_on"] == "whole image" and k["size"] == 11
    assert k["sigma_x"] >= k["sigma_y"] > 0 and 0 <= k["theta_deg"] < 180 and len(k["centre_offset"]) == 2
    kernel = np.load(out / "photo_x2_kernel.npy")
    assert kernel.shape == (11, 11) and kernel.sum() == pytest.approx(1, abs=1e-5)
    assert np.asarray(PILImage.open(out / "photo_x2_kernel.png")).max() == 255  # visible, not black

    # an existing output is skipped; --overwrite replaces it
    before = (out / "photo_x2.json").stat().st_mtime_ns
    assert _sr([src, "-o", out, "--model", model_file], capsys)[0] == 0
    assert (out / "photo_x2.json").stat().st_mtime_ns == before
    assert _sr([src, "-o", out, "--model", model_file, "--overwrite"], capsys)[0] == 0
    assert (out / "photo_x2.json").stat().st_mtime_ns != before


def test_sr_keeps_grey_alpha_and_16_bits(model_file, tmp_path, capsys):
    src = tmp_path / "in"
    _img(src / "grey.png", mode="L")
    _img(src / "rgba.png", mode="RGBA", seed=1)
    _img(src / "deep.png", mode="RGB", seed=2, dtype=np.uint16, w=24)  # wider than a tile
    code, _, err = _sr([src, "-o", tmp_path / "out", "--model", model_file, "--tile", "16", "--format", "png"], capsys)
    assert code == 0, err
    grey, rgba, deep = (read_image(tmp_path / "out" / f"{n}_x2.png") for n in ("grey", "rgba", "deep"))
    assert grey.mode == "L" and grey.bit_depth == 8 and grey.rgb.shape == (24, 32, 3)
    assert rgba.mode == "RGBA" and rgba.alpha.shape == (24, 32)
    src_alpha = read_image(src / "rgba.png").alpha
    assert abs(rgba.alpha.mean() - src_alpha.mean()) < 0.05  # alpha upscaled, not dropped or opaque
    assert deep.bit_depth == 16 and deep.mode == "RGB" and deep.rgb.shape == (24, 48, 3)
    side = json.loads((tmp_path / "out" / "deep_x2.json").read_text())
    assert side["output"]["bit_depth"] == 16 and side["tiling"]["tiled"] and side["tiling"]["tiles"] == 2
    assert side["kernel"]["estimated_on"] == {"x": 4, "y": 0, "width": 16, "height": 12}


def test_sr_non_blind_kernel(model_file, tmp_path, capsys):
    src = _img(tmp_path / "a.png")
    k5 = isotropic_gaussian(5, 0.9).numpy()
    np.save(tmp_path / "k.npy", k5)
    code, _, err = _sr([src, "-o", tmp_path / "out", "--model", model_file, "--kernel", tmp_path / "k.npy",
                        "--save-kernel"], capsys)
    assert code == 0, err
    used = np.load(tmp_path / "out" / "a_x2_kernel.npy")
    np.testing.assert_allclose(used[3:8, 3:8], k5 / k5.sum(), atol=1e-6)  # zero-padded to 11×11
    side = json.loads((tmp_path / "out" / "a_x2.json").read_text())
    assert side["kernel"]["mode"] == "given" and side["kernel"]["source"] == str(tmp_path / "k.npy")
    assert side["kernel"]["sigma_x"] == pytest.approx(0.9, abs=0.02)

    np.save(tmp_path / "even.npy", np.ones((4, 4)))
    code, _, err = _sr([src, "-o", tmp_path / "out2", "--model", model_file, "--kernel", tmp_path / "even.npy"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "even.npy" in err and "odd square" in err
    assert not (tmp_path / "out2").exists()


def _bad_inputs(tmp):
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "text.png").write_text("this is not a picture")
    good = _img(tmp / "good.png")
    (tmp / "truncated.png").write_bytes(good.read_bytes()[:-40])
    _img(tmp / "tiny.png", h=2, w=2)
    return {"missing": (tmp / "missing.png", "missing.png"), "text": (tmp / "text.png", "text.png"),
            "truncated": (tmp / "truncated.png", "truncated.png"), "tiny": (tmp / "tiny.png", "tiny.png")}


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "tiny", "unknown-model", "wrong-scale"])
def test_sr_bad_input_is_one_line_exit_2_and_no_output(case, model_file, tmp_path, capsys):
    bad = _bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    if case == "unknown-model":
        argv, named = [tmp_path / "in" / "good.png", "--model", "no_such_model"], "no_such_model"
    elif case == "wrong-scale":
        argv, named = [tmp_path / "in" / "good.png", "--model", model_file, "--scale", "4"], str(model_file)
    else:
        argv, named = [bad[case][0], "--model", model_file], bad[case][1]
    code, _, err = _sr([*argv, "-o", out], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], err
    if case == "wrong-scale":
        assert "checkpoint is ×2 but --scale 4 was asked" in lines[0]
    assert not out.exists() or not any(out.rglob("*"))


def test_sr_folder_with_bad_files_processes_the_rest(model_file, tmp_path, capsys):
    folder = tmp_path / "in"
    _bad_inputs(folder)
    _img(folder / "sub" / "other.jpg", seed=3)
    out = tmp_path / "out"
    code, _, err = _sr([folder, tmp_path / "nowhere.png", "-o", out, "--model", model_file], capsys)
    assert code == 1
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["good_x2.png", "sub/other_x2.png"]
    for name in ("text.png", "truncated.png", "tiny.png", "nowhere.png"):
        assert sum(name in line for line in err.splitlines()) == 1, err
    assert "4 of 6 inputs failed" in err


def test_sr_never_writes_onto_an_input(model_file, tmp_path, capsys):
    folder = tmp_path / "pics"
    _img(folder / "a.png")
    shutil.copy(folder / "a.png", folder / "a_x2.png")
    before = (folder / "a_x2.png").read_bytes()
    code, _, err = _sr([folder, "-o", folder, "--model", model_file], capsys)
    assert code == 1 and "would overwrite an input" in err
    assert (folder / "a_x2.png").read_bytes() == before
    assert (folder / "a_x2_x2.png").exists()


# ------------------------------------------------------------------- manifest, models, convert


@pytest.fixture
def manifest(model_file, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(model_file, weights / "kxnet_x2_setting2.safetensors")
    sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    model = load_model(model_file)
    common = dict(arch="kxnet", parameters=sum(p.numel() for p in model.parameters()), storage="fp32",
                  iterations=10, hardware="a test", training_data="none")
    entries = {"kxnet_x2.setting2": WeightsEntry("kxnet_x2.setting2", "kxnet_x2_setting2.safetensors", sha,
                                                 model_file.stat().st_size, config=model.config.to_dict(),
                                                 recipe={"model": {"name": "kxnet"}}, **common,
                                                 benchmarks={"Set5/setting2/x2/noise0": {"psnr": 31.2345,
                                                                                         "ssim": 0.8765}}),
               "kxnet_x4.setting2": WeightsEntry("kxnet_x4.setting2", "missing.safetensors", "0" * 64, 1,
                                                 config={"scale": 4, "setting": 2}, **common)}
    path = weights / "manifest.json"
    write_manifest(entries, path)
    monkeypatch.setattr(zoo, "MANIFEST", path)
    return sha


def test_sr_default_model_comes_from_the_manifest(manifest, tmp_path, capsys):
    src = _img(tmp_path / "a.png")
    code, _, err = _sr([src, "-o", tmp_path / "out", "--scale", "2"], capsys)
    assert code == 0, err
    side = json.loads((tmp_path / "out" / "a_x2.json").read_text())
    assert side["model"]["name"] == "kxnet_x2.setting2" and side["model"]["sha256"] == manifest
    code, _, err = _sr([src, "-o", tmp_path / "out4"], capsys)  # ×4 is listed but not installed
    assert code == 2 and "kxnet_x4.setting2" in err and "not installed" in err


def test_models_lists_one_line_per_model_and_details_as_json(manifest, capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (x2,) = [ln for ln in lines if ln.startswith("kxnet_x2.setting2")]
    # scale, setting, stages and parameters read from the file; Set5 PSNR from the manifest
    assert "×2" in x2 and " 2 " in x2 and "31.23" in x2 and "M" in x2
    (x4,) = [ln for ln in lines if ln.startswith("kxnet_x4.setting2")]
    assert "not installed" in x4 and "not benchmarked" in x4
    assert "Set5/setting2" not in "\n".join(lines)           # no raw key-value dumps
    assert lines[-1].startswith("architectures") and "kxnet" in lines[-1]
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["weights"]["kxnet_x2.setting2"]["sha256"] == manifest and "kxnet_x4" in data["factories"]


def test_printing_commands_exit_cleanly_when_the_reader_closes_the_pipe(manifest):
    # `kxnet models | head -1`: the rest of the output hits a closed pipe
    import subprocess
    import sys

    # the child prints a line, then waits until the reader has gone before `kxnet models` writes
    code = ("import sys; from kxnet.cli import main; from kxnet.models import zoo; "
            f"zoo.MANIFEST = __import__('pathlib').Path({str(zoo.MANIFEST)!r}); "
            "print('ready', flush=True); sys.stdin.read(); sys.exit(main(['models']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    proc.stdout.close()                                     # the reader goes away
    proc.stdin.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_convert(model_file, tmp_path, capsys):
    dst = tmp_path / "half.safetensors"
    assert main(["convert", str(model_file), "-o", str(dst), "--fp16"]) == 0
    assert "2 stages" in capsys.readouterr().out
    assert load_model(dst).config == load_model(model_file).config
    assert dst.stat().st_size < model_file.stat().st_size
    assert main(["convert", str(model_file), "-o", str(dst)]) == 2  # exists
    assert main(["convert", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "nope.pth" in capsys.readouterr().err


def test_convert_int8(model_file, tmp_path, capsys):
    half, quarter = tmp_path / "half.safetensors", tmp_path / "int8.safetensors"
    assert main(["convert", str(model_file), "-o", str(half), "--fp16"]) == 0
    assert main(["convert", str(model_file), "-o", str(quarter), "--int8"]) == 0
    assert "int8 weights" in capsys.readouterr().out
    assert load_model(quarter).config == load_model(model_file).config
    assert quarter.stat().st_size < 0.6 * half.stat().st_size
    with pytest.raises(SystemExit):
        main(["convert", str(model_file), "-o", str(tmp_path / "x.safetensors"), "--fp16", "--int8"])


def test_convert_grows_stages(model_file, tmp_path, capsys):
    dst = tmp_path / "grown.safetensors"
    assert main(["convert", str(model_file), "-o", str(dst), "--stages", "3"]) == 0
    assert "3 stages" in capsys.readouterr().out
    small, grown = load_model(model_file), load_model(dst)
    y = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        a, b = small(y), grown(y)
    # stages are iterations: the grown model's first two are the original's, its third repeats the last
    for t in range(2):
        assert torch.equal(a.stage_images[t], b.stage_images[t])
    assert not torch.equal(b.stage_images[2], b.stage_images[1])
    assert main(["convert", str(model_file), "-o", str(tmp_path / "fewer.safetensors"), "--stages", "1"]) == 2
    err = capsys.readouterr().err
    assert model_file.name in err and "2-stage" in err and not (tmp_path / "fewer.safetensors").exists()


# --------------------------------------------------------------------- console script, panel


def test_console_script(model_file, tmp_path):
    exe = Path(shutil.which("kxnet") or Path(__import__("sys").executable).with_name("kxnet"))
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_text("not an image")
    r = subprocess.run([str(exe), "sr", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model",
                        str(model_file), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 1 and "b.png" in r.stderr and (tmp_path / "out" / "a_x2.png").is_file()


def test_compare_panel(tmp_path, capsys):
    from kxnet.inference.panel import busiest_window, compare_panel

    torch.manual_seed(0)
    a_model = save_model(create_model("kxnet", scale=4, setting=2, stages=2), tmp_path / "a.safetensors")
    b_model = save_model(create_model("kxnet", scale=4, setting=2, stages=1), tmp_path / "b.safetensors")
    a, b = _img(tmp_path / "a.png", h=10, w=12), _img(tmp_path / "b.png", h=12, w=8, mode="L", seed=4)
    panel = tmp_path / "panel.png"
    done, failures = compare_panel([a, b], [("A", a_model), ("B", b_model)], panel, height=64, zoom=16,
                                   zoom_px=32, device="cpu")
    assert (done, failures) == (2, [])
    im = PILImage.open(panel)
    # two rows of input + 2 models; each row: title, labels, the images, the zoomed crops
    assert im.height > 2 * (64 + 32) and im.width >= 3 * 64 and "2 of 2 images done" in capsys.readouterr().out
    (tmp_path / "c.png").write_text("broken")
    done, failures = compare_panel([a, tmp_path / "c.png"], [("A", a_model)], tmp_path / "p2.png", rows=1,
                                   device="cpu")
    assert done == 1 and len(failures) == 1 and "c.png" in failures[0]
    with pytest.raises(ValueError, match="one scale"):
        x2 = save_model(create_model("kxnet", scale=2, setting=2, stages=1), tmp_path / "x2.safetensors")
        compare_panel([a], [("A", a_model), ("x2", x2)], tmp_path / "p3.png", device="cpu")
    # the zoom goes where the texture is
    rgb = np.zeros((40, 40, 3), np.float32)
    rgb[20:30, 5:15] = np.random.default_rng(0).random((10, 10, 3))
    assert busiest_window(rgb, 10) == (20, 5)


def test_compare_panel_auto_column_follows_the_photo(tmp_path, capsys):
    """A model given as "auto" is kxnet sr's default: the photo model for a JPEG, the paper's
    model for a clean PNG, each named in its row's label."""
    from kxnet.inference.panel import compare_panel

    rgb = (np.random.default_rng(3).random((40, 40, 3)) * 255).astype(np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "photo.jpg", quality=50)
    PILImage.fromarray(rgb).save(tmp_path / "clean.png")
    done, failures = compare_panel([tmp_path / "photo.jpg", tmp_path / "clean.png"],
                                   [("paper", "kxnet_x2.setting2"), ("default", "auto")], tmp_path / "panel.png",
                                   height=64, zoom=16, zoom_px=32, device="cpu")
    out = capsys.readouterr().out
    assert (done, failures) == (2, [])
    jpg_line, png_line = (next(line for line in out.splitlines() if line.startswith(n)) for n in ("photo.jpg", "clean.png"))
    assert "default: kxnet_x2.photo (JPEG q50 found)" in jpg_line
    assert "default: kxnet_x2.setting2 (no JPEG history)" in png_line
    with pytest.raises(ValueError, match="one scale"):
        compare_panel([tmp_path / "clean.png"], [("default", "auto")], tmp_path / "p2.png", device="cpu")


def test_summary_line_and_sidecar_state_the_kernel_as_the_readme_does(tmp_path, capsys):
    """`kxnet sr --kernel examples/chart_x4_kernel.npy` prints the kernel exactly as the README
    states it (σ₁ ≥ σ₂, θ of the σ₁ axis), and the sidecar's sigma_x/sigma_y/theta_deg are those."""
    import re

    readme = " ".join((REPO / "README.md").read_text().split())
    stated = re.search(r"known kernel \((σ₁ [\d.]+ / σ₂ [\d.]+ px at θ [\d.]+°), `examples/chart_x4_kernel.npy`", readme)[1]
    code = main(["sr", str(REPO / "examples" / "chart_x4.png"), "-o", str(tmp_path), "--model", "kxnet_x4.setting2",
                 "--kernel", str(REPO / "examples" / "chart_x4_kernel.npy"), "--regions", "off"])
    out = capsys.readouterr().out
    assert code == 0 and f"kernel {stated}" in out, out
    k = json.loads((tmp_path / "chart_x4_x4.json").read_text())["kernel"]
    assert (k["sigma_x"], k["sigma_y"], k["theta_deg"]) == pytest.approx((2.60, 1.20, 120.0), abs=0.01)
    assert k["sigma_x"] >= k["sigma_y"] and "σ₁" in k["convention"] and "clockwise" in k["convention"]
