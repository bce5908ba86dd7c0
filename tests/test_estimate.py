"""The degradation estimate (kxnet.degrade.estimate) and the routing it drives
(kxnet.inference.routing): a JPEG file's quality read exactly, the quality and grid of a PNG that
was once a JPEG, no JPEG history on clean pixels, the noise σ, and each input sent to its model."""

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from kxnet.cli import main
from kxnet.degrade import degrade
from kxnet.degrade.estimate import (DegradationEstimate, estimate_degradation, estimate_jpeg_from_pixels,
                                    estimate_noise, ijg_table, jpeg_file_quality)
from kxnet.degrade.photo import jpeg_roundtrip
from kxnet.inference.routing import Router, estimate_for, parse_jpeg_quality, route
from kxnet.io import Image, from_tensor
from kxnet.kernels import anisotropic_gaussian
from kxnet.models.zoo import PHOTO_MODELS, read_manifest

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lr():
    """A 96×120 LR photo: the bundled chart tiled, blurred and decimated ×2 (3×H×W in [0, 1])."""
    from pathlib import Path

    from kxnet.io import read_image

    chart = read_image(Path(__file__).resolve().parents[1] / "examples" / "chart_x4.png").rgb
    hr = torch.from_numpy(np.concatenate([np.concatenate([chart, chart[:, ::-1]], 1)] * 2, 0)[:192, :240]).permute(2, 0, 1)
    return degrade(hr.contiguous(), anisotropic_gaussian(11, 1.0, 1.8, 0.4), 2, 0.0)


def _rgb(t: torch.Tensor) -> np.ndarray:
    return from_tensor(t)


def test_ijg_tables_are_libjpegs():
    assert ijg_table(50)[:8].tolist() == [16, 11, 10, 16, 24, 40, 51, 61]
    assert ijg_table(100).max() == 1 and ijg_table(1).min() == 255      # q1: every step clipped to baseline's 255
    with PILImage.open(_jpeg_bytes(np.zeros((16, 16, 3), np.uint8), 75, 2)) as im:
        assert np.array_equal(np.asarray(im.quantization[0]), ijg_table(75))


def _jpeg_bytes(a: np.ndarray, quality: int, subsampling: int) -> io.BytesIO:
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("quality", [10, 30, 47, 75, 90, 95, 100])
@pytest.mark.parametrize("chroma", [("4:2:0", 2), ("4:4:4", 0)])
def test_a_jpeg_files_quality_and_subsampling_are_read_exactly(tmp_path, quality, chroma):
    path = tmp_path / "x.jpg"
    path.write_bytes(_jpeg_bytes((np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8),
                                 quality, chroma[1]).getvalue())
    assert jpeg_file_quality(path) == (quality, chroma[0])
    png = tmp_path / "x.png"
    PILImage.open(path).save(png)
    assert jpeg_file_quality(png) is None and jpeg_file_quality(tmp_path / "missing.jpg") is None


@pytest.mark.parametrize("quality,chroma,grid", [(40, "4:2:0", (0, 0)), (75, "4:2:0", (3, 5)), (90, "4:4:4", (6, 1)),
                                                 (60, "4:4:4", (1, 7))])
def test_a_png_that_was_once_a_jpeg_shows_its_quality_and_grid(lr, quality, chroma, grid):
    g = torch.Generator().manual_seed(quality)
    noisy = torch.round((lr + 3 / 255 * torch.randn(lr.shape, generator=g)).clamp(0, 1) * 255) / 255
    decoded = jpeg_roundtrip(noisy[None], quality, chroma, grid)[0]
    found, found_grid = estimate_jpeg_from_pixels(_rgb(decoded))
    assert found is not None and abs(found - quality) <= 5, found
    # the synthesis pads by `grid` before encoding: blocks start at (8 − dy) mod 8, (8 − dx) mod 8
    assert found_grid == ((8 - grid[0]) % 8, (8 - grid[1]) % 8)
    # a crop that moves the grid moves the offset found with it
    assert estimate_jpeg_from_pixels(_rgb(decoded[:, 3:, 2:]))[1] == ((found_grid[0] - 3) % 8, (found_grid[1] - 2) % 8)


@pytest.mark.parametrize("sigma", [0.0, 2.0, 5.0, 15.0])
def test_clean_pixels_show_no_jpeg_history(lr, sigma):
    g = torch.Generator().manual_seed(1)
    noisy = torch.round((lr + sigma / 255 * torch.randn(lr.shape, generator=g)).clamp(0, 1) * 255) / 255
    assert estimate_jpeg_from_pixels(_rgb(noisy)) == (None, None)


@pytest.mark.parametrize("sigma", [2.0, 5.0, 10.0, 15.0])
def test_white_noise_sigma_within_one_and_a_half(sigma):
    # a smooth scene (a ramp and a soft disc) with white noise of known σ
    y, x = np.mgrid[0:128, 0:128] / 128.0
    scene = np.stack([0.3 + 0.4 * x, 0.5 - 0.2 * y, 0.4 + 0.3 * ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1)], -1)
    noisy = np.round(np.clip(scene + np.random.default_rng(2).normal(0, sigma / 255, scene.shape), 0, 1) * 255) / 255
    assert abs(estimate_noise(noisy) - sigma) <= 1.5
    assert estimate_noise(np.round(scene * 255) / 255) < 1.0


def test_the_estimate_reads_the_file_before_the_pixels(tmp_path, lr):
    a = (_rgb(lr) * 255).round().astype(np.uint8)
    path = tmp_path / "x.jpg"
    path.write_bytes(_jpeg_bytes(a, 83, 0).getvalue())
    pixels = np.asarray(PILImage.open(path).convert("RGB"), np.float32) / 255
    est = estimate_degradation(pixels, path)
    assert (est.jpeg_quality, est.jpeg_source, est.chroma, est.compressed) == (83, "file", "4:4:4", True)
    assert estimate_degradation(pixels).jpeg_source == "pixels"
    assert "JPEG q83 (4:4:4, file)" in est.summary()
    assert DegradationEstimate(None, None, None, None, 1.25).summary() == "no JPEG history, noise σ 1.2"
    # after compression the pixels show the noise the JPEG left; the σ before it is the learned estimate's
    assert DegradationEstimate(75, "file", "4:2:0", (0, 0), 0.44).summary() == "JPEG q75 (4:2:0, file), noise left σ 0.4"
    assert (DegradationEstimate(75, "file", "4:2:0", (0, 0), 0.44, 0.1, 5.06).summary()
            == "JPEG q75 (4:2:0, file), noise σ 5.1 before it, 0.4 left")
    assert est.noise_before_jpeg is not None and "before it" in est.summary()
    # a sidecar's record reads back as the estimate it was written from (older records lack the σ before)
    assert DegradationEstimate.from_dict({**est.to_dict(), "model_chosen_by": "JPEG history"}) == est
    assert DegradationEstimate.from_dict({k: v for k, v in est.to_dict().items()
                                          if k != "noise_before_jpeg"}).noise_before_jpeg is None
    assert estimate_degradation(_rgb(lr)).noise_before_jpeg is None       # never compressed


def _noisy_jpeg(lr, sigma: float, quality: int) -> np.ndarray:
    noisy = (lr + sigma / 255 * torch.randn(lr.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    return _rgb(jpeg_roundtrip(noisy[None], quality, "4:2:0", (0, 0))[0])


def test_the_noise_before_compression_is_read_where_compression_hid_it(lr):
    from kxnet.degrade.noise_net import noise_before_jpeg

    learned = {sigma: noise_before_jpeg(_noisy_jpeg(lr, sigma, 75), 75) for sigma in (2, 10, 15)}
    assert learned[2] < learned[10] < learned[15]
    for sigma in (10, 15):
        left = estimate_noise(_noisy_jpeg(lr, sigma, 75))
        assert abs(learned[sigma] - sigma) <= 2.0 < sigma - left - 3      # the pixels alone show far less


def test_the_noise_network_is_the_one_shipped(tmp_path, monkeypatch):
    from kxnet.degrade import noise_net

    damaged = tmp_path / "noise.safetensors"
    data = bytearray(noise_net.WEIGHTS.read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    noise_net._shipped.cache_clear()
    monkeypatch.setattr(noise_net, "WEIGHTS", damaged)
    with pytest.raises(RuntimeError, match="noise.safetensors: SHA-256 differs"):
        noise_net.noise_before_jpeg(np.full((16, 16, 3), 0.5, np.float32), 75)
    noise_net._shipped.cache_clear()


def test_routing_sends_jpeg_inputs_to_the_photo_model_and_clean_ones_to_the_papers():
    entries = read_manifest()
    if PHOTO_MODELS[4] not in entries:
        pytest.skip("no shipped ×4 photo model")
    jpeg, clean = DegradationEstimate(75, "file", "4:2:0", (0, 0), 2.0), DegradationEstimate(None, None, None, None, 2.0)
    assert route(4, jpeg, entries) == PHOTO_MODELS[4]
    assert route(4, clean, entries) == "kxnet_x4.setting2"
    without = {k: v for k, v in entries.items() if k != PHOTO_MODELS[4]}
    assert route(4, jpeg, without) == "kxnet_x4.setting2"       # no photo model: the default
    # the override: a user who knows the photo was never compressed, or knows its quality
    img = Image(rgb=np.full((32, 32, 3), 0.5, np.float32))
    assert estimate_for(img, "none").jpeg_quality is None and estimate_for(img, 60).jpeg_source == "given"
    assert estimate_for(img, "none").noise_before_jpeg is None and estimate_for(img, 60).noise_before_jpeg >= 0
    for bad in ("0", "101", "high"):
        with pytest.raises(ValueError, match="auto, none or 1…100"):
            parse_jpeg_quality(bad)


def test_a_router_builds_each_model_once_and_a_forced_one_serves_all():
    built = []
    router = Router(4, lambda name: built.append(name) or name, jpeg_quality=70)
    img = Image(rgb=np.full((32, 32, 3), 0.5, np.float32))
    picks = [router.pick(img).upscaler for _ in range(3)]
    assert picks == [route(4, estimate_for(img, 70))] * 3 and len(built) == 1
    forced = Router(4, lambda name: pytest.fail("nothing to build"), forced="mine", jpeg_quality="none")
    assert forced.pick(img).upscaler == "mine" and forced.pick(img).why == "given"
    assert forced.pick(img).record()["model_chosen_by"] == "given"


def test_sr_reports_the_estimate_and_follows_it(tmp_path, lr):
    if PHOTO_MODELS[4] not in read_manifest():
        pytest.skip("no shipped ×4 photo model")
    a = (_rgb(lr[:, :48, :48]) * 255).round().astype(np.uint8)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "q70.jpg").write_bytes(_jpeg_bytes(a, 70, 2).getvalue())
    PILImage.fromarray(a).save(tmp_path / "in" / "clean.png")
    out = tmp_path / "out"
    assert main(["sr", str(tmp_path / "in"), "-o", str(out), "--quiet", "--regions", "off"]) == 0
    jpeg, clean = (json.loads((out / f"{n}_x4.json").read_text()) for n in ("q70", "clean"))
    assert jpeg["degradation"]["jpeg_quality"] == 70 and jpeg["model"]["name"] == PHOTO_MODELS[4]
    assert jpeg["degradation"]["model_chosen_by"] == "JPEG history"
    assert jpeg["degradation"]["noise_before_jpeg"] >= 0 and clean["degradation"]["noise_before_jpeg"] is None
    assert clean["degradation"]["jpeg_quality"] is None and clean["model"]["name"] == "kxnet_x4.setting2"
    # the override, and --model, which forces one model whatever the estimate
    assert main(["sr", str(tmp_path / "in" / "q70.jpg"), "-o", str(tmp_path / "o2"), "--quiet", "--regions", "off",
                 "--jpeg-quality", "none"]) == 0
    assert json.loads((tmp_path / "o2" / "q70_x4.json").read_text())["model"]["name"] == "kxnet_x4.setting2"
    assert main(["sr", str(tmp_path / "in" / "q70.jpg"), "-o", str(tmp_path / "o3"), "--quiet", "--regions", "off",
                 "--model", "kxnet_x4.setting2"]) == 0
    side = json.loads((tmp_path / "o3" / "q70_x4.json").read_text())
    assert side["model"]["name"] == "kxnet_x4.setting2" and side["degradation"]["model_chosen_by"] == "given"
    assert main(["sr", str(tmp_path / "in" / "q70.jpg"), "-o", str(tmp_path / "o4"), "--jpeg-quality", "high"]) == 2
    assert not (tmp_path / "o4").exists()


def test_super_resolve_follows_the_estimate_too(tmp_path, lr):
    import kxnet

    if PHOTO_MODELS[4] not in read_manifest():
        pytest.skip("no shipped ×4 photo model")
    a = (_rgb(lr[:, :40, :40]) * 255).round().astype(np.uint8)
    path = tmp_path / "q60.jpg"
    path.write_bytes(_jpeg_bytes(a, 60, 2).getvalue())
    result = kxnet.super_resolve(path, scale=4, regions="off", backend="torch")
    assert result.info["degradation"]["jpeg_quality"] == 60 and result.info["model"]["name"] == PHOTO_MODELS[4]
    assert math.isfinite(result.info["degradation"]["noise_sigma"])
