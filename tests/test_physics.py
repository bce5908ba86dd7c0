"""Exactness of the operators: adjoints, autograd, conventions. All in float64."""

import pytest
import torch
import torch.nn.functional as F

from kxnet.physics import (
    back_project,
    back_project_normaliser,
    back_project_phases,
    blur,
    blur_downsample,
    blur_downsample_adjoint,
    blur_downsample_adjoint_phases,
    downsample,
    kernel_gradient,
    lr_size,
    reflect_pad_adjoint,
)
from kxnet.physics.reference import blur_downsample_reference, kernel_gradient_reference

D = torch.float64


def _random_kernels(b, p, gen):
    k = torch.rand(b, p, p, generator=gen, dtype=D)
    return k / k.sum(dim=(-2, -1), keepdim=True)


def _inner(a, b):
    return (a * b).sum()


SIZES = [(37, 53), (32, 32), (33, 30), (22, 45)]


@pytest.mark.parametrize("adjoint", [blur_downsample_adjoint, blur_downsample_adjoint_phases])
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("p", [3, 11, 15, 21])
def test_blur_downsample_adjoint(scale, p, adjoint):
    gen = torch.Generator().manual_seed(100 * scale + p)
    for hh, ww in SIZES:
        x = torch.randn(3, 3, hh, ww, generator=gen, dtype=D)
        k = _random_kernels(3, p, gen)  # a different kernel per image
        ax = blur_downsample(x, k, scale)
        assert ax.shape == (3, 3, lr_size(hh, scale), lr_size(ww, scale))
        y = torch.randn(ax.shape, generator=gen, dtype=D)
        lhs, rhs = _inner(ax, y), _inner(x, adjoint(y, k, scale, (hh, ww)))
        assert abs(lhs - rhs) <= 1e-10 * abs(lhs), (hh, ww, lhs.item(), rhs.item())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_adjoint_equals_autograd_vjp(scale):
    gen = torch.Generator().manual_seed(scale)
    x = torch.randn(2, 3, 37, 53, generator=gen, dtype=D, requires_grad=True)
    k = _random_kernels(2, 11, gen)
    y = torch.randn(2, 3, lr_size(37, scale), lr_size(53, scale), generator=gen, dtype=D)
    (grad,) = torch.autograd.grad(_inner(blur_downsample(x, k, scale), y), x)
    torch.testing.assert_close(blur_downsample_adjoint(y, k, scale, (37, 53)), grad, rtol=0, atol=1e-12)


def test_reflect_pad_adjoint():
    gen = torch.Generator().manual_seed(7)
    for r in (1, 5, 10):
        x = torch.randn(2, 3, 23, 17, generator=gen, dtype=D)
        z = torch.randn(2, 3, 23 + 2 * r, 17 + 2 * r, generator=gen, dtype=D)
        lhs = _inner(F.pad(x, (r, r, r, r), mode="reflect"), z)
        rhs = _inner(x, reflect_pad_adjoint(z, r))
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("p", [3, 11, 21])
def test_kernel_gradient_matches_autograd(scale, p):
    gen = torch.Generator().manual_seed(scale * 31 + p)
    for hh, ww in [(37, 53), (32, 32)]:
        x = torch.randn(3, 3, hh, ww, generator=gen, dtype=D)
        k = _random_kernels(3, p, gen).requires_grad_(True)
        y = torch.randn(3, 3, lr_size(hh, scale), lr_size(ww, scale), generator=gen, dtype=D)
        residual = blur_downsample(x, k, scale) - y
        (auto,) = torch.autograd.grad(0.5 * residual.pow(2).sum(), k)
        ours = kernel_gradient(x, residual.detach(), scale, p)
        assert ours.shape == (3, p, p)
        torch.testing.assert_close(ours, auto, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reference_path_agrees(scale):
    gen = torch.Generator().manual_seed(scale)
    x = torch.randn(2, 3, 37, 53, generator=gen, dtype=D)
    k = _random_kernels(2, 15, gen)
    torch.testing.assert_close(blur_downsample_reference(x, k, scale), blur_downsample(x, k, scale))
    r = torch.randn(2, 3, lr_size(37, scale), lr_size(53, scale), generator=gen, dtype=D)
    torch.testing.assert_close(kernel_gradient_reference(x, r, scale, 15), kernel_gradient(x, r, scale, 15))


def test_correlation_not_convolution():
    """An asymmetric kernel with a single off-centre tap shifts the image the correlation way."""
    x = torch.arange(7 * 9, dtype=D).reshape(1, 1, 7, 9)
    k = torch.zeros(1, 3, 3, dtype=D)
    k[0, 1, 2] = 1.0  # tap at (row 0, col +1): out[i, j] = x[i, j + 1] under correlation
    out = blur(x, k)
    torch.testing.assert_close(out[0, 0, :, :-1], x[0, 0, :, 1:])
    # convolution would shift the other way; make sure we are not doing that
    assert not torch.allclose(out[0, 0, :, 1:], x[0, 0, :, :-1])


def test_decimation_keeps_top_left_and_kernel_is_centred():
    x = torch.randn(1, 3, 12, 12, dtype=D)
    delta = torch.zeros(1, 5, 5, dtype=D)
    delta[0, 2, 2] = 1.0
    torch.testing.assert_close(blur_downsample(x, delta, 3), x[..., ::3, ::3])
    torch.testing.assert_close(downsample(x, 4), x[..., 0::4, 0::4])
    torch.testing.assert_close(blur_downsample(x, delta, 2), downsample(blur(x, delta), 2))


def test_spec_formula_by_hand():
    """Y[c,i,j] = Σ_{u,v} K[u,v] · Xpad[c, s·i+u, s·j+v] (docs/protocol.md, "Degradation", step 3)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 9, 10, generator=gen, dtype=D)
    k = torch.rand(1, 5, 5, generator=gen, dtype=D)
    s, r = 3, 2
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    y = blur_downsample(x, k, s)
    for c in range(2):
        for i in range(y.shape[-2]):
            for j in range(y.shape[-1]):
                want = (k[0] * xp[0, c, s * i:s * i + 5, s * j:s * j + 5]).sum()
                assert abs(y[0, c, i, j] - want) < 1e-12


@pytest.mark.parametrize("back", [back_project, back_project_phases])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_back_projection_is_zero_padded_adjoint(scale, back):
    """The release's Dᵀ (either form) is the exact adjoint of the zero-padded blur-decimate."""
    gen = torch.Generator().manual_seed(scale)
    hh, ww = 36, 48
    r = 5
    x = torch.randn(2, 3, hh, ww, generator=gen, dtype=D)
    k = _random_kernels(2, 2 * r + 1, gen)
    y = torch.randn(2, 3, hh // scale, ww // scale, generator=gen, dtype=D)
    zero_padded = torch.stack([
        F.conv2d(F.pad(x[b:b + 1], (r, r, r, r)).transpose(0, 1), k[b][None, None], stride=scale).transpose(0, 1)[0]
        for b in range(2)
    ])
    lhs = _inner(zero_padded, y)
    rhs = _inner(x, back(y, k, scale, (hh, ww)))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    # and it agrees with the exact adjoint away from the border
    exact = blur_downsample_adjoint(y, k, scale, (hh, ww))
    bp = back_project(y, k, scale, (hh, ww))
    torch.testing.assert_close(bp[..., 2 * r:-2 * r, 2 * r:-2 * r], exact[..., 2 * r:-2 * r, 2 * r:-2 * r])


def test_normaliser_is_back_projected_ones():
    gen = torch.Generator().manual_seed(0)
    k = _random_kernels(2, 11, gen)
    n = back_project_normaliser(k, 2, (10, 12), (20, 24))
    assert n.shape == (2, 3, 20, 24)
    torch.testing.assert_close(n, back_project(torch.ones(2, 3, 10, 12, dtype=D), k, 2, (20, 24)))
    # positive kernels cover every interior HR pixel
    assert torch.all(n[..., 6:-6, 6:-6] > 0)


def test_float32_and_shapes_errors():
    x = torch.rand(1, 3, 16, 16)
    k = torch.ones(1, 3, 3) / 9
    assert blur_downsample(x, k, 2).dtype == torch.float32
    with pytest.raises(ValueError, match="one kernel per image"):
        blur_downsample(torch.rand(2, 3, 16, 16), k, 2)
    with pytest.raises(ValueError, match="p odd"):
        blur_downsample(x, torch.ones(1, 4, 4), 2)
