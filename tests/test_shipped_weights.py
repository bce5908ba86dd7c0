"""The weights that ship in the package: listed, intact, loadable, and the README's first command."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kxnet.models import load_model
from kxnet.models.loading import resolve_weights, shipped_models

REPO = Path(__file__).resolve().parents[1]
ENTRIES = shipped_models()


def test_default_models_are_shipped():
    for scale in (2, 3, 4):
        assert f"kxnet_x{scale}.setting2" in ENTRIES


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_entry_is_intact_and_describes_its_model(name):
    entry = ENTRIES[name]
    path = resolve_weights(name)  # verifies the SHA-256
    assert path.stat().st_size == entry["bytes"]
    model = load_model(name)
    assert model.config.to_dict() == entry["config"]
    assert sum(p.numel() for p in model.parameters()) == entry["parameters"]
    for key in ("recipe", "iterations", "hardware", "training_data"):
        assert entry[key]
    assert entry["reduced"] is not None or model.config.stages == 19
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
