"""`kxnet benchmark` end to end on a tiny random model (numbers meaningless, plumbing real)."""

import json
from pathlib import Path

import pytest

from kxnet.cli import main
from kxnet.inference.benchmark import markdown_table
from kxnet.models import create_model, save_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
pytestmark = pytest.mark.skipif(not (DATA / "Set5").is_dir(), reason="shared benchmark data not available")


def test_benchmark_writes_table_plots_and_json(tmp_path, capsys):
    # a small crop of one Set5 image keeps this fast; the protocol is the same
    from kxnet.io import read_image, write_image

    data = tmp_path / "benchmarks"
    (data / "Set5").mkdir(parents=True)
    for name in ("bird.png", "woman.png"):
        write_image(data / "Set5" / name, read_image(DATA / "Set5" / name).rgb[:64, :80])
    weights = save_model(create_model("kxnet", scale=2, setting=2, stages=2), tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    code = main(["benchmark", "--models", str(weights), "--data", str(data), "--sets", "Set5",
                 "--max-images", "Set5=1", "--noise", "0", "15", "--work", str(tmp_path / "work"),
                 "--out", str(out), "--no-sweep", "--oracle"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "results.json").read_text())
    cells = report["cells"]
    assert [c["noise"] for c in cells] == [0.0, 15.0]
    assert all(c["pairs"] == 8 and len(c["stage_psnr"]) == 2 for c in cells)
    # a subset is never compared with the paper's full-set number
    assert all(c["paper"] is None for c in cells)
    # kernel metrics in every cell, with K⁰'s error beside the estimate's, and the oracle run
    for c in cells:
        assert 0 <= c["kernel"]["kernel_l1"] <= 2 and 0 < c["kernel"]["initial_kernel_l1"] <= 2
        assert c["kernel"]["width_order"]["compared"] > 0
        assert c["oracle_psnr"] is not None and c["oracle_psnr"] != c["psnr"]
    assert "Set5 (first 1)" in (out / "results.md").read_text()
    assert (out / "stage_psnr.png").stat().st_size > 1000
    assert (out / "kernels_tiny_Set5.png").stat().st_size > 1000
    assert "Set5 (first 1)" in captured.out

    # finished cells are cached by the weights: a second run computes nothing again
    cache = tmp_path / "work" / "cells"
    (entry,) = list(cache.iterdir())
    assert len(list(entry.glob("*.json"))) == 4        # 2 cells × (blind + oracle)
    stamp = {p: p.stat().st_mtime_ns for p in entry.glob("*.json")}
    assert main(["benchmark", "--models", str(weights), "--data", str(data), "--sets", "Set5",
                 "--max-images", "Set5=1", "--noise", "0", "15", "--work", str(tmp_path / "work"),
                 "--out", str(out), "--no-sweep", "--oracle"]) == 0
    assert stamp == {p: p.stat().st_mtime_ns for p in entry.glob("*.json")}
    assert json.loads((out / "results.json").read_text())["cells"][0]["psnr"] == cells[0]["psnr"]


def test_kernel_labels_shorten_the_release_tags():
    from kxnet.inference.benchmark import kernel_label
    from kxnet.kernels.settings import benchmark_kernels

    labels = [kernel_label(k.tag) for k in benchmark_kernels(1, 4)]
    assert "sig2.4" in labels and all(len(label) <= 6 for label in labels)
    assert kernel_label("sig0.8-1.6_theta45.0") == "sig0.8-1.6\nθ 45°"


def test_markdown_table_gap_columns():
    from kxnet.inference.benchmark import Cell

    c = Cell("m", "Set5", 2, 4, 0.0, 5, 40, 30.0, 0.85, 24.35, 0.7086, (30.99, 0.8815), (24.35, 0.7086))
    row = markdown_table([c]).splitlines()[-1]
    assert "+5.65" in row and "-0.99" in row and "KXNet 30.99 / 0.8815" in row
