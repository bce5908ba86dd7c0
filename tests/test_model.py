"""KXNet architecture (docs/kxnet.md): step formulas, wiring, gradients, sizes, dtypes, devices."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from kxnet.inference import default_stages, render_stages
from kxnet.kernels import anisotropic_gaussian, auxiliary_bank, initial_kernel
from kxnet.models import KXNet, KXNetConfig, create_model, is_model, list_models
from kxnet.models.kxnet import image_step_gradient, kernel_step_gradient
from kxnet.physics import (
    back_project,
    back_project_normaliser,
    bicubic_upsample,
    blur_downsample,
    blur_downsample_adjoint,
)

D = torch.float64


def _small(scale=2, setting=2, stages=2, **kw):
    torch.manual_seed(0)
    return create_model("kxnet", scale=scale, setting=setting, stages=stages, **kw)


def _random_kernels(b, p, gen, dtype=D):
    k = torch.rand(b, p, p, generator=gen, dtype=dtype)
    return k / k.sum(dim=(-2, -1), keepdim=True)


def _capture_input(module):
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    return seen, handle


# ------------------------------------------------------------------------- the step formulas

@pytest.mark.parametrize("scale,p,hw", [(2, 11, (7, 9)), (3, 15, (6, 5)), (4, 21, (6, 7))])
def test_kernel_step_gradient_is_scaled_autograd_gradient(scale, p, hw):
    gen = torch.Generator().manual_seed(scale)
    x = torch.rand(2, 3, scale * hw[0], scale * hw[1], generator=gen, dtype=D)
    y = torch.rand(2, 3, *hw, generator=gen, dtype=D)
    k = _random_kernels(2, p, gen).requires_grad_(True)
    (want,) = torch.autograd.grad(0.5 * ((blur_downsample(x, k, scale) - y) ** 2).sum(), k)
    got = kernel_step_gradient(x, y, k.detach(), scale)
    torch.testing.assert_close(got, want / (3 * hw[0] * hw[1]), rtol=1e-12, atol=1e-15)


def test_official_image_step_is_release_back_projection():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 26, 34, generator=gen, dtype=D)
    y = torch.rand(2, 3, 13, 17, generator=gen, dtype=D)
    k = _random_kernels(2, 11, gen)
    e = blur_downsample(x, k, 2) - y
    want = back_project(e, k, 2, (26, 34)) / (back_project_normaliser(k, 2, (13, 17), (26, 34)) + 1e-10)
    torch.testing.assert_close(image_step_gradient(x, y, k, 2, "official"), want, rtol=0, atol=0)


@pytest.mark.parametrize("scale", [2, 3])
def test_exact_image_step_uses_the_autograd_adjoint(scale):
    gen = torch.Generator().manual_seed(scale)
    p, h, w = 11, 9, 12
    x = torch.rand(2, 3, scale * h, scale * w, generator=gen, dtype=D, requires_grad=True)
    y = torch.rand(2, 3, h, w, generator=gen, dtype=D)
    k = _random_kernels(2, p, gen)
    ax = blur_downsample(x, k, scale)
    # X-step data gradient ∇_X ½‖A X − Y‖² and the coverage Aᵀ1, both by autograd
    (grad,) = torch.autograd.grad(0.5 * ((ax - y) ** 2).sum(), x, retain_graph=True)
    (coverage,) = torch.autograd.grad(ax.sum(), x)
    x = x.detach()
    torch.testing.assert_close(blur_downsample_adjoint(blur_downsample(x, k, scale) - y, k, scale, x.shape[-2:]),
                               grad, rtol=0, atol=1e-12)
    exact = image_step_gradient(x, y, k, scale, "exact")
    torch.testing.assert_close(exact, grad / (coverage + 1e-10), rtol=1e-10, atol=1e-12)
    # The modes differ only where the reflection reaches: within p//2 + 1 HR pixels of the border.
    official = image_step_gradient(x, y, k, scale, "official")
    m = p // 2 + 1
    torch.testing.assert_close(exact[..., m:-m, m:-m], official[..., m:-m, m:-m], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(exact, official)


# ------------------------------------------------------------------------------- the wiring

def test_stage_one_wiring_matches_section_3():
    model = _small(scale=2, stages=2)
    with torch.no_grad():
        model.gamma_stage[0] = 0.7  # so that a wrong use of γ shows
    y = torch.rand(1, 3, 10, 12)
    k_in, h1 = _capture_input(model.K_stage[0].K_ProNet)
    x_in, h2 = _capture_input(model.X_stage[0].X_ProNet)
    with torch.no_grad():
        out = model(y)
    h1.remove(), h2.remove()

    s, x0, k0 = 2, bicubic_upsample(y, 2), initial_kernel(11).unsqueeze(0)
    k_tilde = k0 - 0.7 / 10 * kernel_step_gradient(x0, y, k0, s)
    for c in range(3):
        torch.testing.assert_close(k_in[0][:, c], k_tilde)
    torch.testing.assert_close(k_in[0][:, 3:], auxiliary_bank(2, 2).unsqueeze(0))

    k1 = out.stage_kernels[0]
    g = image_step_gradient(x0, y, k1, s)
    aux_x = F.conv2d(y, model.AV_X_ker, padding=1)
    torch.testing.assert_close(x_in[0], torch.cat([F.pixel_unshuffle(x0, s), F.pixel_unshuffle(g, s), y, aux_x], 1))
    assert x_in[0].shape[1] == 6 * s * s + 35 == model.config.image_channels
    assert model.AV_X_ker.shape == (32, 3, 3, 3) and (model.AV_X_ker[5, 2] == torch.tensor(
        [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])).all()


def test_stage_outputs_and_kernel_projection():
    model = _small(scale=3, setting=1, stages=3)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 13, 17))
    assert out.sr.shape == (2, 3, 39, 51) and out.kernel.shape == (2, 21, 21)
    assert len(out.stage_images) == len(out.stage_kernels) == 3
    assert out.sr is out.stage_images[-1] and out.kernel is out.stage_kernels[-1]
    for k in out.stage_kernels:
        assert (k > 0).all()
        torch.testing.assert_close(k.sum(dim=(-2, -1)), torch.ones(2))
    assert all((x >= 0).all() for x in out.stage_images)  # prox nets end in a ReLU (§3.4)


def test_every_parameter_learns_through_the_multi_stage_loss():
    model = _small(scale=2, stages=2).train()
    gen = torch.Generator().manual_seed(3)
    x_gt = torch.rand(2, 3, 16, 16, generator=gen)
    k_gt = anisotropic_gaussian(11, torch.tensor([1.0, 2.0]), torch.tensor([2.5, 1.2]), torch.tensor([0.3, 1.1]))
    out = model(blur_downsample(x_gt, k_gt, 2))
    weights = [0.1] * (len(out.stage_images) - 1) + [1.0]  # Eq. 12 as the release trains it
    loss = sum(w * (F.l1_loss(k, k_gt) + F.l1_loss(x, x_gt))
               for w, x, k in zip(weights, out.stage_images, out.stage_kernels))
    loss.backward()
    for name, p in model.named_parameters():
        if name in ("eta_stage", "kernel_map0"):
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not model.kernel_map0.requires_grad and model.eta_stage.requires_grad


def test_non_blind_kernel_skips_the_k_net():
    model = _small(scale=2, stages=2)
    y = torch.rand(2, 3, 9, 8)
    k = _random_kernels(2, 11, torch.Generator().manual_seed(0), torch.float32)
    seen, handle = _capture_input(model.K_stage[0].K_ProNet)
    with torch.no_grad():
        out = model(y, kernel=k)
        shared = model(y[:1], kernel=k[0])  # one p×p kernel for the whole batch
    handle.remove()
    assert not seen
    assert all(torch.equal(s, k) for s in out.stage_kernels)
    torch.testing.assert_close(shared.sr, out.sr[:1])


# ------------------------------------------------------------------------------ sizes, counts

def _spec_count(scale, p, stages=19):
    c_x = 6 * scale * scale + 35
    per_stage = 9 * (9 * c_x * c_x + c_x) + 9 * (9 * 27 * 27 + 27)
    return stages * per_stage + 864 + 2 * 24 * p * p + 2 * stages


# docs/kxnet.md's counts: (setting, scale) → (all parameters, trainable)
SPEC_COUNTS = {
    (1, 2): (6_515_966, 6_505_382), (1, 3): (13_354_256, 13_343_672), (1, 4): (27_581_798, 27_571_214),
    (2, 2): (6_500_606, 6_497_702), (2, 3): (13_343_888, 13_338_488), (2, 4): (27_581_798, 27_571_214),
}


def test_parameter_counts_formula():
    for (setting, scale), (total, trainable) in SPEC_COUNTS.items():
        p = KXNetConfig(scale=scale, setting=setting).kernel_size
        assert _spec_count(scale, p) == total and total - 24 * p * p == trainable
    # the paper's Table 3 column is the setting 2 ×2 model at S = 5, 10, 17, 21 stages
    assert [_spec_count(2, 11, s) for s in (5, 10, 17, 21)] == [1_715_602, 3_424_532, 5_817_034, 7_184_178]


@pytest.mark.parametrize("setting,scale", [(1, 2), (2, 3), (2, 4)])
def test_parameter_counts_of_built_models(setting, scale):
    model = create_model("kxnet", scale=scale, setting=setting, stages=19)
    total, trainable = SPEC_COUNTS[(setting, scale)]
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    state = model.state_dict()
    assert len(state) == 689 and "initial_kernel" not in state
    assert all(p.is_contiguous() and 0 not in p.stride() for p in model.parameters())


# ----------------------------------------------------------------------------- dtypes, devices

def test_float64_and_odd_sizes():
    model = _small(scale=3, stages=2)
    y = torch.rand(1, 3, 13, 17, dtype=D)
    out32 = model(y.float())
    out64 = model.double()(y)
    assert out64.sr.dtype == out64.kernel.dtype == D and out64.sr.shape == (1, 3, 39, 51)
    torch.testing.assert_close(out64.sr.float(), out32.sr, rtol=1e-4, atol=1e-4)


def test_rejects_bad_inputs():
    model = _small(scale=2, stages=1)
    with pytest.raises(ValueError, match="B×3×h×w"):
        model(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="too small"):
        model(torch.rand(1, 3, 2, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    model = _small(scale=2, stages=2)
    y = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        cpu = model(y)
        gpu = model.cuda()(y.cuda())
    assert gpu.sr.is_cuda and gpu.kernel.is_cuda
    torch.testing.assert_close(gpu.sr.cpu(), cpu.sr, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu.kernel.cpu(), cpu.kernel, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------- config and registry

def test_config_round_trip_and_validation():
    cfg = KXNetConfig(scale=4, setting=2, kernel_size=11, stages=3, mode="exact")
    assert KXNetConfig.from_dict(cfg.to_dict()) == cfg
    assert KXNetConfig(scale=3, setting=1).kernel_size == 21 and KXNetConfig(scale=3).kernel_size == 15
    assert KXNet(cfg).kernel_map.shape == (24, 11, 11)  # the ×2 bank serves any scale at p = 11
    for bad in (dict(setting=3), dict(scale=5), dict(mode="fast"), dict(stages=0), dict(setting=1, kernel_size=11)):
        with pytest.raises(ValueError):
            KXNetConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        KXNetConfig.from_dict({"scale": 2, "depth": 3})


def test_registry():
    assert {"kxnet", "kxnet_x2", "kxnet_x3", "kxnet_x4", "bicubic"} <= set(list_models())
    assert list_models("kxnet_x*") == ["kxnet_x2", "kxnet_x3", "kxnet_x4"]
    assert is_model("kxnet") and not is_model("no_such_model")
    assert create_model("kxnet_x3", stages=1).config.scale == 3
    with pytest.raises(ValueError, match="unknown model 'no_such_model'"):
        create_model("no_such_model")


def test_bicubic_baseline():
    model = create_model("bicubic", scale=3)
    y = torch.rand(1, 3, 7, 9)
    out = model(y)
    assert torch.equal(out.sr, bicubic_upsample(y, 3))
    assert out.kernel is None and out.stage_images == [] and not list(model.parameters())


# --------------------------------------------------------------------------------- rendering

def test_render_stages(tmp_path):
    assert default_stages(19) == [1, 4, 7, 10, 13, 16, 19] and default_stages(3) == [1, 2, 3]
    model = _small(scale=2, stages=3)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 16, 16))
    path = render_stages(out, tmp_path / "stages.png", index=1)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        assert img.width >= 3 * 32 and img.height >= 32 + 11
    assert [p.name for p in tmp_path.iterdir()] == ["stages.png"]
    with pytest.raises(ValueError):
        render_stages(out, tmp_path / "x.png", stages=[0])
