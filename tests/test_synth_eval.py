"""Benchmark-set synthesis (deterministic to the byte) and the eval command."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kxnet.cli import main
from kxnet.io import read_image

SET5 = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks" / "Set5"
pytestmark = pytest.mark.skipif(not SET5.is_dir(), reason="shared benchmark data not available")


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hr")
    for name in ("bird.png", "woman.png"):  # small; woman (228×344) is not a multiple of 3
        shutil.copy(SET5 / name, d / name)
    return d


def test_synth_is_deterministic_and_complete(hr_dir, tmp_path):
    args = ["synth", "--hr", str(hr_dir), "--setting", "2", "--scale", "3", "--noise", "5", "--seed", "7", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert main(args[:-3] + ["--seed", "8", "--quiet", "--out", str(tmp_path / "c")]) == 0
    assert _tree_hash(tmp_path / "a") != _tree_hash(tmp_path / "c")

    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert (m["setting"], m["scale"], m["noise"], m["seed"], m["kernel_size"]) == (2, 3, 5.0, 7, 15)
    assert len(m["pairs"]) == 16 and len(m["kernels"]) == 8
    assert "sig0.8-1.6_theta45.0_noise5.0_bird.png" in {Path(p["lr"]).name for p in m["pairs"]}
    assert str(tmp_path) not in json.dumps(m)  # nothing machine-specific
    woman = read_image(tmp_path / "a" / "HR" / "woman.png")
    assert woman.rgb.shape == (342, 228, 3)  # 344 → 342 rows (mod 3), top-left kept
    src = read_image(hr_dir / "woman.png")
    np.testing.assert_array_equal(woman.rgb, src.rgb[:342, :228])
    lr = read_image(tmp_path / "a" / "LR" / "sig2.0-4.0_theta90.0_noise5.0_woman.png")
    assert lr.rgb.shape == (114, 76, 3)
    k = np.load(tmp_path / "a" / "kernels" / "sig2.0-4.0_theta90.0.npy")
    assert k.shape == (15, 15) and abs(k.sum() - 1) < 1e-5


def test_synth_refuses_nonempty_output_and_leaves_nothing_on_error(hr_dir, tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["synth", "--hr", str(hr_dir), "--setting", "1", "--scale", "2", "--out", str(out), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_text("not a png")
    assert main(["synth", "--hr", str(bad), "--setting", "1", "--scale", "2", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


def test_eval_bicubic_reports(hr_dir, tmp_path, capsys):
    set_dir = tmp_path / "s1x2"
    assert main(["synth", "--hr", str(hr_dir), "--setting", "1", "--scale", "2", "--out", str(set_dir), "--quiet"]) == 0
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["eval", "--data", str(set_dir), "--method", "bicubic", "--json", str(js), "--csv", str(cs), "--quiet"]) == 0
    out = capsys.readouterr().out
    report = json.loads(js.read_text())
    s = report["summary"]
    assert s["pairs"] == 16 and len(report["per_image"]) == 16
    assert s["psnr"] == pytest.approx(np.mean([p["psnr"] for p in report["per_image"]]))
    assert 20 < s["psnr"] < 35 and 0.5 < s["ssim"] < 1
    assert f"{s['psnr']:.4f}" in out
    assert len(cs.read_text().strip().splitlines()) == 17


def test_eval_on_a_folder_that_is_not_a_set(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path), "--method", "bicubic"]) == 2
    assert "kxnet synth" in capsys.readouterr().err
