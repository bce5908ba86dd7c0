"""The shipping rule of scripts/ship_weights.py: weights are replaced only when complete cells improve."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("ship_weights", ROOT / "scripts" / "ship_weights.py")
ship = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship)


def _cell(psnr, full=True, images=5):
    return {"psnr": psnr, "full": full, "images": images}


def test_improved_needs_the_mean_of_shared_complete_cells_to_rise():
    old = {"a": _cell(28.0), "b": _cell(27.0), "c": _cell(20.0, full=False, images=4)}
    # one cell up 0.3, one down 0.5: worse overall, nothing ships
    assert ship._improved({"a": _cell(28.3), "b": _cell(26.5)}, old) == []
    # a partial cell that improves a lot does not count
    assert ship._improved({"a": _cell(27.9), "c": _cell(30.0, full=False, images=4)}, old) == []
    # better overall: the improving cells are named
    assert ship._improved({"a": _cell(28.6), "b": _cell(26.9)}, old) == ["a"]
    # no shared complete cell: nothing to compare against
    assert ship._improved({"d": _cell(40.0)}, old) == []


def test_record_merges_cells_into_the_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(ship, "WEIGHTS", tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"m": {"file": "m.safetensors", "benchmarks": {
        "Set5/setting2/x4/noise0": {"psnr": 1.0}, "Set14/setting2/x4/noise0": {"psnr": 2.0}}}}))
    cell = {"model": "m", "key": "Set14/setting2/x4/noise0", "psnr": 25.0, "ssim": 0.7, "bicubic_psnr": 23.0,
            "bicubic_ssim": 0.6, "images": 14, "pairs": 112, "full": True, "paper": None, "stage_psnr": [24.0, 25.0]}
    other = dict(cell, model="other", key="B100/setting2/x4/noise0")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"cells": [cell, other]}))
    ship.record("m", [results])
    cells = json.loads((tmp_path / "manifest.json").read_text())["m"]["benchmarks"]
    assert sorted(cells) == ["Set14/setting2/x4/noise0", "Set5/setting2/x4/noise0"]
    assert cells["Set14/setting2/x4/noise0"]["psnr"] == 25.0 and cells["Set5/setting2/x4/noise0"]["psnr"] == 1.0


def test_grown_weights_say_which_stages_were_added_untrained():
    from kxnet.models import KXNetConfig

    recipe = {"model": {"name": "kxnet", "stages": 4}}
    assert ship._grown(recipe, KXNetConfig(scale=3, stages=4)) is None
    note = ship._grown(recipe, KXNetConfig(scale=3, stages=6))
    assert "trained with 4 stages" in note and "stages 5–6 are copies" in note and "--stages 6" in note
    assert "stage 5 is a copy of stage 4" in ship._grown(recipe, KXNetConfig(scale=3, stages=5))
    assert ship._grown({"model": {"name": "dan"}}, KXNetConfig(scale=3, stages=6)) is None


def test_reduced_names_only_what_falls_short_of_the_paper():
    from kxnet.models import KXNetConfig

    cpu = {"data": {"lr_patch": 24}, "train": {"batch": 8}}
    note = ship._reduced(cpu, KXNetConfig(scale=4, stages=4), 7900)
    assert note == ("reduced configuration: 4 stages instead of 19, LR patch 24 instead of 64, batch 8 instead of 12, "
                    "iterations 7,900 instead of 1,000,000")
    gpu = {"data": {"lr_patch": 64}, "train": {"batch": 12}}
    assert ship._reduced(gpu, KXNetConfig(scale=4, stages=4), 12842) == \
        "reduced configuration: 4 stages instead of 19, iterations 12,842 instead of 1,000,000"
    assert ship._reduced(gpu, KXNetConfig(scale=4, stages=19), 1_000_000) is None


def test_same_tensors_knows_the_storage(tmp_path):
    import torch
    from conftest import perturbed_kxnet
    from kxnet.models import load_model, save_model

    model = perturbed_kxnet(2, 2)
    half = save_model(model, tmp_path / "half.safetensors", storage="fp16")
    quarter = save_model(model, tmp_path / "int8.safetensors", storage="int8")
    # re-shipping what is shipped, in the same storage: nothing to write (the old check said int8 differed)
    assert ship._same_tensors(half, load_model(half)) and ship._same_tensors(quarter, load_model(quarter), "int8")
    assert ship._same_tensors(half, model) and ship._same_tensors(quarter, model, "int8")
    # another storage, or other weights: write
    assert not ship._same_tensors(half, model, "int8") and not ship._same_tensors(quarter, model)
    changed = load_model(half)
    with torch.no_grad():
        next(changed.parameters()).add_(0.5)
    assert not ship._same_tensors(half, changed)
    assert not ship._same_tensors(tmp_path / "none.safetensors", model)
