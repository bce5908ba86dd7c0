"""KENet (our reading of the paper), its adaptive attention loss, and the blind pair
KENet + USRNet: wiring, state dicts, loading, tiles, the commands, a real photo, KXNet's K⁰.

Tiny configurations (KENet widths 8, FC 16; USRNet 2 iterations of width 8) on images of a few
dozen pixels; the paper-sized KENets are only instantiated (parameter counts).

What every method shares — building at each scale, our file and the authors' layout round
trip, two training steps with validation, resume — is tests/test_contract.py's; this file
keeps what is particular to KENet and the pair.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from kxnet.cli import main
from kxnet.degrade.testsets import synthesise
from kxnet.inference.upscaler import Upscaler
from kxnet.io import read_image
from kxnet.kernels import sample_training_kernels
from kxnet.models import (KENet, KENetConfig, KENetLoss, KENetUSRNet, KENetUSRNetConfig, KXNetLoss, SROutput, USRNet, create_model,
                          load_model, save_model)
from kxnet.models.kenet_usrnet import combine
from kxnet.physics import bicubic_upsample
from kxnet.train import attention_loss, load_config
from kxnet.train.loss import objective_for

ROOT = Path(__file__).resolve().parents[1]
REALSRSET = Path("/work/shared/data/real/RealSRSet")
TINY_KENET = {"channels": (8, 8, 8, 8), "fc": 16}
TINY_USRNET = {"n_iter": 2, "nc": (8, 8, 8, 8), "nb": 1, "h_nc": 8}
D = torch.float64


def _rand(*shape, seed=1, dtype=D):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def tiny_pair(scale=2, dtype=D, seed=0) -> KENetUSRNet:
    torch.manual_seed(seed)
    return create_model("kenet_usrnet", scale=scale, kenet=TINY_KENET, usrnet=TINY_USRNET).to(dtype).eval()


# --------------------------------------------------------------------------- KENet

def test_parameter_counts_of_both_readings():
    count = lambda m: sum(p.numel() for p in m.parameters())
    paper = create_model("kenet", scale=4)
    assert count(paper) == 4_717_561
    assert (count(paper.features), count(paper.kernel_head)) == (2_952_768, 1_764_793)
    assert count(create_model("kenet", scale=2)) == 4_389_561                    # l = 11
    assert count(create_model("kenet", scale=4, channels=(64, 128, 256, 512))) == 9_846_713


def test_estimate_is_a_kernel_per_image():
    torch.manual_seed(0)
    model = create_model("kenet", scale=3, **TINY_KENET).double().eval()
    y = _rand(2, 3, 9, 13)                                   # odd sizes: floor pooling down to 1×1
    with torch.no_grad():
        k = model.estimate(y)
        out = model(y)
    assert k.shape == (2, 15, 15) and (k >= 0).all()
    torch.testing.assert_close(k.sum(dim=(-2, -1)), torch.ones(2, dtype=D), rtol=0, atol=1e-12)
    assert isinstance(out, SROutput) and torch.equal(out.kernel, k) and torch.equal(out.condition, k)
    assert torch.equal(out.sr, bicubic_upsample(y, 3)) and out.stage_images == []
    with pytest.raises(ValueError, match="at least 8×8"):
        model.estimate(_rand(1, 3, 7, 20))
    with pytest.raises(ValueError):
        KENetConfig(channels=(8, 8, 8))


def test_config_round_trip():
    c = KENetConfig(scale=2, setting=1, channels=[16, 32, 48, 64])
    assert c.kernel_size == 21 and KENetConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_attention_loss_by_hand():
    """Mean over the l² taps for every term; the masked terms count (and pass gradient to) only
    the taps where the truth exceeds λ·peak."""
    gt = torch.tensor([[[0.0, 0.006, 0.0], [0.05, 0.5, 0.2], [0.0, 0.244, 0.0]]], dtype=D)
    est = torch.full((1, 3, 3), 1 / 9, dtype=D, requires_grad=True)
    err = (est.detach() - gt).abs()
    above = lambda lam: torch.where(gt > lam * 0.5, err, torch.zeros_like(err)).sum() / 9
    total, parts = attention_loss(est, gt)
    expected = 0.01 * err.mean() + 0.1 * above(0.01) + 1.0 * above(0.1)
    assert total.item() == pytest.approx(expected.item(), abs=1e-15)
    assert parts["kernel"].item() == pytest.approx(err.mean().item()) and parts["image"].item() == 0
    total.backward()
    # taps not above 0.01·peak get only ρ₀'s gradient (0.01/9); the ones above 0.1·peak get all three
    assert est.grad[0, 0, 0].abs().item() == pytest.approx(0.01 / 9)
    assert est.grad[0, 1, 1].abs().item() == pytest.approx(1.11 / 9)
    assert est.grad[0, 0, 1].abs().item() == pytest.approx(0.11 / 9)         # 0.006 is above 0.01·0.5 only
    w = KENetLoss(att_lambda=(0.0, 0.5), att_rho=(1.0, 0.0, 2.0))
    assert attention_loss(est, gt, w)[0].item() == pytest.approx((err.mean() + 2 * above(0.5)).item())


def test_kenet_objective_scores_the_estimate_against_the_true_kernel():
    torch.manual_seed(0)
    model = create_model("kenet", scale=2, **TINY_KENET)
    batch = {"lr": _rand(2, 3, 8, 8, dtype=torch.float32), "hr": _rand(2, 3, 16, 16, dtype=torch.float32),
             "kernel": sample_training_kernels(2, 2, 2, torch.Generator().manual_seed(0)).kernels,
             "noise": torch.zeros(2)}
    objective = objective_for(model)
    out = objective.forward(model, batch)
    total, _ = objective.loss(out, batch, KENetLoss())
    assert total.item() == pytest.approx(attention_loss(out.kernel, batch["kernel"])[0].item())


# ---------------------------------------------------------------------------- pair

def test_pair_runs_kenet_then_usrnet():
    pair = tiny_pair()
    y = _rand(2, 3, 9, 10)
    sigma = torch.tensor([0.0, 0.03], dtype=D)
    with torch.no_grad():
        out = pair(y, sigma=sigma)
        k = pair.kenet.estimate(y)
        assert torch.equal(out.kernel, k) and out.sr.shape == (2, 3, 18, 20)
        assert torch.equal(out.condition[0], k) and torch.equal(out.condition[1], sigma)
        assert torch.equal(out.sr, pair.usrnet(y, k, sigma).sr) and len(out.stage_images) == 2
        # the oracle row: USRNet with the given kernel; passing the condition back reproduces the blind run
        truth = sample_training_kernels(2, 2, 2, torch.Generator().manual_seed(1)).kernels.double()
        assert torch.equal(pair(y, kernel=truth, sigma=sigma).sr, pair.usrnet(y, truth, sigma).sr)
        assert torch.equal(pair(y, kernel=out.condition).sr, out.sr)   # the condition carries σ too
        # σ defaults to the estimate from y, as USRNet's does
        assert torch.equal(pair(y).sr, pair.usrnet(y, k).sr)


def test_pair_state_dict_is_both_under_prefixes(tmp_path):
    pair = tiny_pair(scale=4, dtype=torch.float32)
    state = pair.state_dict()
    assert set(state) == {f"kenet.{k}" for k in pair.kenet.state_dict()} | {f"usrnet.{k}" for k in
                                                                            pair.usrnet.state_dict()}
    assert "usrnet.p.m_head.weight" in state and "kenet.kernel_head.4.weight" in state
    y = _rand(1, 3, 8, 8, dtype=torch.float32)
    for saved in (save_model(pair, tmp_path / "pair.safetensors"), tmp_path / "pair.pth"):
        if saved.suffix == ".pth":
            torch.save(state, saved)                          # a plain state dict: inferred from shapes
        loaded = load_model(saved)
        assert isinstance(loaded, KENetUSRNet) and loaded.config == pair.config
        with torch.no_grad():
            assert torch.equal(loaded(y).sr, pair(y).sr)
    # each part alone is recognised as itself
    torch.save(pair.kenet.state_dict(), tmp_path / "kenet.pth")
    torch.save(pair.usrnet.state_dict(), tmp_path / "usrnet.pth")
    assert isinstance(load_model(tmp_path / "kenet.pth"), KENet)
    assert isinstance(load_model(tmp_path / "usrnet.pth"), USRNet)


def test_combine_two_trained_parts():
    torch.manual_seed(3)
    kenet = create_model("kenet", scale=2, **TINY_KENET)
    usrnet = create_model("usrnet", scale=2, **TINY_USRNET)
    pair = combine(kenet, usrnet)
    assert pair.config == KENetUSRNetConfig(scale=2, setting=2, kenet=TINY_KENET, usrnet=TINY_USRNET)
    assert all(torch.equal(v, kenet.state_dict()[k]) for k, v in pair.kenet.state_dict().items())
    assert all(torch.equal(v, usrnet.state_dict()[k]) for k, v in pair.usrnet.state_dict().items())
    with pytest.raises(ValueError, match="KENet is ×2 setting 2, USRNet ×4"):
        combine(kenet, create_model("usrnet", scale=4, **TINY_USRNET))
    with pytest.raises(ValueError, match="shared"):
        KENetUSRNetConfig(kenet={"scale": 2})


def _photo(path, h, w, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_tiles_share_the_estimate_of_the_crop(tmp_path):
    model = tiny_pair(dtype=torch.float32)
    calls, forward = [], model.forward
    model.forward = lambda y, kernel=None: calls.append(kernel) or forward(y, kernel)
    image = read_image(_photo(tmp_path / "big.png", 24, 40))
    result, kernel, info, crop = Upscaler(model, "cpu", tile=16, tile_overlap=4).run(image, keep_output=True)
    assert info["tiled"] and info["tiles"] == len(calls) - 1 > 1 and calls[0] is None
    # every tile gets the crop's kernel *and* its σ (not one re-estimated per tile)
    assert all(torch.equal(k[0], crop.condition[0]) and torch.equal(k[1], crop.condition[1]) for k in calls[1:])
    assert np.array_equal(kernel, crop.kernel[0].numpy()) and result.rgb.shape == (48, 80, 3)


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    return save_model(tiny_pair(dtype=torch.float32), tmp_path_factory.mktemp("pair") / "kenet_usrnet_x2.safetensors")


def test_eval_command_blind_and_oracle(pair_file, tmp_path, capsys):
    synthesise([_photo(tmp_path / "hr" / "img.png", 24, 24)], tmp_path / "set", setting=2, scale=2, noise=5.0,
               seed=0, progress=False)
    for extra in ([], ["--oracle"]):
        json_path = tmp_path / f"r{len(extra)}.json"
        assert main(["eval", "--data", str(tmp_path / "set"), "--method", str(pair_file), "--json", str(json_path),
                     "--quiet", *extra]) == 0
        summary = json.loads(json_path.read_text())["summary"]
        assert summary["pairs"] == 8 and np.isfinite(summary["psnr"]) and summary["oracle"] == bool(extra)
        assert (summary["kernel_psnr"] is None) == bool(extra)               # the blind row scores its kernel


@pytest.mark.skipif(not REALSRSET.is_dir(), reason="RealSRSet is not available")
def test_sr_command_on_a_real_photo(pair_file, tmp_path, capsys):
    photo = read_image(REALSRSET / "chip.png").rgb
    crop = (np.clip(photo[:40, :48], 0, 1) * 255).round().astype(np.uint8)
    PILImage.fromarray(crop).save(tmp_path / "chip_crop.png")
    code = main(["sr", str(tmp_path / "chip_crop.png"), "-o", str(tmp_path / "out"), "--model", str(pair_file),
                 "--save-kernel", "--stages", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert read_image(tmp_path / "out" / "chip_crop_x2.png").rgb.shape == (80, 96, 3)
    assert (tmp_path / "out" / "chip_crop_x2_stages.png").is_file()
    k = np.load(tmp_path / "out" / "chip_crop_x2_kernel.npy")
    assert k.shape == (11, 11) and abs(k.sum() - 1) < 1e-5 and (k >= 0).all()


# ------------------------------------------------------------------------- recipes

def test_recipes():
    paper, cpu = load_config(ROOT / "configs" / "kenet_paper_setting2_x4.yaml"), \
        load_config(ROOT / "configs" / "cpu_kenet_setting2_x4.yaml")
    t = paper.train
    assert (paper.model.name, paper.model.scale, paper.model.setting, paper.model.args["channels"]) == \
        ("kenet", 4, 2, [64, 128, 192, 256])
    assert (t.batch, t.iterations, t.milestones, t.gamma, paper.data.lr_patch) == (64, 600_000, [200_000, 400_000],
                                                                                  0.1, 64)
    assert (tuple(t.loss.att_lambda), tuple(t.loss.att_rho)) == ((0.01, 0.1), (0.01, 0.1, 1.0))
    assert (cpu.train.batch, cpu.data.lr_patch, cpu.train.threads) == (8, 24, 1)
    assert not paper.checkpoint.keep_best and not cpu.checkpoint.keep_best    # its PSNR is bicubic's


# ------------------------------------------------------------ KENet as KXNet's K⁰ estimator

def _kxnet_with_estimator(seed=4, scale=2, stages=2):
    torch.manual_seed(seed)
    return create_model("kxnet", scale=scale, stages=stages, estimator=TINY_KENET).to(D).eval()


def test_estimator_gives_each_image_its_own_initial_kernel():
    model = _kxnet_with_estimator()
    y = _rand(2, 3, 12, 12, seed=5)
    with torch.no_grad():
        out = model(y)
        k0 = model.K_estimator.estimate(y)
        expected, _ = model.K_stage[0](bicubic_upsample(y, 2), y, k0, model.kernel_map.unsqueeze(0).expand(2, -1, -1, -1),
                                       model.gamma_stage[0])
    assert not torch.allclose(k0[0], k0[1])
    assert torch.allclose(out.stage_kernels[0], expected, atol=1e-14)
    # the release's model keeps the fixed K⁰ and its exact state-dict keys
    plain = create_model("kxnet", scale=2, stages=2)
    assert plain.K_estimator is None
    assert set(model.state_dict()) == set(plain.state_dict()) | {f"K_estimator.{k}" for k in
                                                                 model.K_estimator.state_dict()}


def test_estimator_learns_through_the_kxnet_loss():
    model = _kxnet_with_estimator().train()
    y, hr = _rand(2, 3, 10, 10, seed=6), _rand(2, 3, 20, 20, seed=7)
    kernel = sample_training_kernels(2, 2, 2, generator=torch.Generator().manual_seed(0)).kernels.to(D)
    loss, _ = objective_for(model).loss(model(y), {"lr": y, "hr": hr, "kernel": kernel}, KXNetLoss())
    loss.backward()
    grads = [p.grad for p in model.K_estimator.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_with_estimator_files_and_shapes(tmp_path):
    from kxnet.models import grow_stages, with_estimator

    torch.manual_seed(8)
    trained = create_model("kxnet", scale=2, stages=2).to(D)
    kenet = create_model("kenet", scale=2, **TINY_KENET).to(D)
    joined = with_estimator(trained, kenet).eval()
    assert joined.config.estimator == {"channels": [8, 8, 8, 8], "fc": 16}
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in joined.state_dict().items()
               if not k.startswith("K_estimator."))
    y = _rand(1, 3, 12, 12, seed=9)
    with torch.no_grad():
        assert torch.allclose(joined(y).stage_kernels[0], joined.K_stage[0](
            bicubic_upsample(y, 2), y, kenet.estimate(y), joined.kernel_map[None], joined.gamma_stage[0])[0])
        for saved in (save_model(joined, tmp_path / "j.safetensors"), tmp_path / "j.pth"):
            if saved.suffix == ".pth":
                torch.save(joined.state_dict(), saved)          # the estimator's widths from its shapes
            loaded = load_model(saved).to(D)
            assert loaded.config == joined.config
            assert torch.equal(loaded(y).sr, joined(y).sr)
        grown = grow_stages(joined, 3)
        assert grown.config.estimator == joined.config.estimator
        assert torch.equal(grown(y).stage_images[1], joined(y).stage_images[1])
    with pytest.raises(ValueError, match="KENet ×4 setting 2 with 21×21"):
        with_estimator(trained, create_model("kenet", scale=4, **TINY_KENET))
    with pytest.raises(ValueError, match="needs KXNet and KENet"):
        with_estimator(kenet, kenet)
    with pytest.raises(ValueError, match="estimator must be None or a dict"):
        create_model("kxnet", scale=2, stages=1, estimator={"widths": 8})


def test_pass_kernel_hands_the_estimate_to_every_x_step():
    from kxnet.models import with_estimator
    from kxnet.models.kxnet import PROJECTION_EPS

    torch.manual_seed(11)
    trained = create_model("kxnet", scale=2, stages=3).to(D)
    kenet = create_model("kenet", scale=2, **TINY_KENET).to(D)
    y = _rand(2, 3, 12, 12, seed=12)
    with torch.no_grad():
        expected, k = [], kenet.estimate(y)
        for _ in range(3):                          # each stage only re-projects: ReLU(K + ε) / Σ
            k = (k + PROJECTION_EPS) / (k + PROJECTION_EPS).sum(dim=(-2, -1), keepdim=True)
            expected.append(k)
        passed = with_estimator(trained, kenet, pass_kernel=True).eval()(y)
        kept = with_estimator(trained, kenet).eval()(y)
        nonblind = trained.eval()(y, expected)
    assert all(torch.allclose(k, e, atol=1e-12) for k, e in zip(passed.stage_kernels, expected))
    assert not torch.allclose(kept.kernel, expected[-1], atol=1e-3)   # untouched K-nets move it
    assert torch.allclose(passed.sr, nonblind.sr, atol=1e-10)  # the X-steps are as trained


def test_convert_adds_an_estimator(tmp_path, capsys):
    torch.manual_seed(10)
    save_model(create_model("kxnet", scale=4, stages=1), tmp_path / "k.safetensors")
    save_model(create_model("kenet", scale=4, **TINY_KENET), tmp_path / "e.safetensors")
    assert main(["convert", str(tmp_path / "k.safetensors"), "-o", str(tmp_path / "j.safetensors"),
                 "--estimator", str(tmp_path / "e.safetensors")]) == 0
    assert "K⁰ from a KENet" in capsys.readouterr().out
    assert load_model(tmp_path / "j.safetensors").config.estimator == {"channels": [8, 8, 8, 8], "fc": 16}
    save_model(create_model("kenet", scale=2, **TINY_KENET), tmp_path / "e2.safetensors")
    assert main(["convert", str(tmp_path / "k.safetensors"), "-o", str(tmp_path / "j2.safetensors"),
                 "--estimator", str(tmp_path / "e2.safetensors")]) == 2
    assert "k.safetensors" in capsys.readouterr().err and not (tmp_path / "j2.safetensors").exists()
    assert main(["convert", str(tmp_path / "k.safetensors"), "-o", str(tmp_path / "j3.safetensors"),
                 "--pass-kernel"]) == 2
    assert "--pass-kernel needs --estimator" in capsys.readouterr().err
