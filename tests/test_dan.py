"""DAN (DANv1): the release's architecture and layout, the PCA basis, loading, the training
objective, and the commands that run any model.

Tiny configurations (2 blocks, 16 channels, ×2) on images of a few dozen pixels, except the
tests that need the release's configuration (parameter counts, layout, the authors' .pth),
which only instantiate it or run it on an 8×8 image.

What every method shares — building at each scale, our file and the authors' layout round
trip, two training steps with validation, resume — is tests/test_contract.py's; this file
keeps what is particular to DAN.
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
from kxnet.kernels import explained_variance, kernel_pca, sample_training_kernels
from kxnet.kernels import pca as pca_module
from kxnet.models import DAN, DANConfig, DANLoss, ModelLoadError, SROutput, create_model, load_model, save_model
from kxnet.models.dan import _infer_dan_config
from kxnet.train import dan_loss, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(nf=16, nb=2, estimator_nf=16, estimator_blocks=1, loops=3)


def tiny_dan(scale=2, setting=2, dtype=torch.float64, seed=0, **kw):
    """A small random DAN; in float64 with the float64 basis, so that code ↔ kernel round trips
    are exact to rounding (the stored float32 basis is orthonormal only to ~1e-7)."""
    torch.manual_seed(seed)
    model = create_model("dan", scale=scale, setting=setting, **{**TINY, **kw}).to(dtype).eval()
    if dtype == torch.float64:
        c = model.config
        pca = kernel_pca(c.setting, c.scale, components=c.code_length)
        model.encoder, model.kernel_mean = pca.matrix[None], pca.mean.reshape(c.kernel_size, c.kernel_size)
        model.init_ker_map = model.encode(model.init_kernel)
    return model


@pytest.fixture(scope="module")
def release_x4():
    """The release's ×4 configuration (nf 64, 40 blocks, 10-long codes), random weights."""
    torch.manual_seed(0)
    return create_model("dan_x4").eval()


def _rand(*shape, seed=1, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------- architecture

def test_parameter_counts_are_the_releases(release_x4):
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(release_x4) == 4_329_511
    assert (count(release_x4.Restorer), count(release_x4.Estimator)) == (4_040_915, 288_596)
    assert count(create_model("dan_x2")) == 4_181_799


def test_state_dict_is_the_release_layout(release_x4):
    state = release_x4.state_dict()
    assert len(state) == 379  # 3 buffers + Restorer 330 (×4 upsampler: 3 convs) + Estimator 46
    assert list(state)[:4] == ["encoder", "init_kernel", "init_ker_map", "Restorer.head.weight"]
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["encoder"] == (1, 441, 10) and shapes["init_kernel"] == (1, 21, 21)
    assert shapes["init_ker_map"] == (1, 10)
    assert shapes["Restorer.body.39.body.0.weight"] == (74, 74, 3, 3)      # 64 features + 10 code channels
    assert shapes["Restorer.body.39.body.3.body.2.weight"] == (64, 4, 1, 1)  # channel attention, 64/16
    assert shapes["Restorer.upscale.4.weight"] == (3, 64, 3, 3)
    assert shapes["Estimator.head_HR.weight"] == (32, 3, 9, 9) and shapes["Estimator.out.weight"] == (10, 32, 3, 3)
    assert release_x4.Estimator.head_HR.stride == (4, 4) and release_x4.Estimator.head_HR.padding == (4, 4)
    dirac = torch.zeros(21, 21)
    dirac[10, 10] = 1
    assert torch.equal(release_x4.init_kernel[0], dirac)
    assert torch.equal(release_x4.init_ker_map, release_x4.encoder[0, 220:221])  # c⁰ = vec(dirac)ᵀP: row 220
    assert "kernel_mean" not in state


@pytest.mark.parametrize("bad", [dict(kernel_size=11), dict(nb=0), dict(nf=8), dict(scale=5), dict(code_length=500)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        DANConfig(**{"scale": 4, "setting": 2, **bad})


def test_config_round_trip():
    c = DANConfig(scale=3, setting=1, nb=7)
    assert c.kernel_size == 21 and DANConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="unknown DANConfig fields"):
        DANConfig.from_dict({**c.to_dict(), "stages": 4})


# ------------------------------------------------------------------------------ PCA

def test_pca_basis_is_orthonormal_deterministic_and_generalises():
    # fitted here, not taken from the cache: another test may have fitted it under another
    # thread count, and a refit is bit-identical only under the same one
    pca_module._fit.cache_clear()
    pca = kernel_pca(2, 4)
    p_mat = pca.matrix
    assert p_mat.shape == (441, 10) and p_mat.dtype == torch.float64
    torch.testing.assert_close(p_mat.T @ p_mat, torch.eye(10, dtype=torch.float64), rtol=0, atol=1e-12)
    pca_module._fit.cache_clear()
    assert torch.equal(kernel_pca(2, 4).matrix, p_mat)                      # refit: the same bits
    kernel_pca(2, 4).matrix.zero_()                                         # callers get copies
    assert torch.equal(kernel_pca(2, 4).matrix, p_mat)

    fresh = sample_training_kernels(2, 4, 10_000, torch.Generator().manual_seed(1)).kernels
    held_out = explained_variance(p_mat, fresh)
    print(f"setting 2 ×4 PCA: {pca.explained:.4f} of the variance (fit), {held_out:.4f} on fresh kernels")
    assert held_out > 0.96 and abs(held_out - pca.explained) < 0.002        # measured 0.9652 / 0.9655
    assert explained_variance(kernel_pca(1, 4).matrix, sample_training_kernels(
        1, 4, 2000, torch.Generator().manual_seed(1)).kernels) > 0.9999     # a one-parameter family


def test_decode_is_the_least_squares_reconstruction_in_the_pca_subspace():
    model, pca = tiny_dan(scale=4), kernel_pca(2, 4)
    p_mat, mean = pca.matrix, pca.mean
    k = sample_training_kernels(2, 4, 500, torch.Generator().manual_seed(2)).kernels.double()
    rec = model.decode(model.encode(k))
    residual = (k - rec).reshape(500, -1)
    # orthogonal to the subspace's directions, and the reconstruction lies in m + span(P)
    assert (residual @ p_mat).abs().max() < 1e-12
    off = rec.reshape(500, -1) - mean
    torch.testing.assert_close(off @ p_mat @ p_mat.T, off, rtol=0, atol=1e-12)
    # the mean matters: P·code alone (the span without the mean) is far worse (measured 62 % vs 10 %)
    flat = k.reshape(500, -1)
    rel = lambda r: ((flat - r).norm(dim=1) / flat.norm(dim=1)).mean().item()
    affine, linear = rel(rec.reshape(500, -1)), rel(flat @ p_mat @ p_mat.T)
    print(f"relative reconstruction error with exact codes: {affine:.3f} (m + span P), {linear:.3f} (span P)")
    assert affine < 0.13 < 0.5 < linear


# -------------------------------------------------------------------------- forward

def test_blind_loop_feeds_each_code_to_the_next_restorer():
    model = tiny_dan()
    y = _rand(2, 3, 7, 9)
    with torch.no_grad():
        out = model(y)
        assert isinstance(out, SROutput) and out.sr.shape == (2, 3, 14, 18)
        assert len(out.stage_images) == len(out.stage_kernels) == 3 and out.sr is out.stage_images[-1]
        assert out.kernel.shape == (2, 11, 11) and out.condition.shape == (2, 10)
        torch.testing.assert_close(out.kernel, model.decode(out.condition), rtol=0, atol=0)
        # iteration 1 is restored with the Dirac kernel's code, iteration t+1 with code t
        assert torch.equal(model(y, kernel=model.init_kernel[0]).sr, out.stage_images[0])
        for t in range(2):
            code = model.encode(out.stage_kernels[t])
            torch.testing.assert_close(model(y, kernel=code).sr, out.stage_images[t + 1], rtol=0, atol=1e-12)
        # passing back the condition runs the Restorer once with the final code
        again = model(y, kernel=out.condition)
        assert len(again.stage_images) == 1 and torch.equal(again.condition, out.condition)
        assert torch.equal(again.sr, model.Restorer(y, out.condition))
        other = model(y, kernel=torch.ones(10, dtype=torch.float64))
        assert (other.sr - again.sr).abs().max() > 1e-3                     # the code does condition it


def test_non_blind_kernel_and_code_agree():
    model = tiny_dan()
    y = _rand(2, 3, 6, 6)
    k = sample_training_kernels(2, 2, 2, torch.Generator().manual_seed(3)).kernels.double()
    with torch.no_grad():
        by_kernel, by_code = model(y, kernel=k), model(y, kernel=model.encode(k))
        assert torch.equal(by_kernel.sr, by_code.sr) and torch.equal(by_kernel.kernel, model.decode(model.encode(k)))
        shared = model(y, kernel=k[0])                                      # one p×p kernel for the batch
        assert torch.equal(shared.sr[0], by_kernel.sr[0]) and not torch.equal(shared.sr[1], by_kernel.sr[1])
        assert torch.equal(model(y, kernel=model.encode(k)[0]).sr[0], by_code.sr[0])   # one c-long code
    for bad in (torch.rand(2, 9, 9), torch.rand(2, 7), torch.rand(3, 11, 11), torch.rand(1, 2, 11, 11)):
        with pytest.raises(ValueError, match="expected a 11×11 kernel|kernels or codes for a batch"):
            model(y, kernel=bad.double())
    with pytest.raises(ValueError, match="B×3×h×w"):
        model(y[:, :1])


def test_gradient_blocking_as_the_release():
    """SRᵗ gets no gradient from the Estimator, cᵗ none from the Restorer (the release's .detach())."""
    model = tiny_dan().train()
    y = _rand(1, 3, 6, 6)
    for target, trained, frozen in (("sr", model.Restorer, model.Estimator),
                                    ("condition", model.Estimator, model.Restorer)):
        model.zero_grad(set_to_none=True)
        getattr(model(y), target).square().sum().backward()
        assert all(p.grad is None for p in frozen.parameters()), target
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters()), target


# ------------------------------------------------------------------------ objective

def test_loss_scores_the_last_iteration_only():
    hr = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    images = [torch.full_like(hr, float(t)).requires_grad_(True) for t in (1, 2, 3)]
    code = torch.full((2, 10), 0.5, dtype=torch.float64, requires_grad=True)
    out = SROutput(images[-1], None, images, [], condition=code)
    target = torch.full((2, 10), 0.25, dtype=torch.float64)
    total, parts = dan_loss(out, hr, target)
    assert total.item() == pytest.approx(3.0 + 0.25) and parts["kernel"].item() == pytest.approx(0.25)
    total.backward()
    assert images[0].grad is None and images[1].grad is None and images[2].grad.abs().sum() > 0
    w = DANLoss(image_weight_last=2.0, code_weight=10.0)
    assert dan_loss(out, hr, target, w)[0].item() == pytest.approx(2 * 3.0 + 10 * 0.25)


# -------------------------------------------------------------------------- loading

def _same_outputs(a, b, y):
    with torch.no_grad():
        oa, ob = a(y), b(y)
    assert torch.equal(oa.sr, ob.sr) and torch.equal(oa.condition, ob.condition)


def test_authors_pth_layout_loads_and_reproduces(release_x4, tmp_path):
    y = _rand(1, 3, 8, 8, dtype=torch.float32)
    state = release_x4.state_dict()
    for name, saved in (("flat", state), ("module", {f"module.{k}": v for k, v in state.items()})):
        path = tmp_path / f"DANx4_{name}.pth"
        torch.save(saved, path)
        loaded = load_model(path)
        assert isinstance(loaded, DAN) and loaded.config == release_x4.config
        _same_outputs(release_x4, loaded, y)
    # the basis comes from the file, never from a refit
    state = {k: v.clone() for k, v in state.items()}
    state["encoder"] = torch.linalg.qr(torch.randn(441, 10))[0][None]
    torch.save(state, tmp_path / "other_basis.pth")
    assert torch.equal(load_model(tmp_path / "other_basis.pth").encoder, state["encoder"])


@pytest.mark.parametrize("scale,setting,inferred", [(2, 1, 1), (2, 2, 2), (3, 1, 1), (3, 2, 2), (4, 1, 2), (4, 2, 2)])
def test_infer_config_from_shapes(scale, setting, inferred):
    model = tiny_dan(scale, setting, dtype=torch.float32, loops=4, nb=3, code_length=6)
    cfg = _infer_dan_config(model.state_dict())
    # ×4 uses 21×21 kernels in both settings, so the setting cannot be read: setting 2 is assumed
    assert cfg == DANConfig(**{**model.config.to_dict(), "setting": inferred})


def test_convert_reads_loops_as_the_release(tmp_path, capsys):
    model = tiny_dan(dtype=torch.float32)
    torch.save(model.state_dict(), tmp_path / "dan.pth")
    assert main(["convert", str(tmp_path / "dan.pth"), "-o", str(tmp_path / "c.safetensors")]) == 0
    assert "dan ×2, setting 2, 2 blocks, 11×11 kernels" in capsys.readouterr().out
    # a .pth has no config: loops (not in the weights) is the release's 4 (our files keep theirs)
    assert load_model(tmp_path / "c.safetensors").config == DANConfig(**{**model.config.to_dict(), "loops": 4})


def test_bad_files_fail_with_one_clear_line(tmp_path):
    model = tiny_dan(dtype=torch.float32)
    good = tmp_path / "good.pth"
    torch.save(model.state_dict(), good)
    (tmp_path / "truncated.pth").write_bytes(good.read_bytes()[:-100])
    cases = {"truncated.pth": "not a model checkpoint"}
    for name, drop, fragment in (("no_encoder.pth", "encoder", "missing encoder"),
                                 ("no_fusion.pth", "Restorer.fusion.weight", "missing tensors Restorer.fusion.weight")):
        torch.save({k: v for k, v in model.state_dict().items() if k != drop}, tmp_path / name)
        cases[name] = fragment
    for name, fragment in cases.items():
        with pytest.raises(ModelLoadError) as e:
            load_model(tmp_path / name)
        msg = str(e.value)
        assert "\n" not in msg and name in msg and fragment in msg, msg
    with pytest.raises(ModelLoadError, match="a ×2 model, but ×4 was asked for"):
        load_model(good, expected_scale=4)


# ------------------------------------------------------------------ commands, tiles

@pytest.fixture(scope="module")
def dan_file(tmp_path_factory):
    return save_model(tiny_dan(dtype=torch.float32), tmp_path_factory.mktemp("dan") / "dan_x2.safetensors")


def _photo(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_sr_command_runs_a_dan(dan_file, tmp_path, capsys):
    src = _photo(tmp_path / "in" / "photo.png", 12, 16)
    out = tmp_path / "out"
    code = main(["sr", str(src), "-o", str(out), "--model", str(dan_file), "--stages", "--save-kernel", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert read_image(out / "photo_x2.png").rgb.shape == (24, 32, 3)
    side = json.loads((out / "photo_x2.json").read_text())
    assert side["kernel"]["size"] == 11 and side["model"]["kernel_size"] == 11 and side["model"]["stages"] is None
    assert np.load(out / "photo_x2_kernel.npy").shape == (11, 11) and (out / "photo_x2_stages.png").is_file()
    # non-blind with a kernel file
    np.save(tmp_path / "k.npy", sample_training_kernels(2, 2, 1, torch.Generator().manual_seed(0)).kernels[0].numpy())
    assert main(["sr", str(src), "-o", str(tmp_path / "nb"), "--model", str(dan_file), "--kernel",
                 str(tmp_path / "k.npy"), "--quiet"]) == 0
    # a broken model file: one line, exit 2, nothing written
    broken = tmp_path / "broken.pth"
    broken.write_bytes(dan_file.read_bytes()[:500])
    capsys.readouterr()
    assert main(["sr", str(src), "-o", str(tmp_path / "none"), "--model", str(broken), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.pth" in err[0] and not (tmp_path / "none").exists()


def test_tiles_share_the_code_estimated_on_the_crop(dan_file, tmp_path):
    model = load_model(dan_file)
    calls, forward = [], model.forward
    model.forward = lambda y, kernel=None: calls.append(kernel) or forward(y, kernel)
    image = read_image(_photo(tmp_path / "big.png", 24, 40))
    result, kernel, info, crop = Upscaler(model, "cpu", tile=16, tile_overlap=4).run(image, keep_output=True)
    assert info["tiled"] and info["tiles"] == len(calls) - 1 > 1 and calls[0] is None
    assert all(torch.equal(k, crop.condition) for k in calls[1:])
    assert np.array_equal(kernel, crop.kernel[0].numpy()) and result.rgb.shape == (48, 80, 3)


def test_eval_command_scores_a_dan(dan_file, tmp_path, capsys):
    hr = _photo(tmp_path / "hr" / "img.png", 24, 24)
    synthesise([hr], tmp_path / "set", setting=2, scale=2, noise=0.0, seed=0, progress=False)
    assert main(["eval", "--data", str(tmp_path / "set"), "--method", str(dan_file), "--per-stage",
                 "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["pairs"] == 8 and np.isfinite(summary["psnr"]) and np.isfinite(summary["kernel_psnr"])
    assert len(summary["stage_psnr"]) == 3


# ------------------------------------------------------------------------- recipes

def test_recipes():
    release = load_config(ROOT / "configs" / "dan_release_setting2_x4.yaml")
    t = release.train
    assert (release.model.name, release.model.scale, release.model.setting) == ("dan", 4, 2)
    assert (t.lr, tuple(t.betas), t.milestones, t.gamma, t.iterations, t.batch, release.data.lr_patch) == \
        (4e-4, (0.9, 0.99), [200_000], 0.5, 400_000, 64, 64)
    assert (t.loss.image_weight_last, t.loss.code_weight) == (1.0, 1.0)
    assert release.model.args == {"scale": 4, "setting": 2, "loops": 4, "nf": 64, "nb": 40, "code_length": 10}
    cpu = load_config(ROOT / "configs" / "cpu_dan_setting2_x4.yaml")
    assert (cpu.train.batch, cpu.data.lr_patch, cpu.train.threads) == (8, 24, 1)
    assert cpu.model.args == release.model.args and not {"stages", "mode"} & set(cpu.model.args)
