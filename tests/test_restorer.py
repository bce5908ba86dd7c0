"""KXNet's LR restorer (docs/photo.md, "Restoring the LR first"): a residual network in front of
the unfolding that starts as the identity, is what every stage sees, trains through the KXNet
loss, and survives files, conversion, the fast path and the static-shape graphs."""

from __future__ import annotations

import pytest
import torch

from kxnet.kernels import sample_training_kernels
from kxnet.models import KXNetLoss, create_model, load_model, save_model
from kxnet.models.kxnet import ExportableKXNet, NonBlindExportableKXNet, optimize, with_restorer
from kxnet.train.loss import objective_for

D = torch.float64


def _rand(*shape, seed=1, dtype=D):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _trained_restorer(model, seed=3):
    """``model`` with its restorer's zero-initialised last convolution made non-zero, as training would."""
    with torch.no_grad():
        for p in model.lr_restorer.tail.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=p.dtype))
    return model


def test_a_new_restorer_computes_exactly_the_model_without_it():
    torch.manual_seed(0)
    plain = create_model("kxnet", scale=2, stages=2).to(D).eval()
    joined = with_restorer(plain, 8, 2).eval()
    assert joined.config.restorer == {"channels": 8, "blocks": 2}
    assert all(torch.equal(v, joined.state_dict()[k]) for k, v in plain.state_dict().items())
    assert {k for k in joined.state_dict() if k not in plain.state_dict()} == {
        f"lr_restorer.{k}" for k in joined.lr_restorer.state_dict()}
    y = _rand(2, 3, 12, 10)
    with torch.no_grad():
        a, b = plain(y), joined(y)
    assert torch.equal(a.sr, b.sr) and torch.equal(a.kernel, b.kernel)
    with pytest.raises(ValueError, match="has an LR restorer already"):
        with_restorer(joined, 8, 2)
    with pytest.raises(ValueError, match="restorer must be None or"):
        create_model("kxnet", scale=2, stages=1, restorer={"channels": 0, "blocks": 1})


def test_every_stage_sees_the_restored_image():
    torch.manual_seed(1)
    plain = create_model("kxnet", scale=2, stages=2).to(D).eval()
    joined = _trained_restorer(with_restorer(plain, 8, 1)).eval()
    y = _rand(1, 3, 12, 12, seed=2)
    with torch.no_grad():
        restored = joined.lr_restorer(y)
        assert (restored - y).abs().max() > 1e-3
        assert torch.equal(joined(y).sr, plain(restored).sr)
        kernel = sample_training_kernels(2, 2, 1, generator=torch.Generator().manual_seed(0)).kernels.to(D)[0]
        assert torch.equal(joined(y, kernel=kernel).sr, plain(restored, kernel=kernel).sr)


def test_the_restorer_learns_through_the_kxnet_loss():
    torch.manual_seed(2)
    model = with_restorer(create_model("kxnet", scale=2, stages=2).to(D), 8, 1).train()
    y, hr = _rand(2, 3, 10, 10, seed=6), _rand(2, 3, 20, 20, seed=7)
    kernel = sample_training_kernels(2, 2, 2, generator=torch.Generator().manual_seed(0)).kernels.to(D)
    loss, _ = objective_for(model).loss(model(y), {"lr": y, "hr": hr, "kernel": kernel}, KXNetLoss())
    loss.backward()
    # at the identity start only the last convolution has a gradient (the rest are multiplied by its zeros)
    assert model.lr_restorer.tail.weight.grad.abs().sum() > 0


def test_files_and_conversion_keep_the_restorer(tmp_path):
    from kxnet.cli import main

    torch.manual_seed(4)
    plain = create_model("kxnet", scale=2, stages=1)
    joined = _trained_restorer(with_restorer(plain, 8, 2)).eval()
    y = _rand(1, 3, 12, 12, seed=9, dtype=torch.float32)
    for saved in (save_model(joined, tmp_path / "j.safetensors"), tmp_path / "j.pth"):
        if saved.suffix == ".pth":
            torch.save(joined.state_dict(), saved)          # channels and blocks from the shapes
        loaded = load_model(saved).eval()
        assert loaded.config == joined.config
        with torch.no_grad():
            assert torch.equal(loaded(y).sr, joined(y).sr)
    src = save_model(plain, tmp_path / "plain.safetensors")
    assert main(["convert", str(src), "-o", str(tmp_path / "r.safetensors"), "--restorer", "8x3"]) == 0
    converted = load_model(tmp_path / "r.safetensors").eval()
    assert converted.config.restorer == {"channels": 8, "blocks": 3}
    with torch.no_grad():
        assert torch.equal(converted(y).sr, plain.eval()(y).sr)
    with pytest.raises(SystemExit):
        main(["convert", str(src), "-o", str(tmp_path / "bad.safetensors"), "--restorer", "8"])


def test_fast_path_and_static_graphs_run_the_restorer():
    torch.manual_seed(5)
    model = _trained_restorer(with_restorer(create_model("kxnet", scale=2, stages=2), 8, 2)).eval()
    y = _rand(1, 3, 12, 10, seed=3, dtype=torch.float32)
    with torch.no_grad():
        expected = model(y)
        assert (optimize(model)(y).sr - expected.sr).abs().max() < 1e-4
        sr, kernel, stages = ExportableKXNet(model, (12, 10), stage_kernels=True)(y)
        assert (sr - expected.sr).abs().max() < 1e-4 and (kernel - expected.kernel).abs().max() < 1e-5
        tiles = NonBlindExportableKXNet(model, (12, 10))(y, stages)
        assert (tiles - model(y, kernel=list(stages.unbind(1))).sr).abs().max() < 1e-4
