"""USRNet: the release's architecture and layout, the FFT data step (normal equations, kernel
orientation and centring against the project's operator), σ handling, loading, the objective
and the commands.

Tiny configurations (2 iterations, widths 8) on images of a few dozen pixels; the released and
the tiny size are only instantiated (parameter counts, layout).

What every method shares — building at each scale, our file and the authors' layout round
trip, two training steps with validation, resume — is tests/test_contract.py's; this file
keeps what is particular to USRNet.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from kxnet.cli import main
from kxnet.degrade.testsets import synthesise
from kxnet.kernels import anisotropic_gaussian
from kxnet.models import SROutput, USRNet, USRNetConfig, USRNetLoss, create_model, load_model, save_model
from kxnet.models.usrnet import _infer_usrnet_config, estimate_noise_level
from kxnet.physics import (blur_downsample, circular_blur_downsample, psf2otf, psf_of_kernel, sfold_solve,
                           sfold_system, zero_upsample)
from kxnet.train import build_model, load_config, usrnet_loss
from kxnet.train.loss import objective_for

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(n_iter=2, nc=(8, 8, 8, 8), nb=1, h_nc=8)
D = torch.float64


def _rand(*shape, seed=1, dtype=D):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def small_usrnet(scale=2, dtype=D, seed=0, **kw):
    torch.manual_seed(seed)
    return create_model("usrnet", scale=scale, **{**SMALL, **kw}).to(dtype).eval()


def _asymmetric_kernels(b, p, seed=2):
    """Random positive kernels with no symmetry, so a flip or a shift shows."""
    k = _rand(b, p, p, seed=seed) ** 3
    return k / k.sum(dim=(-2, -1), keepdim=True)


# --------------------------------------------------------------------- architecture

def test_parameter_counts_are_the_releases():
    count = lambda m: sum(p.numel() for p in m.parameters())
    release = create_model("usrnet")
    assert (count(release), count(release.p), count(release.h)) == (17_016_016, 17_010_624, 5_392)
    assert count(create_model("usrnet_tiny")) == 590_332


def test_state_dict_is_the_release_layout():
    state = create_model("usrnet_tiny").state_dict()
    assert len(state) == 42
    assert list(state)[:3] == ["p.m_head.weight", "p.m_down1.0.res.0.weight", "p.m_down1.0.res.2.weight"]
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["p.m_head.weight"] == (16, 4, 3, 3) and shapes["p.m_tail.weight"] == (3, 16, 3, 3)
    assert shapes["p.m_down3.2.weight"] == (64, 64, 2, 2) and shapes["p.m_up3.0.weight"] == (64, 64, 2, 2)
    assert shapes["h.mlp.0.weight"] == (32, 2, 1, 1) and shapes["h.mlp.4.weight"] == (12, 32, 1, 1)
    assert not any(k.endswith(".bias") for k in state if k.startswith("p."))        # bias-free prior
    assert sorted(k for k in state if k.startswith("h.")) == sorted(f"h.mlp.{i}.{t}" for i in (0, 2, 4)
                                                                    for t in ("weight", "bias"))


@pytest.mark.parametrize("bad", [dict(nc=(8, 8, 8)), dict(n_iter=0), dict(kernel_size=10), dict(scale=5),
                                 dict(noise_level=-1.0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        USRNetConfig(**bad)


def test_config_round_trip():
    c = USRNetConfig(scale=3, setting=1, nc=[8, 16, 16, 32], noise_level=5.0)
    assert c.kernel_size == 21 and c.nc == (8, 16, 16, 32)
    assert USRNetConfig.from_dict(c.to_dict()) == c and isinstance(c.to_dict()["nc"], list)


# ---------------------------------------------------------------------- data step

def test_data_step_solves_its_normal_equations():
    """(HᵀH + αI) z = Hᵀy + αx with H = S·C_h (circular), in float64, for each image's own α."""
    s, b, h, w = 3, 2, 10, 12
    x, y = _rand(b, 3, s * h, s * w, seed=3), _rand(b, 3, h, w, seed=4)
    system = sfold_system(y, psf_of_kernel(_asymmetric_kernels(b, 7))[:, None], s)
    alpha = torch.tensor([0.3, 0.02], dtype=D).reshape(b, 1, 1, 1)
    z = sfold_solve(system, x, alpha)
    op = lambda u: circular_blur_downsample(u, system.otf, s)
    adjoint = lambda r: torch.fft.ifft2(system.otf.conj() * torch.fft.fft2(zero_upsample(r, s))).real
    lhs, rhs = adjoint(op(z)) + alpha * z, adjoint(y) + alpha * x
    residual = ((lhs - rhs).norm() / rhs.norm()).item()
    print(f"normal-equation relative residual: {residual:.2e}")
    assert residual < 1e-14                                                # measured 3.3e-16
    # the adjoint is the adjoint: <Hu, r> = <u, Hᵀr>
    u, r = _rand(b, 3, s * h, s * w, seed=5), _rand(b, 3, h, w, seed=6)
    torch.testing.assert_close((op(u) * r).sum(), (u * adjoint(r)).sum(), rtol=1e-13, atol=0)


def test_circular_operator_centres_the_psf_at_floor_p_over_2():
    """psf2otf + FFT = circular-padded true convolution with the PSF centred at ⌊p/2⌋."""
    x, psf = _rand(2, 3, 18, 24, seed=7), _asymmetric_kernels(2, 7)
    direct = F.conv2d(F.pad(x.reshape(1, 6, 18, 24), (3, 3, 3, 3), mode="circular"),
                      psf.flip(-2, -1).repeat_interleave(3, 0)[:, None], groups=6).reshape(2, 3, 18, 24)
    fft = circular_blur_downsample(x, psf2otf(psf[:, None], (18, 24)), 1)
    torch.testing.assert_close(fft, direct, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="does not fit"):
        psf2otf(psf, (5, 24))


def test_project_kernels_are_fed_flipped_and_centred():
    """Away from the borders, the project's operator (reflect, correlation, centre (p−1)/2)
    equals the circular convolution with flip(k); unflipped, an asymmetric kernel does not."""
    s, p = 3, 7
    x, k = _rand(2, 3, 30, 36, seed=8), _asymmetric_kernels(2, p)
    ours = blur_downsample(x, k, s)
    m = -(-(p // 2) // s)                      # LR rows/columns whose footprint reaches the border
    inner = lambda t: t[..., m:-m, m:-m]
    flipped = circular_blur_downsample(x, psf2otf(psf_of_kernel(k)[:, None], (30, 36)), s)
    unflipped = circular_blur_downsample(x, psf2otf(k[:, None], (30, 36)), s)
    torch.testing.assert_close(inner(flipped), inner(ours), rtol=0, atol=1e-14)
    assert (inner(unflipped) - inner(ours)).abs().max() > 1e-2
    assert (flipped - ours).abs().max() > 1e-2                                # the borders do differ


def test_data_step_is_consistent_with_the_projects_degradation():
    """LR made by the project's operator, the data step started from the true HR returns it
    far from the borders (the reflect/circular mismatch decays inwards), with the flipped kernel."""
    hr = _rand(2, 3, 96, 96, seed=9)
    k = anisotropic_gaussian(21, torch.tensor([1.0, 2.5], dtype=D), torch.tensor([3.0, 0.9], dtype=D),
                             torch.tensor([0.4, 2.0], dtype=D))
    y = blur_downsample(hr, k, 4)
    z = sfold_solve(sfold_system(y, psf_of_kernel(k)[:, None], 4), hr, torch.tensor(0.1, dtype=D))
    inner = lambda t, m: t[..., m:-m, m:-m]
    assert (inner(z, 24) - inner(hr, 24)).abs().max() < 1e-5                 # measured 6e-6 at 20 px
    assert (z - hr).abs().max() > 1e-2                                        # but not at the borders
    wrong = sfold_solve(sfold_system(y, k.transpose(-1, -2)[:, None], 4), hr, torch.tensor(0.1, dtype=D))
    assert (inner(wrong, 24) - inner(hr, 24)).abs().max() > 1e-3             # a rotated kernel is wrong


# ------------------------------------------------------------------------- forward

def test_forward_runs_the_unfolding_with_the_given_kernel():
    model = small_usrnet(scale=2)
    y, k = _rand(2, 3, 7, 9), _asymmetric_kernels(2, 5)
    sig = torch.tensor([0.0, 10 / 255], dtype=D).reshape(2, 1, 1, 1)
    with torch.no_grad():
        out = model(y, k, sig.flatten())
        assert isinstance(out, SROutput) and out.sr.shape == (2, 3, 14, 18) and out.sr.dtype == D
        assert len(out.stage_images) == 2 and out.sr is out.stage_images[-1]
        assert len(out.stage_kernels) == 2 and all(t is out.kernel for t in out.stage_kernels)
        assert torch.equal(out.kernel, k) and torch.equal(out.condition, k)
        # by hand: x⁰ nearest, (α, β) from HyPaNet, data step, prior
        ab = model.h(torch.cat([sig, torch.full_like(sig, 2.0)], 1))
        x = F.interpolate(y, scale_factor=2, mode="nearest")
        system = sfold_system(y, k.flip(-2, -1)[:, None], 2)
        for i in range(2):
            z = sfold_solve(system, x, ab[:, i:i + 1])
            x = model.p(torch.cat([z, ab[:, 2 + i:3 + i].expand(-1, -1, 14, 18)], 1))
            torch.testing.assert_close(out.stage_images[i], x, rtol=0, atol=1e-13)
        # kernel layouts: B×1×p×p and one p×p for all
        assert torch.equal(model(y, k[:, None], sig).sr, out.sr)
        assert torch.equal(model(y, k[0], sig).sr[0], out.sr[0])


def test_non_blind_errors_are_clear():
    model = small_usrnet()
    y = _rand(1, 3, 6, 6)
    with pytest.raises(ValueError, match="USRNet is non-blind"):
        model(y)
    for bad, msg in ((torch.rand(1, 4, 4), "odd p×p"), (torch.rand(3, 5, 5), "3 kernels for a batch of 1"),
                     (torch.rand(1, 15, 15), "larger than the 12×12 HR image")):
        with pytest.raises(ValueError, match=msg):
            model(y, bad.double())
    with pytest.raises(ValueError, match="2 noise levels for a batch of 1"):
        model(y, torch.ones(3, 3, dtype=D) / 9, torch.zeros(2))


def test_sigma_defaults_to_the_config_or_an_estimate():
    y, k = _rand(2, 3, 8, 8), _asymmetric_kernels(2, 5)
    model = small_usrnet()
    with torch.no_grad():
        est = estimate_noise_level(y)
        assert torch.equal(model(y, k).sr, model(y, k, est).sr)
        assert not torch.equal(model(y, k).sr, model(y, k, 0.0).sr)
        model.config.noise_level = 7.0
        assert torch.equal(model(y, k).sr, model(y, k, 7 / 255).sr)


def test_noise_estimate_reads_white_noise():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((3, 3, 64, 64), 0.5, dtype=D)
    noisy = flat + torch.tensor([0.0, 5.0, 15.0], dtype=D).reshape(3, 1, 1, 1) / 255 * torch.randn(
        flat.shape, generator=g, dtype=D)
    est = estimate_noise_level(noisy) * 255
    assert est[0] == 0 and abs(est[1] - 5) < 0.3 and abs(est[2] - 15) < 0.8
    assert estimate_noise_level(torch.rand(2, 3, 2, 9)).tolist() == [0.0, 0.0]   # too small to tell


# ------------------------------------------------------------------------- loading

def test_release_layout_loads_and_reproduces(tmp_path):
    model = small_usrnet(scale=4, dtype=torch.float32, n_iter=3, nc=(8, 16, 16, 24), nb=2, h_nc=12)
    torch.save(model.state_dict(), tmp_path / "usrnet.pth")
    loaded = load_model(tmp_path / "usrnet.pth")
    assert isinstance(loaded, USRNet) and loaded.config == model.config
    y, k = _rand(1, 3, 6, 7, dtype=torch.float32), _asymmetric_kernels(1, 9).float()
    with torch.no_grad():
        assert torch.equal(loaded(y, k, 0.02).sr, model(y, k, 0.02).sr)
    path = save_model(model, tmp_path / "usrnet.safetensors")
    assert load_model(path).config == model.config


def test_infer_config_from_shapes():
    model = small_usrnet(n_iter=5, nc=(8, 12, 16, 20), nb=3, h_nc=6)
    # scale and setting are not stored (USRNet is scale-agnostic): ×4 setting 2 is assumed
    assert _infer_usrnet_config(model.state_dict()) == USRNetConfig(**{**model.config.to_dict(), "scale": 4,
                                                                       "kernel_size": None})
    state = model.state_dict()
    del state["p.m_down2.3.weight"]
    with pytest.raises(ValueError, match="p.m_down2.3.weight"):
        _infer_usrnet_config(state)


# ------------------------------------------------------------------- objective, cli

def test_objective_feeds_the_true_kernel_and_sigma_in_unit_range():
    model = small_usrnet()
    seen = {}
    model.forward = lambda y, kernel=None, sigma=None: seen.update(kernel=kernel, sigma=sigma) or SROutput(
        torch.zeros(1, 3, 4, 4, dtype=D), None, [], [])
    batch = {"lr": _rand(1, 3, 2, 2), "hr": torch.full((1, 3, 4, 4), 0.25, dtype=D),
             "kernel": _asymmetric_kernels(1, 5), "noise": torch.tensor([12.75])}
    objective = objective_for(model)
    out = objective.forward(model, batch)
    assert torch.equal(seen["kernel"], batch["kernel"]) and seen["sigma"].item() == pytest.approx(0.05)
    total, parts = objective.loss(out, batch, USRNetLoss(image_weight_last=2.0))
    assert total.item() == pytest.approx(0.5) and parts["image"].item() == pytest.approx(0.25)
    assert usrnet_loss(out, batch["hr"])[0].item() == pytest.approx(0.25)


def _photo(path, h, w, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_eval_command_runs_usrnet_only_with_the_true_kernels(tmp_path, capsys):
    path = save_model(small_usrnet(dtype=torch.float32), tmp_path / "usrnet.safetensors")
    synthesise([_photo(tmp_path / "hr" / "img.png", 24, 24)], tmp_path / "set", setting=2, scale=2, noise=5.0,
               seed=0, progress=False)
    assert main(["eval", "--data", str(tmp_path / "set"), "--method", str(path), "--oracle", "--quiet"]) == 0
    assert "8 pairs: PSNR" in capsys.readouterr().out
    assert main(["eval", "--data", str(tmp_path / "set"), "--method", str(path), "--quiet"]) == 2
    assert "USRNet is non-blind" in capsys.readouterr().err


# ------------------------------------------------------------------------- recipes

def test_recipes():
    release, cpu = load_config(ROOT / "configs" / "usrnet_release_x4.yaml"), \
        load_config(ROOT / "configs" / "cpu_usrnet_tiny_setting2_x4.yaml")
    t = release.train
    assert (release.model.name, release.model.scale, release.model.setting) == ("usrnet", 4, 2)
    assert (t.lr, tuple(t.betas), t.milestones, t.gamma) == (1e-4, (0.9, 0.999), [100_000, 200_000, 300_000,
                                                                                   400_000], 0.5)
    assert (t.batch, release.data.lr_patch) == (48, 24)                      # KAIR: batch 48, HR patch 96
    assert release.model.args == {"scale": 4, "setting": 2, "n_iter": 8, "nc": [64, 128, 256, 512], "nb": 2, "h_nc": 64}
    assert (cpu.model.name, cpu.train.batch, cpu.data.lr_patch, cpu.train.threads) == ("usrnet_tiny", 8, 24, 1)
    for cfg in (release, cpu):
        assert not {"stages", "mode"} & set(cfg.model.args)   # KXNet's arguments: a USRNet has none
        build_model(cfg)


def test_benchmark_gives_a_nonblind_model_only_its_oracle_row(tmp_path):
    from kxnet.inference.benchmark import benchmark_model

    hr = tmp_path / "data" / "Set5"
    _photo(hr / "img.png", 24, 24)
    model = small_usrnet(dtype=torch.float32)
    (cell,) = benchmark_model(model, "usrnet", tmp_path / "data", tmp_path / "work", {"Set5": (0.0,)}, {},
                              progress=False)
    assert cell.method.endswith("(non-blind)") and cell.psnr == cell.oracle_psnr and cell.pairs == 8
