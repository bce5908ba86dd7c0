import math

import numpy as np
import pytest
import torch

from kxnet.degrade import degrade, modcrop, quantise
from kxnet.kernels import (
    anisotropic_gaussian,
    auxiliary_bank,
    benchmark_kernels,
    initial_kernel,
    isotropic_gaussian,
    kernel_size,
    kernel_to_image,
    sample_training_kernels,
)
from kxnet.physics import blur_downsample


def test_isotropic_formula_by_hand():
    k = isotropic_gaussian(5, 1.3, dtype=torch.float64)
    a = np.arange(5) - 2
    want = np.exp(-(a[:, None] ** 2 + a[None, :] ** 2) / (2 * 1.3 ** 2))
    np.testing.assert_allclose(k.numpy(), want / want.sum(), rtol=1e-14)
    assert k.dtype == torch.float64 and abs(k.sum().item() - 1) < 1e-14


def test_anisotropic_orientation_convention():
    # λ1 = 0.8 along x, λ2 = 1.6 along y at θ = 0: elongated vertically (rows)
    k = anisotropic_gaussian(21, 0.8, 1.6, 0.0, dtype=torch.float64)
    assert k[10 + 3, 10] > k[10, 10 + 3]
    # θ = 90°: elongated horizontally
    k90 = anisotropic_gaussian(21, 0.8, 1.6, math.pi / 2, dtype=torch.float64)
    torch.testing.assert_close(k90, k.T)
    # θ = 45° with σx ≫ σy: the long axis runs along (cos θ, sin θ) = down-right on screen
    k45 = anisotropic_gaussian(21, 3.0, 0.7, math.pi / 4, dtype=torch.float64)
    assert k45[10 + 3, 10 + 3] > 10 * k45[10 + 3, 10 - 3]


def test_anisotropic_matches_covariance_definition():
    sx, sy, th = 1.7, 3.1, 0.6
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    inv = np.linalg.inv(R @ np.diag([sx ** 2, sy ** 2]) @ R.T)
    a = np.arange(15) - 7
    yy, xx = np.meshgrid(a, a, indexing="ij")
    pts = np.stack([xx, yy], -1)
    want = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, inv, pts))
    np.testing.assert_allclose(anisotropic_gaussian(15, sx, sy, th, dtype=torch.float64).numpy(),
                               want / want.sum(), rtol=1e-12, atol=1e-18)


def test_benchmark_kernel_sets():
    s1 = benchmark_kernels(1, 3)
    assert [k.tag for k in s1][5] == "sig2.0999999999999996"
    assert [k.tag for k in benchmark_kernels(1, 4)][3] == "sig2.4000000000000004"
    assert [k.tag for k in benchmark_kernels(1, 2)][1] == "sig0.9142857142857144"
    for setting, scale, p in [(1, 2, 21), (2, 2, 11), (2, 3, 15), (2, 4, 21)]:
        ks = benchmark_kernels(setting, scale)
        assert len(ks) == 8 and kernel_size(setting, scale) == p
        for k in ks:
            assert k.kernel.shape == (p, p) and k.kernel.dtype == np.float32
            assert abs(k.kernel.sum() - 1) < 1e-5
    assert benchmark_kernels(2, 2)[1].tag == "sig0.8-1.6_theta45.0"


def test_banks_and_initial_kernel():
    b1 = auxiliary_bank(1, 4)
    assert b1.shape == (24, 21, 21)
    torch.testing.assert_close(b1[0], isotropic_gaussian(21, 0.2))
    torch.testing.assert_close(b1[-1], isotropic_gaussian(21, 4.0))
    b2 = auxiliary_bank(2, 2)
    assert b2.shape == (24, 11, 11)
    # order: σx outermost, then σy, then θ
    torch.testing.assert_close(b2[5], anisotropic_gaussian(11, 1.0, 5.0, math.pi / 4))
    torch.testing.assert_close(b2[23], anisotropic_gaussian(11, 4.0, 5.0, 3 * math.pi / 4))
    k0 = initial_kernel(15)
    g = np.exp(-((np.arange(15) - 7) ** 2) / 2.0)
    g /= g.sum()
    np.testing.assert_allclose(k0.numpy(), np.outer(g, g), rtol=1e-6)


@pytest.mark.parametrize("setting", [1, 2])
def test_sampler_ranges_and_determinism(setting):
    a = sample_training_kernels(setting, 4, 64, torch.Generator().manual_seed(5))
    b = sample_training_kernels(setting, 4, 64, torch.Generator().manual_seed(5))
    c = sample_training_kernels(setting, 4, 64, torch.Generator().manual_seed(6))
    assert torch.equal(a.kernels, b.kernels) and not torch.equal(a.kernels, c.kernels)
    assert a.kernels.shape == (64, 21, 21)
    torch.testing.assert_close(a.kernels.sum((-2, -1)), torch.ones(64))
    if setting == 1:
        assert a.params["sigma"].min() >= 0.2 and a.params["sigma"].max() <= 4.0
        assert torch.all(a.noise_sigma == 0)
    else:
        for key in ("sigma_x", "sigma_y"):
            assert a.params[key].min() >= 0.6 and a.params[key].max() <= 5.0
        assert a.params["theta"].abs().max() <= math.pi
        assert a.noise_sigma.min() >= 0 and a.noise_sigma.max() <= 25 and a.noise_sigma.std() > 3


def test_degrade_noise_free_matches_operator():
    gen = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 51, 50, generator=gen)
    k = isotropic_gaussian(11, 1.2)
    lr = degrade(hr, k, 4)
    want = quantise(blur_downsample(modcrop(hr, 4), k[None], 4))
    assert lr.shape == (1, 3, 12, 12)
    assert torch.equal(lr, want)
    assert torch.equal(torch.round(lr * 255), lr * 255)  # on the 8-bit grid


def test_degrade_noise_statistics_and_seed():
    hr = torch.full((1, 3, 200, 200), 0.5)
    k = isotropic_gaussian(5, 1.0)
    lr1 = degrade(hr, k, 2, 15.0, torch.Generator().manual_seed(1))
    lr2 = degrade(hr, k, 2, 15.0, torch.Generator().manual_seed(1))
    assert torch.equal(lr1, lr2)
    std = ((lr1 - 0.5) * 255).std().item()
    assert 14.0 < std < 16.0
    # per-image noise levels
    lr = degrade(hr.expand(2, -1, -1, -1), k, 2, torch.tensor([0.0, 25.0]), torch.Generator().manual_seed(2))
    assert (lr[0] - 0.5).abs().max() < 1 / 255 and (lr[1] - 0.5).std() * 255 > 20


def test_degrade_clamps():
    lr = degrade(torch.ones(1, 3, 40, 40), isotropic_gaussian(5, 1.0), 2, 25.0, torch.Generator().manual_seed(0))
    assert lr.max() <= 1.0 and lr.min() >= 0.0


def test_kernel_image():
    img = kernel_to_image(isotropic_gaussian(21, 2.0).numpy())
    assert img.dtype == np.uint8 and img.shape == (168, 168) and img.max() == 255
