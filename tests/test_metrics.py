"""The benchmark metrics (docs/protocol.md, "Metrics") against scikit-image and hand computations."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from skimage.metrics import structural_similarity

from kxnet.io import from_tensor, to_tensor, to_uint8
from kxnet.metrics import (
    crop_border,
    image_metrics,
    kernel_mae,
    kernel_psnr,
    lr_consistency_psnr,
    match_kernel_size,
    psnr,
    rgb_to_y,
    ssim,
)
from kxnet.physics import blur_downsample

SET5 = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks" / "Set5"


def _set5(name: str) -> np.ndarray:
    path = SET5 / f"{name}.png"
    if not path.is_file():
        pytest.skip(f"benchmark image {path} not available")
    with PILImage.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _degraded_copies(hr: np.ndarray) -> dict[str, np.ndarray]:
    """Cheap, differently-behaved degradations of an 8-bit image."""
    rng = np.random.default_rng(0)
    x = hr.astype(np.float64)
    box = sum(np.roll(np.roll(x, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    as_u8 = lambda v: np.clip(np.round(v), 0, 255).astype(np.uint8)  # noqa: E731
    return {
        "noise": as_u8(x + rng.normal(0, 6, x.shape)),
        "shift": np.roll(hr, (1, 2), axis=(0, 1)),
        "blur": as_u8(box),
    }


def _skimage_ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=255)


def _direct_psnr(a, b):
    return 10 * math.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))


# ------------------------------------------------------------------- Y channel and PSNR


def test_rgb_to_y_pure_colours():
    colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]],
                       dtype=np.uint8)
    y = rgb_to_y(colours)[0]
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-12)
    np.testing.assert_array_equal(rgb_to_y(colours / 255.0), rgb_to_y(colours))


def test_rgb_to_y_is_not_rounded():
    y = rgb_to_y(np.array([[[10, 20, 30]]], dtype=np.uint8))[0, 0]
    assert y == pytest.approx(16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255, abs=1e-12)
    assert y != round(y)


def test_psnr_hand_computed():
    a = np.zeros((4, 4))
    b = a.copy()
    b[1, 2] = 4.0  # MSE = 16 / 16 = 1
    assert psnr(a, b) == pytest.approx(20 * math.log10(255.0), abs=1e-12)
    assert psnr(a, b, data_range=1.0) == pytest.approx(0.0, abs=1e-12)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a, np.zeros((4, 5)))


def test_crop_border():
    img = np.arange(7 * 6 * 3).reshape(7, 6, 3)
    assert crop_border(img, 2).shape == (3, 2, 3)
    np.testing.assert_array_equal(crop_border(img, 2), img[2:5, 2:4])
    assert crop_border(img, 0) is img


# ------------------------------------------------------------------- SSIM


def test_ssim_equals_brute_force_valid_window():
    """The separable 'valid' filter is the 11×11 outer-product window applied at full coverage."""
    rng = np.random.default_rng(1)
    a, b = rng.random((14, 13)) * 255, rng.random((14, 13)) * 255
    x = np.arange(11) - 5.0
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / g.sum() ** 2
    win = lambda img: np.lib.stride_tricks.sliding_window_view(img, (11, 11))  # noqa: E731
    mu_a, mu_b = (np.einsum("ijkl,kl->ij", win(v), w) for v in (a, b))
    var_a = np.einsum("ijkl,kl->ij", win(a * a), w) - mu_a ** 2
    var_b = np.einsum("ijkl,kl->ij", win(b * b), w) - mu_b ** 2
    cov = np.einsum("ijkl,kl->ij", win(a * b), w) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                       / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_rejects_images_smaller_than_window():
    with pytest.raises(ValueError):
        ssim(np.zeros((10, 20)), np.zeros((10, 20)))


@pytest.mark.parametrize("name", ["baby", "bird"])
def test_y_metrics_agree_with_skimage_on_set5(name):
    hr = _set5(name)
    y_hr = rgb_to_y(hr)
    for kind, sr in _degraded_copies(hr).items():
        y_sr = rgb_to_y(sr)
        assert ssim(y_sr, y_hr) == pytest.approx(_skimage_ssim(y_sr, y_hr), abs=1e-6), kind
        assert psnr(y_sr, y_hr) == pytest.approx(_direct_psnr(y_sr, y_hr), abs=1e-6), kind


def test_rgb_ssim_is_channel_mean_like_skimage():
    hr = _set5("bird")
    sr = _degraded_copies(hr)["noise"]
    expected = structural_similarity(sr.astype(np.float64), hr.astype(np.float64), channel_axis=2,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)
    assert ssim(sr, hr) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_image_metrics_is_the_protocol(scale):
    hr = _set5("baby")
    sr = _degraded_copies(hr)["blur"]
    m = image_metrics(sr, hr, scale)
    y_sr = rgb_to_y(sr)[scale:-scale, scale:-scale]
    y_hr = rgb_to_y(hr)[scale:-scale, scale:-scale]
    assert m.psnr == pytest.approx(_direct_psnr(y_sr, y_hr), abs=1e-6)
    assert m.ssim == pytest.approx(_skimage_ssim(y_sr, y_hr), abs=1e-6)


def test_image_metrics_ignores_the_cropped_border():
    hr = _set5("bird")[:64, :64]
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    m = image_metrics(sr, hr, 3)
    assert m.psnr == math.inf and m.ssim == pytest.approx(1.0)
    assert image_metrics(sr, hr, 2).psnr < 30


def test_image_metrics_requires_8bit():
    hr = _set5("bird")[:32, :32]
    with pytest.raises(TypeError, match="to_uint8"):
        image_metrics(hr / 255.0, hr, 2)


# ------------------------------------------------------------------- kernels


def _gaussian(p: int, sigma: float) -> np.ndarray:
    x = np.arange(p) - (p - 1) / 2
    k = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def test_kernel_metrics_identical():
    k = _gaussian(11, 1.7)
    assert kernel_mae(k, k) == 0.0
    assert kernel_psnr(k, k) == math.inf


def test_kernel_metrics_known_perturbation():
    k_gt = np.full((3, 3), 0.0625)
    k_gt[1, 1] = 0.5
    k = k_gt.copy()
    k[0, 0] += 0.03  # one tap off by d = 0.03: MAE = d/9, RMSE = d/3
    assert kernel_mae(k, k_gt) == pytest.approx(0.03 / 9, abs=1e-15)
    assert kernel_psnr(k, k_gt) == pytest.approx(20 * math.log10(0.5 / (0.03 / 3)), abs=1e-9)


def test_kernel_size_matching_keeps_the_centre():
    k_gt = _gaussian(11, 1.3)
    padded = np.pad(k_gt, 2)  # a 15×15 estimate holding the same kernel
    assert kernel_mae(padded, k_gt) == 0.0
    small = _gaussian(11, 1.3)[2:-2, 2:-2]  # a 7×7 estimate: zero-padded for comparison
    np.testing.assert_array_equal(match_kernel_size(small, (11, 11))[2:-2, 2:-2], small)
    assert kernel_mae(small, k_gt) == pytest.approx(np.mean(np.abs(np.pad(small, 2) - k_gt)))


# ------------------------------------------------------------------- LR consistency


def _degrade_numpy(hr_u8: np.ndarray, k: np.ndarray, s: int) -> np.ndarray:
    """Independent §1.1: reflect pad (no edge repeat), correlation, top-left decimation, 8 bits."""
    r = k.shape[0] // 2
    x = np.pad(hr_u8 / 255.0, ((r, r), (r, r), (0, 0)), mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(x, k.shape, axis=(0, 1))[::s, ::s]
    y = np.einsum("ijckl,kl->ijc", win, k)
    return np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)


def test_lr_consistency_of_the_true_hr():
    hr = _set5("bird")[:96, :90]
    k = _gaussian(15, 2.0)
    # The true HR explains an independently synthesised LR up to float32-vs-float64 rounding
    # of a few pixels, and exactly the LR made by the package's own operator.
    assert lr_consistency_psnr(_degrade_numpy(hr, k, 3), hr, k, 3) > 55
    lr = to_uint8(from_tensor(blur_downsample(to_tensor(hr), torch.from_numpy(k)[None], 3)))
    assert lr_consistency_psnr(lr, hr, k, 3) == math.inf
    assert lr_consistency_psnr(lr, hr / 255.0, k, 3) == math.inf


def test_lr_consistency_penalises_wrong_reconstructions():
    hr = _set5("bird")[:96, :96]
    k = _gaussian(15, 2.0)
    lr = _degrade_numpy(hr, k, 2)
    good = lr_consistency_psnr(lr, hr, k, 2)
    shifted = lr_consistency_psnr(lr, np.roll(hr, 3, axis=1), k, 2)
    wrong_kernel = lr_consistency_psnr(lr, hr, _gaussian(15, 0.6), 2)
    assert good > 50 and shifted < good - 15 and wrong_kernel < good - 15
    with pytest.raises(ValueError):
        lr_consistency_psnr(lr, hr[:90], k, 2)


def test_protocol_reproduces_the_papers_bicubic_cell():
    """Set5, setting 1, ×2: HR → Gaussian8 LRs → PyTorch bicubic → the protocol's metric (docs/protocol.md, "Metrics")."""
    from kxnet.kernels import benchmark_kernels
    from kxnet.physics import bicubic_upsample

    scores = []
    for name in ("baby", "bird", "butterfly", "head", "woman"):
        hr = _set5(name)
        hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
        for bk in benchmark_kernels(1, 2):
            k = torch.as_tensor(bk.kernel, dtype=torch.float32).reshape(1, *bk.kernel.shape[-2:])
            lr = to_uint8(from_tensor(blur_downsample(to_tensor(hr), k, 2)))
            sr = to_uint8(from_tensor(bicubic_upsample(to_tensor(lr), 2)))
            m = image_metrics(sr, hr, 2)
            scores.append((m.psnr, m.ssim))
    mean_psnr, mean_ssim = np.mean(scores, axis=0)
    assert (round(mean_psnr, 2), round(mean_ssim, 4)) == (29.42, 0.8666)
