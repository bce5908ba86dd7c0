"""ONNX export: the static-shape graph equals the model, runs in onnxruntime and matches
PyTorch; ``kxnet export`` writes and checks a file. Tiny models (1–2 stages, LR ≤ 12 px)."""

import pytest
import torch

from kxnet.export import ExportableKXNet, export_onnx, onnx_session, run_onnx
from kxnet.models import KXNet, KXNetConfig, save_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(scale, setting=2, mode="official", stages=2, seed=0):
    torch.manual_seed(seed)
    return KXNet(KXNetConfig(scale=scale, setting=setting, stages=stages, mode=mode)).eval()


@pytest.mark.parametrize("scale,mode", [(2, "official"), (3, "exact"), (4, "official"), (4, "exact")])
def test_exportable_graph_equals_model(scale, mode):
    """The static-shape rewrite (no ONNX involved) computes the model's forward."""
    model = _model(scale, mode=mode)
    y = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        expected = model(y)
        sr, kernel = ExportableKXNet(model, (12, 10))(y)
    assert (sr - expected.sr).abs().max().item() < 1e-5
    assert (kernel - expected.kernel).abs().max().item() < 1e-6


def test_onnx_export_runs_in_onnxruntime_and_matches(tmp_path):
    model = _model(2, stages=1)
    path = tmp_path / "kxnet_x2.onnx"
    report = export_onnx(model, path, size=(12, 10))
    onnx.checker.check_model(onnx.load(str(path)))
    assert report.max_abs_diff_sr < 1e-4 and report.max_abs_diff_kernel < 1e-5
    # another input than the one used for the check
    y = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(5))
    sr, kernel = run_onnx(onnx_session(path), y)
    with torch.no_grad():
        expected = model(y)
    assert sr.shape == (1, 3, 24, 20) and kernel.shape == (1, 11, 11)
    assert (sr - expected.sr).abs().max().item() < 1e-4
    assert (kernel - expected.kernel).abs().max().item() < 1e-5


def test_onnx_export_keeps_the_k0_estimator(tmp_path):
    """A KXNet whose K⁰ comes from a KENet exports with it (the fixed K⁰ would give other
    kernels for every image)."""
    torch.manual_seed(3)
    model = KXNet(KXNetConfig(scale=2, setting=2, stages=1, estimator={"channels": (8, 8, 8, 8), "fc": 16})).eval()
    report = export_onnx(model, tmp_path / "est.onnx", size=(12, 10))
    assert report.max_abs_diff_sr < 1e-4 and report.max_abs_diff_kernel < 1e-5
    y = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(6))
    _, kernel = run_onnx(onnx_session(tmp_path / "est.onnx"), y)
    with torch.no_grad():
        assert (kernel - model(y).kernel).abs().max().item() < 1e-5
        fixed = KXNet(KXNetConfig(scale=2, setting=2, stages=1))
        fixed.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("K_estimator.")})
        assert (model(y).kernel - fixed.eval()(y).kernel).abs().max().item() > 1e-4


def test_export_rejects_wrong_input_size(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        export_onnx(_model(4, stages=1), tmp_path / "m.onnx", size=(2, 2))


def test_cli_export(tmp_path, capsys):
    from kxnet.cli import main

    weights = save_model(_model(2, stages=1), tmp_path / "tiny.safetensors")
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--onnx", str(out), "--model", str(weights), "--size", "10", "12", "--time", "1"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "max |onnxruntime − PyTorch|" in text and "seconds per image" in text
    diff = float(text.split("SR ")[1].split(",")[0])
    assert diff < 1e-4
    assert main(["export", "--onnx", str(tmp_path / "x.onnx"), "--model", str(tmp_path / "missing.pth")]) == 2
