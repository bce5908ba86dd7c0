"""Super-resolution of whole photos: per-stage kernels, tiling, layouts, kernel fits, the API."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

import kxnet
from kxnet.inference.upscaler import (
    Upscaler,
    kernel_parameters,
    load_kernel,
    prepare_kernel,
)
from kxnet.inference.tiling import blend_ramp, tile_starts
from kxnet.io import Image, to_tensor, write_image
from kxnet.kernels import anisotropic_gaussian, isotropic_gaussian
from kxnet.models import ModelLoadError
from kxnet.physics import bicubic_upsample, blur_downsample
from conftest import perturbed_kxnet


@pytest.fixture(scope="module")
def model():
    """A random ×2 two-stage KXNet (p = 11)."""
    return perturbed_kxnet(2, 2)


def _smooth(h, w, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    base = (rng.random((h // 4, w // 4, channels)) * 255).astype(np.uint8)
    im = PILImage.fromarray(base[..., 0] if channels == 1 else base).resize((w, h), PILImage.BICUBIC)
    arr = np.asarray(im).astype(np.float32) / 255
    return arr if channels > 1 else arr[..., None]


@pytest.fixture(scope="module")
def pair():
    """An HR image and its LR version made with the degradation model (×2, σ = 1.2 Gaussian)."""
    hr = _smooth(128, 128, seed=1)
    k = isotropic_gaussian(11, 1.2)[None]
    lr = blur_downsample(to_tensor(hr), k, 2)[0].permute(1, 2, 0).numpy().copy()
    return hr, np.clip(lr, 0, 1)


# ------------------------------------------------------------------------ the model change


def test_per_stage_kernel_list_reproduces_the_blind_forward(model):
    y = torch.rand(1, 3, 14, 17, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        blind = model(y)
        again = model(y, kernel=blind.stage_kernels)
        as_tuple = model(y, kernel=tuple(k[0] for k in blind.stage_kernels))  # p×p each
        single = model(y, kernel=blind.kernel)
    assert torch.equal(again.sr, blind.sr) and torch.equal(as_tuple.sr, blind.sr)
    assert all(torch.equal(a, b) for a, b in zip(again.stage_images, blind.stage_images))
    assert all(torch.equal(a, b) for a, b in zip(again.stage_kernels, blind.stage_kernels))
    assert not torch.equal(blind.stage_kernels[0], blind.stage_kernels[1])
    assert not torch.equal(single.sr, blind.sr)  # K^T at every stage is another run
    with pytest.raises(ValueError, match="2 per-stage kernels, got 1"):
        model(y, kernel=blind.stage_kernels[:1])


# ------------------------------------------------------------------------------- tiling


@pytest.mark.parametrize("length,tile,overlap", [(64, 32, 8), (100, 32, 8), (33, 32, 8), (300, 256, 32), (31, 32, 8)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    r = blend_ramp(7)
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-6)
    assert np.all(np.diff(r) > 0) and r[0] > 0


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


def test_tiling_does_not_change_an_image_that_fits_untiled(model, pair):
    hr, lr = pair
    image = Image(rgb=lr)
    # an image that fits one tile is the model's blind forward: bit for bit on the plain path,
    # to float32 tolerance on the default fused path (kxnet.models.fast.optimize)
    untiled, k0, info0, output = Upscaler(model, "cpu").run(image, keep_output=True)
    plain, k_plain, _, _ = Upscaler(model, "cpu", optimized=False).run(image, keep_output=True)
    with torch.inference_mode():
        blind = model(to_tensor(lr))
    assert not info0["tiled"] and info0["kernel_estimated_on"] == "whole image"
    np.testing.assert_array_equal(plain.rgb, np.clip(blind.sr[0].permute(1, 2, 0).numpy(), 0, 1))
    np.testing.assert_array_equal(k_plain, blind.kernel[0].numpy())
    np.testing.assert_allclose(untiled.rgb, plain.rgb, rtol=0, atol=1e-5)
    np.testing.assert_allclose(k0, k_plain, rtol=0, atol=1e-6)
    assert len(output.stage_kernels) == 2

    # tiled: kernel from the centre crop, 3×3 blended tiles
    tiled, k1, info1, _ = Upscaler(model, "cpu", tile=32, tile_overlap=8).run(image)
    assert info1["tiled"] and info1["tiles"] == 9
    assert info1["kernel_estimated_on"] == {"x": 16, "y": 16, "width": 32, "height": 32}
    assert untiled.rgb.shape == tiled.rgb.shape == hr.shape
    assert abs(_psnr(untiled.rgb, hr) - _psnr(tiled.rgb, hr)) <= 0.05
    assert np.abs(untiled.rgb - tiled.rgb).max() < 0.01  # measured 0.0019
    assert _psnr(untiled.rgb, tiled.rgb) > 60
    assert np.abs(k0 - k1).max() < 0.01  # the crop's kernel is close to the whole image's

    # with the untiled run's own per-stage kernels, tiles differ from it only by the missing
    # context at their cut edges, which the cross-fade keeps small and seamless
    given, _, _, _ = Upscaler(model, "cpu", tile=32, tile_overlap=8).run(image, kernel=blind.stage_kernels)
    err = np.abs(given.rgb - untiled.rgb).max(axis=2)
    assert err.max() < 0.01 and err.mean() < 2e-4  # measured 0.0019, 3e-5


# ------------------------------------------------------------------------------- layouts


def test_grey_alpha_16bit_and_tiny_images(model):
    rgb = _smooth(16, 20, seed=3)
    grey = Image(rgb=np.repeat(rgb[..., :1], 3, axis=2), mode="L")
    out, _, _, _ = Upscaler(model, "cpu").run(grey)
    assert out.mode == "L" and out.rgb.shape == (32, 40, 3)

    alpha = _smooth(16, 20, seed=4, channels=1)[..., 0]
    out, _, _, _ = Upscaler(model, "cpu").run(Image(rgb=rgb, alpha=alpha, mode="RGBA", bit_depth=16))
    expected = bicubic_upsample(torch.from_numpy(alpha)[None, None], 2)[0, 0].clamp(0, 1).numpy()
    assert out.mode == "RGBA" and out.bit_depth == 16
    np.testing.assert_allclose(out.alpha, expected, atol=1e-6)

    tiny, _, info, _ = Upscaler(model, "cpu").run(Image(rgb=rgb[:5, :3]))
    assert tiny.rgb.shape == (10, 6, 3) and info["padded_to"] == [8, 8]


# ------------------------------------------------------------------------------- kernels


def test_kernel_parameters_recover_a_gaussian():
    k = anisotropic_gaussian(21, 2.5, 1.2, np.deg2rad(30.0)).numpy()
    f = kernel_parameters(k)
    assert f["sigma_x"] == pytest.approx(2.5, abs=0.05) and f["sigma_y"] == pytest.approx(1.2, abs=0.02)
    assert f["theta_deg"] == pytest.approx(30.0, abs=0.5)
    assert f["centre_offset"] == pytest.approx([0, 0], abs=1e-6)
    # θ = 120°: the σx axis points down-left on screen (y down)
    assert kernel_parameters(anisotropic_gaussian(21, 2.5, 1.2, np.deg2rad(120.0)))["theta_deg"] == pytest.approx(120, abs=0.5)
    shifted = np.roll(isotropic_gaussian(21, 1.0).numpy(), (2, -1), axis=(0, 1))  # 2 down, 1 left
    f = kernel_parameters(shifted)
    assert f["centre_offset"] == pytest.approx([-1, 2], abs=1e-4) and f["sigma_x"] == pytest.approx(1.0, abs=0.01)
    assert 0 < f["peak"] < 1 and f["entropy_bits"] > 0


def test_prepare_and_load_kernels(tmp_path):
    small = isotropic_gaussian(5, 0.8).numpy() * 3
    k = prepare_kernel(small, 11).numpy()
    assert k.shape == (11, 11) and k.sum() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(k[3:8, 3:8], small / small.sum(), atol=1e-7)
    with pytest.raises(ValueError, match="odd square"):
        prepare_kernel(np.ones((4, 4)), 11)
    with pytest.raises(ValueError, match="13×13 but this model uses 11×11"):
        prepare_kernel(np.ones((13, 13)), 11)
    np.save(tmp_path / "k.npy", small)
    np.testing.assert_allclose(load_kernel(tmp_path / "k.npy", 11).numpy(), k, atol=1e-7)
    write_image(tmp_path / "k.png", np.repeat((small / small.max())[..., None], 3, axis=2))
    png = load_kernel(tmp_path / "k.png", 11).numpy()
    assert png.sum() == pytest.approx(1, abs=1e-5) and np.abs(png - k).max() < 2e-3


# ---------------------------------------------------------------------------------- API


def test_super_resolve_api_keeps_layouts(model, tmp_path):
    rgb8 = (_smooth(12, 16, seed=5) * 255).astype(np.uint8)
    r = kxnet.super_resolve(rgb8, scale=2, model=model, device="cpu")
    assert r.image.dtype == np.uint8 and r.image.shape == (24, 32, 3)
    assert r.kernel.shape == (11, 11) and r.kernel.sum() == pytest.approx(1, abs=1e-5)
    assert r.info["kernel"]["sigma_x"] > 0 and r.info["output_size"] == [32, 24]

    grey16 = (_smooth(12, 16, seed=6, channels=1)[..., 0] * 65535).astype(np.uint16)
    r = kxnet.super_resolve(grey16, scale=None, model=model, device="cpu")
    assert r.image.dtype == np.uint16 and r.image.shape == (24, 32)
    assert r.to_pil().mode == "I;16"

    rgba = PILImage.fromarray(np.dstack([rgb8, np.full((12, 16), 200, np.uint8)]), "RGBA")
    r = kxnet.super_resolve(rgba, model=model, scale=2, device="cpu")
    assert r.image.shape == (24, 32, 4) and np.all(r.image[..., 3] == 200)

    path = tmp_path / "x.png"
    PILImage.fromarray(rgb8).convert("L").save(path)
    given = isotropic_gaussian(11, 1.0).numpy()
    r = kxnet.super_resolve(path, scale=2, model=model, device="cpu", kernel=given)
    assert r.image.shape == (24, 32) and r.info["kernel_mode"] == "given"
    np.testing.assert_allclose(r.kernel, given, atol=1e-7)

    flt = kxnet.super_resolve(rgb8.astype(np.float32) / 255, scale=2, model=model, device="cpu")
    assert flt.image.dtype == np.float32 and 0 <= flt.image.min() and flt.image.max() <= 1

    with pytest.raises(ModelLoadError, match="×2 model, but ×4 was asked"):
        kxnet.super_resolve(rgb8, scale=4, model=model, device="cpu")
    with pytest.raises(ValueError, match="too small"):
        kxnet.super_resolve(rgb8[:2, :2], scale=2, model=model, device="cpu")


def test_super_resolve_folder_writes_skips_and_lists_failures(model, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    rgb8 = (_smooth(12, 16, seed=7) * 255).astype(np.uint8)
    PILImage.fromarray(rgb8).save(src / "a.png")
    PILImage.fromarray(rgb8[:, ::-1]).save(src / "sub" / "b.png")
    (src / "bad.png").write_bytes(b"not an image")

    done = kxnet.super_resolve_folder(src, out, scale=2, model=model, device="cpu")
    assert sorted(o.relative_to(out).as_posix() for _, o in done.written) == ["a_x2.png", "sub/b_x2.png"]
    assert done.skipped == [] and done.total == 3 and len(done.failures) == 1
    assert done.failures[0][1].startswith(f"{src / 'bad.png'}: ")
    assert (out / "a_x2.json").is_file() and (out / "sub" / "b_x2.json").is_file()
    one = kxnet.super_resolve(src / "a.png", scale=2, model=model, device="cpu")
    np.testing.assert_array_equal(np.asarray(PILImage.open(out / "a_x2.png")), one.image)   # the same job

    again = kxnet.super_resolve_folder([str(src)], out, scale=2, model=model, device="cpu")   # resumes
    assert again.written == [] and sorted(s.name for s, _ in again.skipped) == ["a.png", "b.png"]
    forced = kxnet.super_resolve_folder(src / "a.png", out, scale=2, model=model, device="cpu", overwrite=True)
    assert [o for _, o in forced.written] == [out / "a_x2.png"] and not forced.failures
    with pytest.raises(NotADirectoryError, match="not a folder"):
        kxnet.super_resolve_folder(src / "a.png", out / "a_x2.png", scale=2, model=model, device="cpu")
    with pytest.raises(ValueError, match="format 'gif'"):
        kxnet.super_resolve_folder(src, out, scale=2, model=model, device="cpu", format="gif")


def test_import_kxnet_is_lazy():
    code = ("import sys, kxnet; assert 'torch' not in sys.modules; "
            "assert callable(kxnet.super_resolve) and 'kxnet' in kxnet.list_models(); "
            "assert kxnet.load_model and kxnet.create_model")
    subprocess.run([sys.executable, "-c", code], check=True)
