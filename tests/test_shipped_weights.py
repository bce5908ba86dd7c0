"""The weights that ship in the package: listed, intact, loadable, and the README's first command."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kxnet.io import read_image
from kxnet.metrics import gaussian_fit
from kxnet.models import load_model
from kxnet.models.loading import resolve_weights
from kxnet.models.zoo import read_manifest
from kxnet.physics import bicubic_upsample

REPO = Path(__file__).resolve().parents[1]
ENTRIES = read_manifest()
# Each shipped model on the centre 48×48 of the bundled example, blind, float32 plain path:
# the output's PSNR against bicubic ×s of the same input, its mean, and the Gaussian fit of the
# kernel. Measured once; a refactor that moves any of them changed what the model computes.
GOLDEN = {
    "kxnet_x2.photo": (25.4249, 0.693734, (0.8492, 0.7518), 85.46),
    "kxnet_x2.setting2": (24.7254, 0.693207, (0.9189, 0.7626), 92.07),
    "kxnet_x3.photo": (22.9676, 0.694611, (1.0536, 0.8931), 74.89),
    "kxnet_x3.setting2": (22.8085, 0.693266, (1.0367, 0.8586), 81.25),
    "kxnet_x4.setting1": (22.3637, 0.692592, (2.3781, 2.3721), 71.46),
    "kxnet_x4.setting2": (22.3088, 0.693212, (1.2896, 1.1927), 87.29),
    "kxnet_x4.photo": (22.5807, 0.695440, (1.1944, 1.1164), 90.93),
}


def test_default_models_are_shipped():
    for scale in (2, 3, 4):
        assert f"kxnet_x{scale}.setting2" in ENTRIES


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_entry_is_intact_and_describes_its_model(name):
    entry = ENTRIES[name]
    path = resolve_weights(name)  # verifies the SHA-256
    assert path.stat().st_size == entry.bytes
    model = load_model(name)
    assert model.config.to_dict() == entry.config
    assert sum(p.numel() for p in model.parameters()) == entry.parameters
    for key in ("recipe", "iterations", "hardware", "training_data"):
        assert getattr(entry, key)
    assert entry.reduced is not None or model.config.stages == 19
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 12, 12))
    assert out.sr.shape == (1, 3, 12 * model.scale, 12 * model.scale)
    assert torch.allclose(out.kernel.sum((-2, -1)), torch.ones(1))


def test_readme_first_command_runs_on_the_bundled_example(tmp_path):
    first = (REPO / "README.md").read_text().splitlines()[1]
    assert "kxnet sr examples/chart_x4.png" in first
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "kxnet", "sr", str(REPO / "examples" / "chart_x4.png"), "-o", str(out),
           "--save-kernel", "--stages", "--quiet"]
    subprocess.run(cmd, check=True, timeout=600)
    sidecar = json.loads((out / "chart_x4_x4.json").read_text())
    assert sidecar["model"]["name"] == "kxnet_x4.setting2" and sidecar["scale"] == 4
    for suffix in ("_x4.png", "_x4_kernel.npy", "_x4_kernel.png", "_x4_stages.png"):
        assert (out / f"chart_x4{suffix}").stat().st_size > 0
    k = np.load(out / "chart_x4_x4_kernel.npy")
    assert k.shape == (21, 21) and abs(k.sum() - 1) < 1e-4


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_shipped_model_golden_figures(name):
    assert name in GOLDEN, f"{name}: a shipped model needs pinned golden figures"
    psnr, mean, sigma, theta = GOLDEN[name]
    lr = torch.from_numpy(read_image(REPO / "examples" / "chart_x4.png").rgb[24:72, 24:72].copy())
    lr = lr.permute(2, 0, 1)[None].float()
    model = load_model(name)
    with torch.inference_mode():
        out = model(lr)
    sr = out.sr.clamp(0, 1)
    mse = float(((sr - bicubic_upsample(lr, model.config.scale).clamp(0, 1)) ** 2).mean())
    fit = gaussian_fit(out.kernel[0].numpy())
    assert 10 * np.log10(1 / mse) == pytest.approx(psnr, abs=1e-3)
    assert float(sr.mean()) == pytest.approx(mean, abs=2e-6)
    assert (fit["sigma_x"], fit["sigma_y"]) == pytest.approx(sigma, abs=1e-3)
    assert fit["theta_deg"] == pytest.approx(theta, abs=0.05)
