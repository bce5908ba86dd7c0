"""DCLS: the released sizes, the authors' layout, the two Fourier computations, the forward
contract, the objective and the commands.

Tiny models (nf 16, one group of one DPAB, latent 8) everywhere except the parameter counts
(instantiated on the meta device) and the authors'-layout round trips, which are about the
released sizes. Exactness checks run in float64.

What every method shares — building at each scale, our file and the authors' layout round
trip, two training steps with validation, resume — is tests/test_contract.py's; this file
keeps what is particular to DCLS.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kxnet.cli import main
from kxnet.inference.upscaler import Upscaler
from kxnet.io import Image as KImage
from kxnet.io import read_image
from kxnet.kernels import anisotropic_gaussian
from kxnet.models import DCLS, DCLSConfig, DCLSLoss, ModelLoadError, SROutput, create_model, load_model, save_model
from kxnet.models.dcls import FILTER_STRUCTURES, _is_dcls_state
from kxnet.models.dcls.fourier import cls_deconvolve, lr_space_kernel, reformulated_kernel, zeroize_negligible
from kxnet.physics import blur, blur_downsample, downsample
from kxnet.train import dcls_loss, load_config
from conftest import circular_convolution

TINY = dict(nf=16, nb=1, ng=1, input_para=8, kernel_channels=4)


def _perturbed(model):
    """Every tensor nudged off its initial value (zero biases would hide wiring mistakes)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def tiny_dcls(scale=2, **kw):
    torch.manual_seed(0)
    return _perturbed(create_model("dcls", scale=scale, **{**TINY, **kw}))


@pytest.fixture(scope="module")
def tiny():
    return tiny_dcls()


def _lr(h=12, w=14, b=1, seed=1):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------ released sizes

@pytest.mark.parametrize("scale,p,total", [(4, 21, 13_626_187), (4, 31, 19_054_027), (2, 11, 8_905_931),
                                           (2, 21, 13_478_475)])
def test_parameter_counts_are_the_releases(scale, p, total):
    with torch.device("meta"):
        m = create_model("dcls", scale=scale, kernel_size=p)
    assert m.config.filter_structures == FILTER_STRUCTURES[p]
    assert sum(t.numel() for t in m.parameters()) == total
    if (scale, p) == (4, 21):  # the release's split (docs/dcls.md)
        assert sum(t.numel() for t in m.Restorer.parameters()) == 6_931_051
        assert sum(t.numel() for t in m.Estimator.parameters()) == 6_695_136
        assert sum(t.numel() for t in m.Estimator.dec.parameters()) == 6_373_600
        assert sum(t.numel() for t in m.Restorer.head2.parameters()) == 9_360


def test_config_defaults_and_errors():
    assert [DCLSConfig(scale=s).kernel_size for s in (2, 3, 4)] == [11, 15, 21]
    assert DCLSConfig(scale=3).filter_structures == [7, 5, 5, 1]
    assert DCLSConfig(scale=2, setting=1).kernel_size == 21
    assert DCLSConfig.from_dict(DCLSConfig(scale=3, **TINY).to_dict()) == DCLSConfig(scale=3, **TINY)
    assert DCLSConfig(cls_eps="1e-8").cls_eps == 1e-8  # YAML reads 1e-8 as a string
    for bad in (dict(kernel_size=13), dict(filter_structures=[7, 5, 5, 3]), dict(nf=10), dict(nb=0),
                dict(scale=5), dict(cls_eps=-1.0), dict(bogus=1)):
        with pytest.raises((ValueError, TypeError)):
            DCLSConfig(**bad) if "bogus" not in bad else DCLSConfig.from_dict(bad)


# ------------------------------------------------------------------ the authors' layout

@pytest.mark.parametrize("scale,p", [(4, 21), (4, 31), (2, 11)])
def test_release_state_dicts_load_by_content(scale, p, tmp_path):
    torch.manual_seed(0)
    model = _perturbed(create_model("dcls", scale=scale, kernel_size=p))
    state = model.state_dict()
    assert _is_dcls_state(state) and "Restorer.head2.grad_filter.6.weight" in state
    y = _lr(b=2)
    with torch.no_grad():
        want = model(y)
    layouts = {"flat": state, "module": {f"module.{k}": v for k, v in state.items()}}
    for name, obj in layouts.items():
        if name == "module" and p != 21:
            continue  # the prefix handling is the loader's, shared by every size
        torch.save(obj, tmp_path / f"DCLS_{name}.pth")
        loaded = load_model(tmp_path / f"DCLS_{name}.pth", expected_scale=scale)
        assert isinstance(loaded, DCLS)
        c = loaded.config
        assert (c.scale, c.kernel_size, c.nf, c.nb, c.ng, c.input_para, c.kernel_channels, c.cls_eps) == \
            (scale, p, 64, 10, 5, 256, 16, 0.0)
        assert c.filter_structures == FILTER_STRUCTURES[p] and c.setting == 2
        with torch.no_grad():
            got = loaded(y)
        torch.testing.assert_close(got.sr, want.sr, rtol=0, atol=0)
        torch.testing.assert_close(got.condition, want.condition, rtol=0, atol=0)


def test_setting_inference(tmp_path):
    # the setting is not in a .pth: 21×21 at ×2 is setting 1, the setting-2 size is setting 2
    for kw, setting in ((dict(scale=2, setting=1), 1), (dict(scale=3), 2)):
        torch.save(tiny_dcls(**kw).state_dict(), tmp_path / "s.pth")
        assert load_model(tmp_path / "s.pth").config.setting == setting


def test_wrong_files_are_one_clear_error(tiny, tmp_path):
    state = tiny.state_dict()
    torch.save(state, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pth").write_text("not a checkpoint")
    bad_decoder = dict(state, **{"Estimator.dec.1.weight": torch.zeros(7 * 16, 8)})
    torch.save(bad_decoder, tmp_path / "bad_decoder.pth")
    no_upsampler = {k: v for k, v in state.items() if not k.startswith("Restorer.upscale.")}
    torch.save(no_upsampler, tmp_path / "no_upsampler.pth")
    for name, fragment in (("truncated", "not a model checkpoint"), ("text", "not a model checkpoint"),
                           ("bad_decoder", "decoder"), ("no_upsampler", "missing")):
        with pytest.raises(ModelLoadError) as e:
            load_model(tmp_path / f"{name}.pth")
        assert fragment in str(e.value) and f"{name}.pth" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelLoadError, match="×2 model, but ×4"):
        load_model(tmp_path / "good.pth", expected_scale=4)


def test_detect_is_specific_to_dcls(tiny):
    """DAN's state dicts also hold ``Restorer.*`` / ``Estimator.*`` keys; KXNet's hold neither."""
    dan_like = {"Restorer.head.weight": torch.zeros(64, 3, 3, 3), "Restorer.body.0.body.0.weight": torch.zeros(1),
                "Estimator.head_LR.weight": torch.zeros(32, 3, 1, 1),
                "Estimator.out.weight": torch.zeros(10, 32, 3, 3)}
    assert not _is_dcls_state(dan_like)
    assert not _is_dcls_state(create_model("kxnet", scale=2, stages=1).state_dict())
    assert _is_dcls_state(tiny.state_dict())


# ----------------------------------------------------------------- the CLS deconvolution

def _test_image(seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.rand(2, 3, 44, 48, generator=g, dtype=torch.float64), 3, 1, 1)


def test_cls_inverts_a_known_blur_without_noise():
    """With no regulariser (P = 0, ε = 0) Eq. 16 is the inverse filter: it undoes a circular
    convolution exactly. Measured max errors: 2.9e-15 (an asymmetric kernel with a dominant
    centre, which also pins the orientation) and 2.5e-14 (an anisotropic Gaussian, σ 1.0/0.7,
    whose spectrum falls to ~1e-2); asserted below 1e-12."""
    x = _test_image()
    g = torch.Generator().manual_seed(1)
    asym = torch.rand(11, 11, generator=g, dtype=torch.float64) * (torch.rand(11, 11, generator=g) < 0.2)
    asym[5, 5] += 3
    gauss = anisotropic_gaussian(11, 1.0, 0.7, 0.5, dtype=torch.float64)
    no_regulariser = torch.zeros(2, 3, 3, 3, dtype=torch.float64)
    for c in (asym / asym.sum(), gauss):
        restored = cls_deconvolve(circular_convolution(x, c), c.expand(2, 1, 11, 11), no_regulariser)
        assert (restored - x).abs().max() < 1e-12


def test_cls_on_a_reflect_blurred_image_as_the_module_pads():
    """The module's setting: a reflect-padded blur (kxnet.physics.blur), replicate padding by p,
    deconvolve, crop. The boundary then is not circular; measured: max error 0.108 at the
    border, 2.2e-4 at ≥ p pixels from it (asserted < 1e-3 there)."""
    x = _test_image()
    c = anisotropic_gaussian(11, 1.0, 0.7, 0.5, dtype=torch.float64)
    padded = F.pad(blur(x, c.expand(2, 11, 11)), (11,) * 4, mode="replicate")
    restored = cls_deconvolve(padded, c.expand(2, 1, 11, 11), torch.zeros(2, 3, 3, 3, dtype=torch.float64))
    error = (restored[..., 11:-11, 11:-11] - x).abs()
    assert error[..., 11:-11, 11:-11].max() < 1e-3


def test_cls_eps_turns_0_by_0_into_a_bounded_gain():
    """A kernel whose spectrum has an exact zero (a [¼ ½ ¼] separable blur at Nyquist on an even
    grid) and P = 0: the release's formula (ε = 0) gives NaN, ε = 1e-8 a finite result."""
    taps = torch.tensor([0.25, 0.5, 0.25])
    k = torch.zeros(1, 1, 7, 7)
    k[0, 0, 2:5, 2:5] = torch.outer(taps, taps)
    features = torch.rand(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    assert not torch.isfinite(cls_deconvolve(features, k, torch.zeros(1, 4, 3, 3))).all()
    bounded = cls_deconvolve(features, k, torch.zeros(1, 4, 3, 3), eps=1e-8)
    assert torch.isfinite(bounded).all() and bounded.abs().max() < 5e3 * features.abs().sum()


# ------------------------------------------------------------- the reformulated kernel

def test_reformulated_kernel_recovers_a_known_lr_kernel():
    """A case with a known answer. The HR kernel is decimation-compatible: a 5×5 LR kernel
    k_l (asymmetric, positive) spread onto every s-th tap of a 21×21 HR kernel, centre on
    centre. Then (x ⊛ k_h)↓s = x↓s ⊛ k_l exactly, up to the boundary; the HR image is a
    random texture inside a zero border wider than the kernel, so reflect padding, circular
    wrap-around and zero padding all agree and the identity holds everywhere. Eq. 7 must give
    k_l back — rotated by 180°, because physics.blur correlates while the Fourier kernel
    convolves. k_l has 25 < 41 non-zero taps, so the release's post-processing keeps it.
    Measured: 6.9e-17 (float64 HR), 2.9e-9 (float32 HR); asserted 1e-12 / 1e-7."""
    s = 4
    g = torch.Generator().manual_seed(0)
    k_l = torch.rand(5, 5, generator=g, dtype=torch.float64) + 0.1
    k_l[2, 2] += 1
    k_l /= k_l.sum()
    k_h = torch.zeros(21, 21, dtype=torch.float64)
    k_h[2:19:s, 2:19:s] = k_l
    hr = torch.zeros(2, 3, 96, 112, dtype=torch.float64)
    hr[..., 24:-24, 24:-24] = torch.rand(2, 3, 48, 64, generator=g, dtype=torch.float64)
    want = torch.zeros(21, 21, dtype=torch.float64)
    want[8:13, 8:13] = k_l.flip(-2, -1)

    raw = lr_space_kernel(downsample(hr, s), blur_downsample(hr, k_h.expand(2, -1, -1), s), 21)
    assert (raw - want).abs().max() < 1e-12          # every channel, before post-processing
    target = reformulated_kernel(hr, k_h.expand(2, -1, -1), s, 21)
    assert target.shape == (2, 1, 21, 21) and target.dtype == torch.float64
    assert (target - want).abs().max() < 1e-12
    target32 = reformulated_kernel(hr.float(), k_h.float(), s, 21)  # one kernel for the batch
    assert target32.dtype == torch.float32 and (target32.double() - want).abs().max() < 1e-7


def test_release_post_processing_quirks():
    # the threshold is 0.75 × the 41st largest tap; the 1e-20 guard sits one past the centre
    k = torch.arange(1.0, 122.0, dtype=torch.float64).reshape(1, 1, 11, 11) / 1000
    want = (k - 0.75 * 0.081).clamp(0, 1)
    want[0, 0, 6, 6] += 1e-20
    torch.testing.assert_close(zeroize_negligible(k), want / want.sum(), rtol=1e-12, atol=0)
    delta = zeroize_negligible(torch.zeros(1, 1, 7, 7))
    assert delta[0, 0, 4, 4] == 1 and delta.sum() == 1       # an all-zero kernel → delta at (4, 4)
    # the channel mask keeps a tap where exactly two channels are negative (product > 0)
    hr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    k_h = anisotropic_gaussian(7, 1.5, 1.0, 0.3, dtype=torch.float64)
    per_channel = lr_space_kernel(downsample(hr, 2), blur_downsample(hr, k_h[None], 2), 11)
    expected = zeroize_negligible(per_channel.mean(1, keepdim=True) * (per_channel.prod(1, keepdim=True) > 0))
    torch.testing.assert_close(reformulated_kernel(hr, k_h, 2, 11), expected, rtol=0, atol=0)


# ------------------------------------------------------------------------ the forward

def test_forward_contract(tiny):
    y = _lr(b=2)
    with torch.no_grad():
        out = tiny(y)
    assert isinstance(out, SROutput) and out.kernel is None and out.stage_images == [] == out.stage_kernels
    assert out.sr.shape == (2, 3, 24, 28) and 0 <= out.sr.min() and out.sr.max() <= 1
    k = out.condition
    assert k.shape == (2, 1, 11, 11)
    torch.testing.assert_close(k.sum(dim=(-2, -1)), torch.ones(2, 1))
    with torch.no_grad():
        # the blind estimate fed back reproduces the run (tiled inference relies on it)
        torch.testing.assert_close(tiny(y, kernel=k).sr, out.sr, rtol=0, atol=0)
        torch.testing.assert_close(tiny(y, kernel=k[:, 0]).sr, out.sr, rtol=0, atol=0)
        torch.testing.assert_close(tiny(y[:1], kernel=k[0, 0]).sr, out.sr[:1], rtol=0, atol=1e-6)
        assert tiny(y, kernel=torch.ones(5, 5) / 25).sr.shape == (2, 3, 24, 28)  # any odd size
    for bad in (torch.ones(4, 4), torch.ones(3, 1, 5, 5), torch.ones(2, 2, 5, 5)):
        with pytest.raises(ValueError, match="kernel must be"):
            tiny(y, kernel=bad)
    with pytest.raises(ValueError, match="too small"):
        tiny(_lr(6, 9))


def test_each_half_learns_from_its_own_term(tiny):
    """The Restorer sees k̂ detached: the image term reaches no Estimator weight, the kernel
    term no Restorer weight."""
    model = tiny_dcls().train()
    out = model(_lr())
    out.sr.mean().backward(retain_graph=True)
    assert all(p.grad is None for p in model.Estimator.parameters())
    assert all(p.grad is not None for p in model.Restorer.parameters())
    model.zero_grad(set_to_none=True)
    out.condition.square().mean().backward()
    assert all(p.grad is None for p in model.Restorer.parameters())
    assert model.Estimator.dec[0].weight.grad.abs().sum() > 0


def test_oracle_condition_is_the_training_target(tiny):
    hr = torch.rand(2, 3, 24, 28, generator=torch.Generator().manual_seed(3))
    k_h = anisotropic_gaussian(11, torch.tensor([1.0, 2.0]), torch.tensor([2.0, 0.8]), torch.tensor([0.3, 1.0]))
    oracle = tiny.oracle_condition(hr, k_h)
    torch.testing.assert_close(oracle, reformulated_kernel(hr, k_h, 2, 11), rtol=0, atol=0)
    with torch.no_grad():
        assert tiny(blur_downsample(hr, k_h, 2), kernel=oracle).sr.shape == hr.shape


# ----------------------------------------------------------------------------- training

def test_loss_terms():
    hr = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    k_h = anisotropic_gaussian(11, torch.tensor([1.0, 1.5]), torch.tensor([2.0, 0.7]), torch.tensor([0.0, 0.5]))
    target = reformulated_kernel(hr, k_h, 2, 11)
    perfect = SROutput(hr.clone(), None, [], [], condition=target.clone())
    total, parts = dcls_loss(perfect, hr, k_h, 2)
    assert total.item() == 0 and parts["image"].item() == 0 and parts["kernel"].item() == 0
    off = SROutput(hr + 0.5, None, [], [], condition=target + 0.01)
    total, parts = dcls_loss(off, hr, k_h, 2, DCLSLoss(image_weight_last=2.0, kernel_weight_last=10.0))
    assert parts["image"].item() == pytest.approx(0.5) and parts["kernel"].item() == pytest.approx(0.01)
    assert total.item() == pytest.approx(2 * 0.5 + 10 * 0.01)


@pytest.mark.parametrize("name", ["dcls_release_setting2_x4", "cpu_dcls_setting2_x4"])
def test_recipes(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    t = cfg.train
    assert (cfg.model.name, cfg.model.scale, cfg.model.setting, t.lr, tuple(t.betas), t.gamma) == \
        ("dcls", 4, 2, 4e-4, (0.9, 0.99), 0.5)
    config = DCLSConfig(**cfg.model.factory_kwargs())
    assert (config.kernel_size, config.nf, config.nb, config.ng, config.input_para, config.cls_eps) == \
        (21, 64, 10, 5, 256, 1e-8)
    if name.startswith("dcls_release"):
        assert (t.iterations, t.batch, cfg.data.lr_patch, t.milestones) == (500_000, 64, 64, [200_000, 400_000])
    else:
        assert (t.batch, cfg.data.lr_patch, t.threads) == (8, 24, 1)
        assert [m / t.iterations for m in t.milestones] == [0.4, 0.8]


# ------------------------------------------------------------------ inference, commands

def test_tiles_share_the_crops_estimate(tiny):
    seen = []
    hook = tiny.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs.get("kernel")),
                                          with_kwargs=True)
    try:
        img = KImage(rgb=np.random.default_rng(0).random((20, 40, 3)).astype(np.float32))
        result, k, info, _ = Upscaler(tiny, "cpu", tile=16, tile_overlap=4).run(img)
    finally:
        hook.remove()
    assert info["tiled"] and info["tiles"] == 6 and k is None and info["kernel"] is None
    assert seen[0] is None and all(s is seen[1] for s in seen[1:]) and seen[1].shape == (1, 1, 11, 11)
    assert result.rgb.shape == (40, 80, 3)
    with pytest.raises(ValueError, match="takes no given blur kernel"):
        Upscaler(tiny, "cpu").run(img, kernel=np.ones((3, 3)))


@pytest.fixture(scope="module")
def model_file(tiny, tmp_path_factory):
    return save_model(tiny, tmp_path_factory.mktemp("model") / "tiny_dcls_x2.safetensors")


def test_eval_and_sr_commands(model_file, hr_folder, tmp_path, capsys):
    set_dir = tmp_path / "set"
    assert main(["synth", "--hr", str(hr_folder), "--setting", "2", "--scale", "2", "--out", str(set_dir),
                 "--quiet"]) == 0
    assert main(["eval", "--data", str(set_dir), "--method", str(model_file), "--limit", "3",
                 "--json", str(tmp_path / "e.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 pairs: PSNR" in out and "kernel PSNR" not in out
    summary = json.loads((tmp_path / "e.json").read_text())["summary"]
    assert summary["pairs"] == 3 and summary["kernel_psnr"] is None and np.isfinite(summary["psnr"])

    src = hr_folder / "0.png"
    assert main(["sr", str(src), "-o", str(tmp_path / "out"), "--model", str(model_file), "--save-kernel",
                 "--stages", "--quiet"]) == 0
    assert read_image(tmp_path / "out" / "0_x2.png").rgb.shape == (80, 96, 3)
    side = json.loads((tmp_path / "out" / "0_x2.json").read_text())
    assert side["kernel"]["mode"] == "blind" and "sigma_x" not in side["kernel"]
    assert side["files"] == {"kernel_npy": None, "kernel_png": None, "kernel_map": None, "stages": None}
    assert side["model"]["kernel_size"] == 11
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    capsys.readouterr()
    assert main(["sr", str(src), "-o", str(tmp_path / "out2"), "--model", str(model_file), "--kernel",
                 str(tmp_path / "k.npy"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "takes no HR blur kernel" in err
    assert not (tmp_path / "out2").exists()


def test_convert_command(tiny, tmp_path, capsys):
    torch.save(tiny.state_dict(), tmp_path / "dcls.pth")
    assert main(["convert", str(tmp_path / "dcls.pth"), "-o", str(tmp_path / "dcls.safetensors")]) == 0
    assert "dcls ×2, setting 2, 11×11 LR-space kernels" in capsys.readouterr().out
    assert load_model(tmp_path / "dcls.safetensors").config == tiny.config
